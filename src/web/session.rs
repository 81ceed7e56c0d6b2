//! Who is asking: passwords (argon2id), session cookies (random, stored
//! only as their sha256, `HttpOnly`, `SameSite=Strict`, `Secure` off
//! loopback), the per-session CSRF token every form echoes, and the login
//! throttle. [`Viewer`] is the extractor every page takes: no page renders
//! without a live session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::Utc;
use rand::distr::{Alphanumeric, SampleString};
use subtle::ConstantTimeEq;

use super::{WebError, WebState};
use crate::auth::token_hash;
use crate::domain::{ConversationId, ShopId};
use crate::store::users::{NewSession, Role, User};

pub const SESSION_COOKIE: &str = "kedai_session";
const SESSION_RANDOM_CHARS: usize = 43;
pub const MIN_PASSWORD_CHARS: usize = 10;
const MAX_PASSWORD_CHARS: usize = 1024;

/// An argon2id hash (PHC string) with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, WebError> {
    let bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&bytes)
        .map_err(|e| WebError::Internal(format!("making a salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| WebError::Internal(format!("hashing a password: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new password must be long enough and not absurdly long.
pub fn check_new_password(password: &str) -> Result<(), WebError> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err(WebError::Invalid(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters, got {chars}"
        )));
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err(WebError::Invalid(format!(
            "password must be at most {MAX_PASSWORD_CHARS} characters, got {chars}"
        )));
    }
    Ok(())
}

/// Starts a session for `user`; returns the cookie to set.
pub async fn start_session(
    state: &WebState,
    headers: &HeaderMap,
    user: &User,
) -> Result<Cookie<'static>, WebError> {
    let value = Alphanumeric.sample_string(&mut rand::rng(), SESSION_RANDOM_CHARS);
    let csrf_token = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let hours = i64::from(state.settings.session_hours);
    state
        .app
        .store
        .create_session(&NewSession {
            id_hash: token_hash(&value),
            user: user.id,
            tenant: user.tenant_id,
            csrf_token,
            expires_at: Utc::now() + chrono::Duration::hours(hours),
        })
        .await?;
    let mut cookie = Cookie::new(SESSION_COOKIE, value);
    cookie.set_http_only(true);
    cookie.set_same_site(SameSite::Strict);
    cookie.set_path("/");
    cookie.set_max_age(time::Duration::hours(hours));
    cookie.set_secure(secure_cookie(&state.settings.secure_cookies, headers));
    Ok(cookie)
}

/// `auto`: Secure unless the browser reached us on a loopback address,
/// where browsers may refuse Secure cookies over plain HTTP.
fn secure_cookie(setting: &str, headers: &HeaderMap) -> bool {
    match setting {
        "always" => true,
        "never" => false,
        _ => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("");
            !is_loopback_host(host)
        }
    }
}

fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The signed-in person behind a request.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub csrf: String,
    pub session_hash: String,
}

impl Viewer {
    /// Checks a form's CSRF token against the session's, in constant time.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if bool::from(self.csrf.as_bytes().ct_eq(token.as_bytes())) {
            Ok(())
        } else {
            Err(WebError::BadCsrf)
        }
    }

    pub fn require_agent(&self) -> Result<(), WebError> {
        if self.user.role.can_act() {
            Ok(())
        } else {
            Err(WebError::Forbidden(
                "read-only users cannot change anything".into(),
            ))
        }
    }

    pub fn require_admin(&self) -> Result<(), WebError> {
        if self.user.role == Role::Admin {
            Ok(())
        } else {
            Err(WebError::Forbidden("only admins can do this".into()))
        }
    }

    /// The conversation's shop, when this user may see it; otherwise the
    /// conversation does not exist as far as they can tell.
    pub async fn conversation_shop(
        &self,
        state: &WebState,
        conversation: ConversationId,
    ) -> Result<ShopId, WebError> {
        let not_found = || WebError::NotFound(format!("conversation {conversation}"));
        let shop = state
            .app
            .store
            .conversation_shop_id(self.user.tenant_id, conversation)
            .await?
            .ok_or_else(not_found)?;
        if self.user.shops.allows(shop) {
            Ok(shop)
        } else {
            Err(not_found())
        }
    }
}

impl FromRequestParts<WebState> for Viewer {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, WebError> {
        let login = || WebError::LoginRequired {
            next: parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_else(|| "/app/inbox".into()),
        };
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Err(login());
        };
        let hash = token_hash(cookie.value());
        match state.app.store.session(&hash, Utc::now()).await? {
            Some(session) => Ok(Viewer {
                user: session.user,
                csrf: session.csrf_token,
                session_hash: hash,
            }),
            None => Err(login()),
        }
    }
}

/// Counts failed logins per key (an email address, a client address) in a
/// sliding window. Hand-written: a map of timestamps is all this needs,
/// and it must count failures only, which a request-rate limiter does not.
#[derive(Debug)]
pub struct LoginLimiter {
    window: Duration,
    max_failures: usize,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

/// Keys kept at most; the oldest windows are dropped first beyond it.
const LIMITER_KEYS: usize = 10_000;

impl LoginLimiter {
    pub fn new(max_failures: u32, window: Duration) -> LoginLimiter {
        LoginLimiter {
            window,
            max_failures: max_failures as usize,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Seconds until `key` may try again; `None` when it may now.
    pub fn blocked(&self, key: &str, now: Instant) -> Option<u64> {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let times = failures.get_mut(key)?;
        times.retain(|t| now.duration_since(*t) < self.window);
        if times.len() < self.max_failures {
            return None;
        }
        let oldest = times.first().copied()?;
        Some((self.window - now.duration_since(oldest)).as_secs().max(1))
    }

    pub fn fail(&self, key: &str, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= LIMITER_KEYS && !failures.contains_key(key) {
            let window = self.window;
            failures.retain(|_, times| {
                times.retain(|t| now.duration_since(*t) < window);
                !times.is_empty()
            });
        }
        failures.entry(key.to_owned()).or_default().push(now);
    }

    pub fn clear(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("correct horse batterY", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }

    #[test]
    fn short_passwords_are_refused() {
        assert!(check_new_password("short").is_err());
        assert!(check_new_password("long enough!").is_ok());
    }

    #[test]
    fn limiter_blocks_after_the_allowed_failures_until_the_window_passes() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.blocked("a@x.io", t0), None);
            limiter.fail("a@x.io", t0);
        }
        assert!(limiter.blocked("a@x.io", t0).is_some());
        assert_eq!(limiter.blocked("b@x.io", t0), None);
        assert_eq!(
            limiter.blocked("a@x.io", t0 + Duration::from_secs(61)),
            None
        );
        limiter.fail("a@x.io", t0);
        limiter.clear("a@x.io");
        assert_eq!(limiter.blocked("a@x.io", t0), None);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in ["127.0.0.1:8080", "localhost:3000", "[::1]:80", "localhost"] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in ["shop.example.com", "10.0.0.2:8080", "[2001:db8::1]:80"] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}
