//! API credentials: what a token may do (its [`Scopes`]), how tokens are
//! made and how they are stored. A token is shown once when issued; the
//! store keeps only its sha256 and a short prefix.
//!
//! Two kinds exist. A tenant token (`kd_…`) acts for one tenant, within its
//! scopes, optionally for one shop and until an expiry. An operator token
//! (`kdo_…`) belongs to no tenant: it runs the server (retraining the
//! shared classifiers, readiness details, metrics) and reaches no tenant's
//! data. This module knows nothing of HTTP; `http::access` maps routes to
//! the scope they need.

use std::fmt;

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::domain::{ShopId, TenantId};
use crate::store::{NewOperatorToken, NewToken, OperatorTokenInfo, Store, StoreError, TokenInfo};

const TENANT_PREFIX: &str = "kd_";
const OPERATOR_PREFIX: &str = "kdo_";
const TOKEN_RANDOM_CHARS: usize = 40;
/// Characters of a token kept to recognise it in lists, after its prefix.
const SHOWN_CHARS: usize = 6;

/// One thing a tenant token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Everything below, and whatever the tenant's API adds later.
    Admin,
    /// Post buyer messages (`POST /api/v1/messages`).
    Ingest,
    /// Reply to conversations as an agent, add internal notes, set a
    /// conversation's status.
    Reply,
    /// Report orders and buyer profiles.
    Orders,
    /// Read conversations, orders and the knowledge base; search it.
    Read,
    /// Edit the knowledge base.
    Kb,
    /// Use the local models through the OpenAI-compatible `/v1` endpoints.
    Models,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Scope::Admin,
        Scope::Ingest,
        Scope::Reply,
        Scope::Orders,
        Scope::Read,
        Scope::Kb,
        Scope::Models,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "admin",
            Scope::Ingest => "ingest",
            Scope::Reply => "reply",
            Scope::Orders => "orders",
            Scope::Read => "read",
            Scope::Kb => "kb",
            Scope::Models => "models",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Named sets of scopes a person can ask for by one word.
pub const PRESETS: [(&str, &[Scope]); 3] = [
    ("admin", &[Scope::Admin]),
    // What a marketplace connector or helpdesk bridge needs: messages in,
    // agents' replies and notes out, orders, and reading what it wrote.
    (
        "integration",
        &[Scope::Ingest, Scope::Reply, Scope::Orders, Scope::Read],
    ),
    ("read-only", &[Scope::Read]),
];

/// The set of scopes a token holds. `admin` holds every scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u8);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error(
        "unknown scope {0:?}; use admin, integration, read-only, or any of ingest, reply, \
         orders, read, kb, models"
    )]
    Unknown(String),
    #[error("no scope given; use admin, integration, read-only, or a list such as ingest,read")]
    Empty,
    #[error("a token restricted to one shop cannot hold the `{0}` scope, which is tenant-wide")]
    TenantWide(Scope),
}

impl Scopes {
    pub fn admin() -> Scopes {
        Scopes(Scope::Admin.bit())
    }

    pub fn of(scopes: &[Scope]) -> Scopes {
        Scopes(scopes.iter().fold(0, |bits, s| bits | s.bit()))
    }

    /// Parses a comma- or space-separated list of scopes and presets, e.g.
    /// `integration,kb` or `read models`.
    pub fn parse(raw: &str) -> Result<Scopes, ScopeError> {
        let mut scopes = Scopes::default();
        for word in raw
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
        {
            let word = word.to_ascii_lowercase();
            if let Some((_, preset)) = PRESETS.iter().find(|(name, _)| *name == word) {
                scopes = scopes.union(Scopes::of(preset));
                continue;
            }
            let scope = Scope::ALL
                .into_iter()
                .find(|s| s.as_str() == word)
                .ok_or_else(|| ScopeError::Unknown(word.clone()))?;
            scopes = scopes.union(Scopes::of(&[scope]));
        }
        if scopes.0 == 0 {
            return Err(ScopeError::Empty);
        }
        Ok(scopes)
    }

    pub fn union(self, other: Scopes) -> Scopes {
        Scopes(self.0 | other.0)
    }

    /// Whether a token with these scopes may do what `scope` allows.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & Scope::Admin.bit() != 0 || self.0 & scope.bit() != 0
    }

    pub fn list(self) -> Vec<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| self.0 & s.bit() != 0)
            .collect()
    }

    /// Scopes that reach beyond one shop; a shop-bound token may hold none.
    pub fn check_shop_bound(self) -> Result<(), ScopeError> {
        match [Scope::Admin, Scope::Kb]
            .into_iter()
            .find(|s| self.0 & s.bit() != 0)
        {
            Some(scope) => Err(ScopeError::TenantWide(scope)),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list().into_iter().map(Scope::as_str).collect();
        f.write_str(&names.join(" "))
    }
}

impl Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.list())
    }
}

/// What a bearer token looks like, before anyone asks the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenShape {
    Tenant,
    Operator,
}

impl TokenShape {
    /// The kind of a well-formed token; `None` for anything that cannot be
    /// one of ours, which is refused without a store lookup.
    pub fn of(token: &str) -> Option<TokenShape> {
        let (shape, random) = if let Some(rest) = token.strip_prefix(OPERATOR_PREFIX) {
            (TokenShape::Operator, rest)
        } else if let Some(rest) = token.strip_prefix(TENANT_PREFIX) {
            (TokenShape::Tenant, rest)
        } else {
            return None;
        };
        (random.len() == TOKEN_RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then_some(shape)
    }
}

/// The stored form of a token: its sha256, hex. Tokens carry 238 bits of
/// randomness, so a fast hash is enough and lookups stay cheap.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token(prefix: &str) -> String {
    let random = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_RANDOM_CHARS);
    format!("{prefix}{random}")
}

/// A fresh random tenant token: `kd_` and 40 alphanumeric characters.
pub fn generate_token() -> String {
    random_token(TENANT_PREFIX)
}

fn shown_prefix(token: &str, prefix: &str) -> String {
    token[..prefix.len() + SHOWN_CHARS].to_owned()
}

/// What a new tenant token may do.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub tenant: TenantId,
    pub label: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    /// The one shop it may act for; `None` for all of the tenant's.
    pub shop: Option<ShopId>,
}

/// Issues a tenant administrator token for `tenant` (every scope, no
/// expiry) and returns it with its stored description. The token itself is
/// not kept anywhere: show it to the user now.
pub async fn issue_token(
    store: &dyn Store,
    tenant: TenantId,
    label: &str,
) -> Result<(TokenInfo, String), StoreError> {
    issue_scoped_token(
        store,
        TokenGrant {
            tenant,
            label: label.to_owned(),
            scopes: Scopes::admin(),
            expires_at: None,
            shop: None,
        },
    )
    .await
}

/// Issues a tenant token with exactly what `grant` allows.
pub async fn issue_scoped_token(
    store: &dyn Store,
    grant: TokenGrant,
) -> Result<(TokenInfo, String), StoreError> {
    let token = generate_token();
    let info = store
        .create_token(NewToken {
            tenant_id: grant.tenant,
            label: grant.label,
            token_hash: token_hash(&token),
            prefix: shown_prefix(&token, TENANT_PREFIX),
            scopes: grant.scopes,
            expires_at: grant.expires_at,
            shop_id: grant.shop,
        })
        .await?;
    Ok((info, token))
}

/// Issues an operator token (`kdo_…`), which belongs to no tenant.
pub async fn issue_operator_token(
    store: &dyn Store,
    label: &str,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(OperatorTokenInfo, String), StoreError> {
    let token = random_token(OPERATOR_PREFIX);
    let info = store
        .create_operator_token(NewOperatorToken {
            label: label.to_owned(),
            token_hash: token_hash(&token),
            prefix: shown_prefix(&token, OPERATOR_PREFIX),
            expires_at,
        })
        .await?;
    Ok((info, token))
}

/// Parses an expiry given on the command line: an RFC 3339 time, or a
/// duration from now such as `90d`, `12h` or `30m`.
pub fn parse_expiry(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        let at = at.with_timezone(&Utc);
        if at <= now {
            return Err(format!("expiry {raw:?} is in the past"));
        }
        return Ok(at);
    }
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let amount: i64 = number
        .parse()
        .ok()
        .filter(|n| *n > 0 && *n <= 3650 * 24 * 60)
        .ok_or_else(|| format!("expiry {raw:?} must be like 90d, 12h, 30m or an RFC 3339 time"))?;
    let duration = match unit {
        "d" => chrono::Duration::days(amount),
        "h" => chrono::Duration::hours(amount),
        "m" => chrono::Duration::minutes(amount),
        _ => {
            return Err(format!(
                "expiry {raw:?} must be like 90d, 12h, 30m or an RFC 3339 time"
            ))
        }
    };
    Ok(now + duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_well_formed() {
        let a = generate_token();
        let b = generate_token();
        assert_ne!(a, b);
        assert!(a.starts_with("kd_"));
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        assert_eq!(TokenShape::of(&a), Some(TokenShape::Tenant));
        let op = random_token(OPERATOR_PREFIX);
        assert_eq!(TokenShape::of(&op), Some(TokenShape::Operator));
    }

    #[test]
    fn m8_malformed_tokens_are_recognised_without_the_store() {
        let valid = generate_token();
        for bad in [
            "",
            "kd_",
            "kd_short",
            "bearer-something",
            &valid[..42],
            &format!("{valid}x"),
            &valid.replace(&valid[5..6], "-"),
            "kdo_ééééééééééééééééééééééééééééééééééééééé",
        ] {
            assert_eq!(TokenShape::of(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn scopes_parse_presets_and_lists() {
        let cases: [(&str, &[Scope]); 5] = [
            ("admin", &[Scope::Admin]),
            (
                "integration",
                &[Scope::Ingest, Scope::Reply, Scope::Orders, Scope::Read],
            ),
            ("read-only", &[Scope::Read]),
            ("read, models", &[Scope::Read, Scope::Models]),
            ("integration,kb", &Scope::ALL[1..6]),
        ];
        for (raw, expected) in cases {
            assert_eq!(Scopes::parse(raw).unwrap().list(), expected, "{raw}");
        }
        assert_eq!(
            Scopes::parse("root").unwrap_err(),
            ScopeError::Unknown("root".into())
        );
        assert_eq!(Scopes::parse(" , ").unwrap_err(), ScopeError::Empty);
        let stored = Scopes::parse("integration").unwrap().to_string();
        assert_eq!(stored, "ingest reply orders read");
        assert_eq!(
            Scopes::parse(&stored).unwrap(),
            Scopes::parse("integration").unwrap()
        );
    }

    #[test]
    fn admin_allows_everything_and_others_only_their_own() {
        for scope in Scope::ALL {
            assert!(Scopes::admin().allows(scope));
        }
        let read = Scopes::parse("read-only").unwrap();
        assert!(read.allows(Scope::Read));
        for scope in [Scope::Admin, Scope::Ingest, Scope::Kb, Scope::Models] {
            assert!(!read.allows(scope), "{scope}");
        }
        assert!(Scopes::parse("integration")
            .unwrap()
            .check_shop_bound()
            .is_ok());
        assert_eq!(
            Scopes::parse("read,kb").unwrap().check_shop_bound(),
            Err(ScopeError::TenantWide(Scope::Kb))
        );
    }

    #[test]
    fn expiries_parse_durations_and_times() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_expiry("90d", now).unwrap(),
            now + chrono::Duration::days(90)
        );
        assert_eq!(
            parse_expiry("2027-01-01T00:00:00Z", now)
                .unwrap()
                .to_rfc3339(),
            "2027-01-01T00:00:00+00:00"
        );
        for bad in ["0d", "5y", "soon", "2020-01-01T00:00:00Z", "-3h"] {
            assert!(parse_expiry(bad, now).is_err(), "{bad}");
        }
    }
}
