//! A shop's credentials, per platform: the JSON object given to `kedai shop
//! add --credentials FILE` or `kedai shop set`, checked field by field.
//! Secrets are `SecretString`s, so `{:?}` never prints them; the store keeps
//! the object and never returns it through the API.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::signature::PushSigner;
use super::ChannelError;
use crate::domain::Platform;

/// Shopee Open Platform v2, for one shop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopeeCredentials {
    pub partner_id: u64,
    pub partner_key: SecretString,
    /// The Live Push Partner Key of the app's push settings, when pushes
    /// are signed with it rather than the partner key (platform docs and
    /// integrators disagree; see the README).
    pub push_key: Option<SecretString>,
    /// The push callback URL exactly as registered in the Shopee console:
    /// it is part of what Shopee signs.
    pub callback_url: String,
    pub shop_id: u64,
    pub access_token: SecretString,
    pub api_base: Option<String>,
}

/// Lazada Open Platform, for one seller in one country.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LazadaCredentials {
    pub app_key: String,
    pub app_secret: SecretString,
    pub seller_id: String,
    pub access_token: SecretString,
    /// The country's gateway, e.g. `https://api.lazada.co.id/rest`.
    pub api_base: Option<String>,
}

/// TikTok Shop Partner API, for one shop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiktokCredentials {
    pub app_key: String,
    pub app_secret: SecretString,
    pub shop_id: String,
    pub shop_cipher: String,
    pub access_token: SecretString,
    pub api_base: Option<String>,
}

/// The web-chat widget of the seller's own site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebCredentials {
    /// Origins (`https://shop.example`) whose pages may embed the widget;
    /// empty allows any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Credentials {
    Shopee(ShopeeCredentials),
    Lazada(LazadaCredentials),
    Tiktok(TiktokCredentials),
    Web(WebCredentials),
    /// A marketplace shop without credentials yet: nothing can be sent or
    /// verified for it.
    NotConnected,
}

fn check_url(field: &str, url: &str) -> Result<(), ChannelError> {
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2048
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(ChannelError::Credentials(format!(
            "{field} must be an http(s) URL without spaces, got {url:?}"
        )))
    }
}

fn check_text(field: &str, value: &str) -> Result<(), ChannelError> {
    if value.trim().is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
        return Err(ChannelError::Credentials(format!(
            "{field} must be 1 to 512 printable characters"
        )));
    }
    Ok(())
}

impl Credentials {
    /// Parses a shop's stored credentials. `{}` is a shop not connected yet
    /// (a web shop needs nothing).
    pub fn parse(platform: Platform, raw: &SecretString) -> Result<Credentials, ChannelError> {
        let raw = raw.expose_secret();
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ChannelError::Credentials(format!("not JSON: {e}")))?;
        let Some(object) = value.as_object() else {
            return Err(ChannelError::Credentials("must be a JSON object".into()));
        };
        let wrong = |e: serde_json::Error| {
            ChannelError::Credentials(format!("{platform} credentials: {e}"))
        };
        if object.is_empty() && platform != Platform::Web {
            return Ok(Credentials::NotConnected);
        }
        let credentials = match platform {
            Platform::Shopee => {
                let c: ShopeeCredentials = serde_json::from_value(value).map_err(wrong)?;
                check_url("callback_url", &c.callback_url)?;
                check_text("partner_key", c.partner_key.expose_secret())?;
                check_text("access_token", c.access_token.expose_secret())?;
                Credentials::Shopee(c)
            }
            Platform::Lazada => {
                let c: LazadaCredentials = serde_json::from_value(value).map_err(wrong)?;
                check_text("app_key", &c.app_key)?;
                check_text("app_secret", c.app_secret.expose_secret())?;
                check_text("seller_id", &c.seller_id)?;
                check_text("access_token", c.access_token.expose_secret())?;
                Credentials::Lazada(c)
            }
            Platform::Tiktok => {
                let c: TiktokCredentials = serde_json::from_value(value).map_err(wrong)?;
                check_text("app_key", &c.app_key)?;
                check_text("app_secret", c.app_secret.expose_secret())?;
                check_text("shop_id", &c.shop_id)?;
                check_text("shop_cipher", &c.shop_cipher)?;
                check_text("access_token", c.access_token.expose_secret())?;
                Credentials::Tiktok(c)
            }
            Platform::Web => {
                let c: WebCredentials = serde_json::from_value(value).map_err(wrong)?;
                for origin in &c.allowed_origins {
                    check_url("allowed_origins", origin)?;
                }
                Credentials::Web(c)
            }
            Platform::Generic => {
                return Err(ChannelError::Credentials(
                    "generic shops have no channel credentials".into(),
                ))
            }
        };
        if let Some(base) = credentials.api_base() {
            check_url("api_base", base)?;
        }
        Ok(credentials)
    }

    /// The platform's id of the shop, which its pushes carry.
    pub fn account_id(&self) -> Option<String> {
        match self {
            Credentials::Shopee(c) => Some(c.shop_id.to_string()),
            Credentials::Lazada(c) => Some(c.seller_id.clone()),
            Credentials::Tiktok(c) => Some(c.shop_id.clone()),
            Credentials::Web(_) | Credentials::NotConnected => None,
        }
    }

    /// What the shop's platform app signs pushes with.
    pub fn push_signer(&self) -> Option<PushSigner> {
        match self {
            Credentials::Shopee(c) => Some(PushSigner::shopee(
                c.push_key.clone().unwrap_or_else(|| c.partner_key.clone()),
                &c.callback_url,
            )),
            Credentials::Lazada(c) => Some(PushSigner::app(c.app_secret.clone(), &c.app_key)),
            Credentials::Tiktok(c) => Some(PushSigner::app(c.app_secret.clone(), &c.app_key)),
            Credentials::Web(_) | Credentials::NotConnected => None,
        }
    }

    pub fn api_base(&self) -> Option<&str> {
        match self {
            Credentials::Shopee(c) => c.api_base.as_deref(),
            Credentials::Lazada(c) => c.api_base.as_deref(),
            Credentials::Tiktok(c) => c.api_base.as_deref(),
            Credentials::Web(_) | Credentials::NotConnected => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(platform: Platform, json: &str) -> Result<Credentials, ChannelError> {
        Credentials::parse(platform, &SecretString::from(json))
    }

    #[test]
    fn each_platform_reads_its_fields_and_names_a_bad_one() {
        let shopee = parse(
            Platform::Shopee,
            r#"{"partner_id": 2001887, "partner_key": "shpk-abc", "callback_url": "https://k.example/webhooks/shopee",
                "shop_id": 727720655, "access_token": "tok"}"#,
        )
        .unwrap();
        assert_eq!(shopee.account_id().as_deref(), Some("727720655"));
        assert_eq!(
            shopee.push_signer().unwrap().prefix,
            "https://k.example/webhooks/shopee|"
        );
        let lazada = parse(
            Platform::Lazada,
            r#"{"app_key": "123456", "app_secret": "s", "seller_id": "1234567", "access_token": "t",
                "api_base": "https://api.lazada.co.id/rest"}"#,
        )
        .unwrap();
        assert_eq!(lazada.account_id().as_deref(), Some("1234567"));
        assert_eq!(lazada.api_base(), Some("https://api.lazada.co.id/rest"));

        let err = parse(Platform::Tiktok, r#"{"app_key": "k"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field"), "{err}");
        let err = parse(Platform::Lazada, r#"{"app_key": "k", "app_secret": "s", "seller_id": "1", "access_token": "t", "extra": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
        let err = parse(
            Platform::Shopee,
            r#"{"partner_id": 1, "partner_key": "k", "callback_url": "ftp://x", "shop_id": 1, "access_token": "t"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("callback_url"), "{err}");
        assert!(matches!(
            parse(Platform::Shopee, "{}").unwrap(),
            Credentials::NotConnected
        ));
        assert!(parse(Platform::Shopee, "[]").is_err());
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let c = parse(
            Platform::Tiktok,
            r#"{"app_key": "k", "app_secret": "very-secret", "shop_id": "1", "shop_cipher": "c", "access_token": "tok-secret"}"#,
        )
        .unwrap();
        let printed = format!("{c:?} {:?}", c.push_signer());
        assert!(
            !printed.contains("very-secret") && !printed.contains("tok-secret"),
            "{printed}"
        );
    }
}
