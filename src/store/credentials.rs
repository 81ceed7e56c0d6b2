//! Shop credentials at rest: sealed with XChaCha20-Poly1305 under a key
//! that never enters the database (a file of its own, mode 0600, or the
//! `KEDAI_CREDENTIALS_KEY` environment variable), bound to their tenant and
//! shop so that a sealed value copied to another row does not open.
//!
//! A sealed value is `enc:v1:` and the hex of a random 24-byte nonce and
//! the ciphertext. Values written before encryption existed are plain JSON
//! and are sealed when the store opens.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::StoreError;
use crate::config::StoreSettings;

const SEALED_PREFIX: &str = "enc:v1:";
const KEY_ENV: &str = "KEDAI_CREDENTIALS_KEY";
const KEY_FILE: &str = "credentials.key";

/// The key shop credentials are sealed with.
pub struct CredentialKey {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for CredentialKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CredentialKey(..)")
    }
}

impl CredentialKey {
    pub fn from_bytes(bytes: [u8; 32]) -> CredentialKey {
        CredentialKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
        }
    }

    /// The key from `KEDAI_CREDENTIALS_KEY` (64 hex digits) or from its
    /// file, which is created (mode 0600) with a random key when missing.
    pub fn load(settings: &StoreSettings) -> Result<CredentialKey, StoreError> {
        if let Some(raw) = std::env::var_os(KEY_ENV) {
            let raw = raw.to_string_lossy();
            return parse_hex_key(raw.trim()).ok_or_else(|| {
                StoreError::Credentials(format!("{KEY_ENV} must be 64 hex digits (32 bytes)"))
            });
        }
        let path = key_path(settings);
        match std::fs::read_to_string(&path) {
            Ok(raw) => parse_hex_key(raw.trim()).ok_or_else(|| {
                StoreError::Credentials(format!(
                    "{} must hold 64 hex digits (32 bytes)",
                    path.display()
                ))
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => create_key_file(&path),
            Err(err) => Err(StoreError::Credentials(format!(
                "cannot read {}: {err}",
                path.display()
            ))),
        }
    }

    /// Seals `plain` for the shop `(tenant, shop_key)`.
    pub fn seal(&self, binding: &str, plain: &SecretString) -> Result<String, StoreError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain.expose_secret().as_bytes(),
                    aad: binding.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Credentials("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend(sealed);
        Ok(format!("{SEALED_PREFIX}{}", hex::encode(out)))
    }

    /// Opens a value sealed by [`CredentialKey::seal`] for the same shop.
    pub fn open(&self, binding: &str, stored: &str) -> Result<SecretString, StoreError> {
        let wrong = || {
            StoreError::Credentials(
                "shop credentials do not open with this key (a different credentials key?)".into(),
            )
        };
        let bytes = stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() > 24)
            .ok_or_else(wrong)?;
        let (nonce, sealed) = bytes.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: binding.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| wrong())
    }

    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }
}

/// What a sealed value is bound to: its tenant and shop.
pub fn binding(tenant: &str, shop_key: &str) -> String {
    format!("kedai-shop-credentials\u{1f}{tenant}\u{1f}{shop_key}")
}

fn key_path(settings: &StoreSettings) -> PathBuf {
    let configured = settings.credentials_key_file.trim();
    if configured.is_empty() {
        settings.data_dir.join(KEY_FILE)
    } else {
        PathBuf::from(configured)
    }
}

fn parse_hex_key(raw: &str) -> Option<CredentialKey> {
    let bytes: [u8; 32] = hex::decode(raw).ok()?.try_into().ok()?;
    Some(CredentialKey::from_bytes(bytes))
}

fn create_key_file(path: &Path) -> Result<CredentialKey, StoreError> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let failed = |err: std::io::Error| {
        StoreError::Credentials(format!("cannot create {}: {err}", path.display()))
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    let mut file = crate::store::private_file::create_new(path).map_err(failed)?;
    file.write_all(hex::encode(bytes).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    Ok(CredentialKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l10_sealed_credentials_open_only_for_their_shop_and_key() {
        let key = CredentialKey::from_bytes([7; 32]);
        let plain = SecretString::from(r#"{"partner_key":"s3cret"}"#);
        let sealed = key.seal(&binding("t1", "shop-1"), &plain).unwrap();
        assert!(CredentialKey::is_sealed(&sealed));
        assert!(!sealed.contains("s3cret"));
        let opened = key.open(&binding("t1", "shop-1"), &sealed).unwrap();
        assert_eq!(opened.expose_secret(), plain.expose_secret());
        assert!(key.open(&binding("t2", "shop-1"), &sealed).is_err());
        let other = CredentialKey::from_bytes([8; 32]);
        assert!(other.open(&binding("t1", "shop-1"), &sealed).is_err());
        assert_ne!(sealed, key.seal(&binding("t1", "shop-1"), &plain).unwrap());
    }
}
