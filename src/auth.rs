//! API tokens: how they are made and how they are stored. A token is shown
//! once when issued; the store keeps only its sha256 and a short prefix.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::domain::TenantId;
use crate::store::{NewToken, Store, StoreError, TokenInfo};

const TOKEN_PREFIX: &str = "kd_";
const TOKEN_RANDOM_CHARS: usize = 40;

/// The stored form of a token: its sha256, hex. Tokens carry 238 bits of
/// randomness, so a fast hash is enough and lookups stay cheap.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh random token: `kd_` and 40 alphanumeric characters.
pub fn generate_token() -> String {
    let random = Alphanumeric.sample_string(&mut rand::rng(), TOKEN_RANDOM_CHARS);
    format!("{TOKEN_PREFIX}{random}")
}

/// Issues a token for `tenant` and returns it with its stored description.
/// The token itself is not kept anywhere: show it to the user now.
pub async fn issue_token(
    store: &dyn Store,
    tenant: TenantId,
    label: &str,
) -> Result<(TokenInfo, String), StoreError> {
    let token = generate_token();
    let info = store
        .create_token(NewToken {
            tenant_id: tenant,
            label: label.to_owned(),
            token_hash: token_hash(&token),
            prefix: token[..TOKEN_PREFIX.len() + 6].to_owned(),
        })
        .await?;
    Ok((info, token))
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
    }
}
