//! Send rate limits: one GCRA bucket per platform app (all shops together)
//! and one per shop, from `channels.<platform>.rate_per_sec` and
//! `shop_rate_per_sec` (governor). A delivery that finds a bucket empty is
//! put back until the bucket refills, without using up an attempt.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::settings::ChannelSettings;
use crate::domain::{Platform, ShopId};

struct PlatformLimits {
    all: DefaultDirectRateLimiter,
    per_shop: DefaultKeyedRateLimiter<ShopId>,
}

pub struct SendLimits {
    platforms: HashMap<Platform, PlatformLimits>,
    clock: DefaultClock,
}

fn quota(per_sec: u32) -> Quota {
    Quota::per_second(NonZeroU32::new(per_sec.max(1)).expect("at least 1"))
}

impl SendLimits {
    pub fn new(settings: &ChannelSettings) -> SendLimits {
        let platforms = [
            Platform::Shopee,
            Platform::Lazada,
            Platform::Tiktok,
            Platform::Web,
        ]
        .into_iter()
        .filter_map(|p| {
            let s = settings.platform(p)?;
            Some((
                p,
                PlatformLimits {
                    all: RateLimiter::direct(quota(s.rate_per_sec)),
                    per_shop: RateLimiter::keyed(quota(s.shop_rate_per_sec)),
                },
            ))
        })
        .collect();
        SendLimits {
            platforms,
            clock: DefaultClock::default(),
        }
    }

    /// Takes one send from the shop's and the platform's buckets, or says
    /// how long to wait. The shop's bucket is checked first, so a busy
    /// shop does not use up the platform's sends while it waits.
    pub fn try_send(&self, platform: Platform, shop: ShopId) -> Result<(), Duration> {
        let Some(limits) = self.platforms.get(&platform) else {
            return Ok(());
        };
        let now = self.clock.now();
        limits
            .per_shop
            .check_key(&shop)
            .map_err(|not_until| not_until.wait_time_from(now))?;
        limits
            .all
            .check()
            .map_err(|not_until| not_until.wait_time_from(now))?;
        Ok(())
    }

    /// Forgets the buckets of shops that have been idle (bounded memory).
    pub fn prune(&self) {
        for limits in self.platforms.values() {
            limits.per_shop.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn a_shop_over_its_rate_waits_and_others_do_not() {
        let mut settings = Settings::defaults().channels;
        settings.tiktok.shop_rate_per_sec = 2;
        settings.tiktok.rate_per_sec = 100;
        let limits = SendLimits::new(&settings);
        let (a, b) = (ShopId::new(), ShopId::new());
        assert!(limits.try_send(Platform::Tiktok, a).is_ok());
        assert!(limits.try_send(Platform::Tiktok, a).is_ok());
        let wait = limits.try_send(Platform::Tiktok, a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(limits.try_send(Platform::Tiktok, b).is_ok());
        assert!(limits.try_send(Platform::Generic, a).is_ok());
    }
}
