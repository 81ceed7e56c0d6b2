//! Each tenant's share of the models behind the `/v1` endpoints: a token
//! bucket of requests per minute (governor's keyed limiter) and a cap on
//! requests in progress. A request beyond either is answered 429 with
//! Retry-After before it reaches the runtime, so one tenant's traffic
//! leaves room for the others' (the reply pipeline has slots of its own in
//! the runtime, see `engine::Lane`). State grows with the number of
//! tenants that use `/v1`, which the store bounds.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::config::AccessSettings;
use crate::domain::TenantId;
use crate::metrics as m;

pub struct ModelQuota {
    rate: DefaultKeyedRateLimiter<TenantId>,
    clock: DefaultClock,
    per_tenant: usize,
    running: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

/// Held while a tenant's request runs (for a stream, until it ends).
#[derive(Debug)]
pub struct QuotaPermit {
    _permit: OwnedSemaphorePermit,
}

impl ModelQuota {
    pub fn new(settings: &AccessSettings) -> ModelQuota {
        let per_minute =
            NonZeroU32::new(settings.models_requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_minute.get() / 10).unwrap_or(NonZeroU32::MIN);
        ModelQuota {
            rate: RateLimiter::keyed(Quota::per_minute(per_minute).allow_burst(burst)),
            clock: DefaultClock::default(),
            per_tenant: settings.models_concurrency_per_tenant,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Lets one request of `tenant` in, or says how long to wait.
    pub fn admit(&self, tenant: TenantId) -> Result<QuotaPermit, ApiError> {
        let semaphore = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(tenant)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant)))
            .clone();
        // Taken first: a request refused for concurrency spends no tokens.
        let Ok(permit) = semaphore.try_acquire_owned() else {
            m::api_throttled("concurrency");
            return Err(ApiError::Throttled {
                message: format!(
                    "this tenant already has {} model requests in progress",
                    self.per_tenant
                ),
                retry_after_secs: 1,
            });
        };
        if let Err(not_until) = self.rate.check_key(&tenant) {
            m::api_throttled("rate");
            let wait = not_until.wait_time_from(self.clock.now());
            return Err(ApiError::Throttled {
                message: "this tenant's model requests per minute are used up".into(),
                retry_after_secs: wait.as_secs().max(1),
            });
        }
        Ok(QuotaPermit { _permit: permit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn m6_each_tenant_has_its_own_rate_and_concurrency() {
        let mut settings = Settings::defaults().access;
        settings.models_requests_per_minute = 20;
        settings.models_concurrency_per_tenant = 2;
        let quota = ModelQuota::new(&settings);
        let (a, b) = (TenantId::new(), TenantId::new());
        let first = quota.admit(a).unwrap();
        let second = quota.admit(a).unwrap();
        let refused = quota.admit(a).unwrap_err();
        assert!(
            refused.to_string().contains("2 model requests in progress"),
            "{refused}"
        );
        let other = quota.admit(b).expect("another tenant is not affected");
        drop((first, second, other));
        // A burst of 20 / 10 = 2: the third request within the minute waits.
        let refused = quota.admit(a).unwrap_err();
        assert!(
            matches!(refused, ApiError::Throttled { retry_after_secs, .. } if (1..=6).contains(&retry_after_secs)),
            "{refused}"
        );
        assert!(quota.admit(b).is_ok(), "b has used one of its two");
    }
}
