//! Tenants, their API tokens and their shops. PostgreSQL implementation of [`TenantStore`].

use super::*;
use crate::store::credentials::{self, CredentialKey};

impl PostgresStore {
    /// Seals credentials stored before they were encrypted; runs when the
    /// store opens, and does nothing once every row is sealed.
    pub(super) async fn seal_plain_credentials(&self) -> Result<(), StoreError> {
        let plain: Vec<(String, String, String, String)> = sqlx::query_as(&pg(
            "SELECT id, tenant_id, shop_key, credentials FROM shops \
             WHERE credentials NOT LIKE 'enc:%'",
        ))
        .fetch_all(&self.writer)
        .await?;
        if plain.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, tenant, key, credentials) in &plain {
            let sealed = self.credentials.seal(
                &credentials::binding(tenant, key),
                &SecretString::from(credentials.clone()),
            )?;
            debug_assert!(CredentialKey::is_sealed(&sealed));
            sqlx::query(&pg("UPDATE shops SET credentials = ? WHERE id = ?"))
                .bind(sealed)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(shops = plain.len(), "shop credentials encrypted at rest");
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TenantRow {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) created_at: String,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: parse_id(&row.id, "tenant")?,
            name: row.name,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ShopRow {
    pub(super) id: String,
    pub(super) tenant_id: String,
    pub(super) platform: String,
    pub(super) shop_key: String,
    pub(super) name: String,
    pub(super) country: Option<String>,
    pub(super) currency: Option<String>,
    pub(super) language: Option<String>,
    pub(super) policy: String,
    pub(super) created_at: String,
}

fn market(
    country: Option<String>,
    currency: Option<String>,
    language: Option<String>,
) -> Result<Market, StoreError> {
    let corrupt = |e: crate::domain::ValidationError| StoreError::Corrupt(e.to_string());
    Ok(Market {
        country: country
            .as_deref()
            .map(CountryCode::parse)
            .transpose()
            .map_err(corrupt)?,
        currency: currency
            .as_deref()
            .map(CurrencyCode::parse)
            .transpose()
            .map_err(corrupt)?,
        language: language
            .as_deref()
            .map(LanguageCode::parse)
            .transpose()
            .map_err(corrupt)?,
    })
}

/// The columns of a `ShopRow`.
const SHOP_COLUMNS: &str =
    "id, tenant_id, platform, shop_key, name, country, currency, language, policy, created_at";

impl TryFrom<ShopRow> for Shop {
    type Error = StoreError;
    fn try_from(row: ShopRow) -> Result<Self, StoreError> {
        Ok(Shop {
            id: parse_id(&row.id, "shop")?,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            platform: row
                .platform
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("bad platform {:?}", row.platform)))?,
            key: ShopKey::parse(&row.shop_key).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            name: row.name,
            market: market(row.country, row.currency, row.language)?,
            policy: serde_json::from_str(&row.policy)
                .map_err(|e| StoreError::Corrupt(format!("shop policy: {e}")))?,
            created_at: parse_ts(&row.created_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    pub(super) id: String,
    pub(super) tenant_id: String,
    pub(super) label: String,
    pub(super) prefix: String,
    pub(super) scopes: String,
    pub(super) shop_id: Option<String>,
    pub(super) created_at: String,
    pub(super) expires_at: Option<String>,
    pub(super) revoked_at: Option<String>,
    pub(super) last_used_at: Option<String>,
}

const TOKEN_COLUMNS: &str = "id, tenant_id, label, prefix, scopes, shop_id, created_at, \
                             expires_at, revoked_at, last_used_at";

fn parse_scopes(raw: &str) -> Result<Scopes, StoreError> {
    Scopes::parse(raw).map_err(|e| StoreError::Corrupt(format!("token scopes {raw:?}: {e}")))
}

fn parse_optional_ts(raw: Option<&str>) -> Result<Option<DateTime<Utc>>, StoreError> {
    raw.map(parse_ts).transpose()
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenInfo {
            id: parse_id(&row.id, "token")?,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            label: row.label,
            prefix: row.prefix,
            scopes: parse_scopes(&row.scopes)?,
            shop_id: row
                .shop_id
                .as_deref()
                .map(|s| parse_id(s, "shop"))
                .transpose()?,
            created_at: parse_ts(&row.created_at)?,
            expires_at: parse_optional_ts(row.expires_at.as_deref())?,
            revoked_at: parse_optional_ts(row.revoked_at.as_deref())?,
            last_used_at: parse_optional_ts(row.last_used_at.as_deref())?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    tenant_id: String,
    id: String,
    scopes: String,
    expires_at: Option<String>,
    shop_key: Option<String>,
    last_used_at: Option<String>,
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query(&pg("SELECT 1")).execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &TenantName) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.as_str().to_owned(),
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(&pg(
            "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
        ))
        .bind(tenant.id.to_string())
        .bind(&tenant.name)
        .bind(ts(tenant.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("tenant {:?}", tenant.name),
                })
            }
            other => other?,
        };
        insert_audit(
            &mut tx,
            Some(tenant.id),
            &AuditEvent {
                actor: "system".into(),
                action: "tenant.created".into(),
                subject_type: "tenant".into(),
                subject_id: tenant.id.to_string(),
                details: serde_json::json!({ "name": tenant.name }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(tenant)
    }

    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>(&pg(
            "SELECT id, name, created_at FROM tenants WHERE name = ?",
        ))
        .bind(name)
        .fetch_optional(&self.reader)
        .await?
        .map(Tenant::try_from)
        .transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>(&pg(
            "SELECT id, name, created_at FROM tenants ORDER BY name",
        ))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Tenant::try_from)
        .collect()
    }

    async fn create_token(&self, token: NewToken) -> Result<TokenInfo, StoreError> {
        let info = TokenInfo {
            id: TokenId::new(),
            tenant_id: token.tenant_id,
            label: token.label,
            prefix: token.prefix,
            scopes: token.scopes,
            shop_id: token.shop_id,
            created_at: now(),
            expires_at: token.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.begin_write().await?;
        if let Some(shop) = info.shop_id {
            // A shop-bound token may only name one of its own tenant's shops.
            let owner: Option<String> =
                sqlx::query_scalar(&pg("SELECT tenant_id FROM shops WHERE id = ?"))
                    .bind(shop.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if owner.as_deref() != Some(info.tenant_id.to_string().as_str()) {
                return Err(StoreError::NotFound {
                    what: format!("shop {shop} of this tenant"),
                });
            }
        }
        sqlx::query(&pg(
            "INSERT INTO api_tokens (id, tenant_id, label, token_hash, prefix, scopes, shop_id, \
             created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(info.id.to_string())
        .bind(info.tenant_id.to_string())
        .bind(&info.label)
        .bind(&token.token_hash)
        .bind(&info.prefix)
        .bind(info.scopes.to_string())
        .bind(info.shop_id.map(|s| s.to_string()))
        .bind(ts(info.created_at))
        .bind(info.expires_at.map(ts))
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(info.tenant_id),
            &AuditEvent {
                actor: "system".into(),
                action: "token.created".into(),
                subject_type: "token".into(),
                subject_id: info.id.to_string(),
                details: serde_json::json!({
                    "label": info.label,
                    "prefix": info.prefix,
                    "scopes": info.scopes,
                    "shop_id": info.shop_id,
                    "expires_at": info.expires_at,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn revoke_token(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let tenant: Option<String> = sqlx::query_scalar(&pg(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
             RETURNING tenant_id",
        ))
        .bind(ts(now()))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(tenant) = tenant else {
            return Ok(false);
        };
        insert_audit(
            &mut tx,
            Some(parse_id(&tenant, "tenant")?),
            &AuditEvent {
                actor: "system".into(),
                action: "token.revoked".into(),
                subject_type: "token".into(),
                subject_id: id.to_string(),
                details: serde_json::json!({}),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_tokens(&self, tenant: TenantId) -> Result<Vec<TokenInfo>, StoreError> {
        sqlx::query_as::<_, TokenRow>(&pg(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant_id = ? ORDER BY created_at"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(TokenInfo::try_from)
        .collect()
    }

    async fn authenticate(&self, token_hash: &str) -> Result<Option<TokenGrantRecord>, StoreError> {
        let row: Option<GrantRow> = sqlx::query_as(&pg(
            "SELECT t.tenant_id, t.id, t.scopes, t.expires_at, s.shop_key, t.last_used_at \
             FROM api_tokens t LEFT JOIN shops s ON s.id = t.shop_id AND s.tenant_id = t.tenant_id \
             WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        ))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(TokenGrantRecord {
                tenant_id: parse_id(&row.tenant_id, "tenant")?,
                token_id: parse_id(&row.id, "token")?,
                scopes: parse_scopes(&row.scopes)?,
                expires_at: parse_optional_ts(row.expires_at.as_deref())?,
                shop: row
                    .shop_key
                    .as_deref()
                    .map(|k| ShopKey::parse(k).map_err(|e| StoreError::Corrupt(e.to_string())))
                    .transpose()?,
                last_used_at: parse_optional_ts(row.last_used_at.as_deref())?,
            })
        })
        .transpose()
    }

    async fn touch_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg("UPDATE api_tokens SET last_used_at = ? WHERE id = ?"))
            .bind(ts(at))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_shop(&self, shop: NewShop) -> Result<Shop, StoreError> {
        let record = Shop {
            id: ShopId::new(),
            tenant_id: shop.tenant_id,
            platform: shop.platform,
            key: shop.key,
            name: shop.name,
            market: shop.market,
            policy: serde_json::json!({}),
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(&pg(
            "INSERT INTO shops (id, tenant_id, platform, shop_key, name, country, currency, \
             language, credentials, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(record.id.to_string())
        .bind(record.tenant_id.to_string())
        .bind(record.platform.as_str())
        .bind(record.key.as_str())
        .bind(&record.name)
        .bind(record.market.country.as_ref().map(CountryCode::as_str))
        .bind(record.market.currency.as_ref().map(CurrencyCode::as_str))
        .bind(record.market.language.as_ref().map(LanguageCode::as_str))
        .bind(self.credentials.seal(
            &credentials::binding(&record.tenant_id.to_string(), record.key.as_str()),
            &shop.credentials,
        )?)
        .bind(ts(record.created_at))
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::AlreadyExists {
                    what: format!("shop {:?}", record.key.as_str()),
                })
            }
            other => other?,
        };
        insert_audit(
            &mut tx,
            Some(record.tenant_id),
            &AuditEvent {
                actor: "system".into(),
                action: "shop.added".into(),
                subject_type: "shop".into(),
                subject_id: record.id.to_string(),
                details: serde_json::json!({
                    "platform": record.platform,
                    "shop": record.key,
                    "name": record.name,
                    "market": record.market,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn list_shops(&self, tenant: TenantId) -> Result<Vec<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(&pg(&format!(
            "SELECT {SHOP_COLUMNS} FROM shops WHERE tenant_id = ? ORDER BY shop_key"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Shop::try_from)
        .collect()
    }

    async fn shop_credentials(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<SecretString>, StoreError> {
        let stored: Option<String> = sqlx::query_scalar(&pg(
            "SELECT credentials FROM shops WHERE tenant_id = ? AND shop_key = ?",
        ))
        .bind(tenant.to_string())
        .bind(key.as_str())
        .fetch_optional(&self.reader)
        .await?;
        stored
            .map(|sealed| {
                self.credentials.open(
                    &credentials::binding(&tenant.to_string(), key.as_str()),
                    &sealed,
                )
            })
            .transpose()
    }

    async fn update_shop(
        &self,
        tenant: TenantId,
        key: &ShopKey,
        update: ShopUpdate,
        actor: &str,
    ) -> Result<Shop, StoreError> {
        if let Some(policy) = &update.policy {
            if !policy.is_object() {
                return Err(StoreError::Corrupt(
                    "a shop policy must be a JSON object".into(),
                ));
            }
        }
        let mut tx = self.begin_write().await?;
        let row: Option<ShopRow> = sqlx::query_as(&pg(&format!(
            "SELECT {SHOP_COLUMNS} FROM shops WHERE tenant_id = ? AND shop_key = ?"
        )))
        .bind(tenant.to_string())
        .bind(key.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound {
                what: format!("shop {:?}", key.as_str()),
            });
        };
        let mut shop = Shop::try_from(row)?;
        let mut changed = Vec::new();
        if let Some(name) = update.name {
            shop.name = name;
            changed.push("name");
        }
        if let Some(market) = update.market {
            shop.market = market;
            changed.push("market");
        }
        if let Some(policy) = update.policy {
            shop.policy = policy;
            changed.push("policy");
        }
        sqlx::query(&pg(
            "UPDATE shops SET name = ?, country = ?, currency = ?, language = ?, policy = ?, \
             credentials = COALESCE(?, credentials) WHERE id = ?",
        ))
        .bind(&shop.name)
        .bind(shop.market.country.as_ref().map(CountryCode::as_str))
        .bind(shop.market.currency.as_ref().map(CurrencyCode::as_str))
        .bind(shop.market.language.as_ref().map(LanguageCode::as_str))
        .bind(shop.policy.to_string())
        .bind(
            update
                .credentials
                .as_ref()
                .map(|c| {
                    self.credentials
                        .seal(&credentials::binding(&tenant.to_string(), key.as_str()), c)
                })
                .transpose()?,
        )
        .bind(shop.id.to_string())
        .execute(&mut *tx)
        .await?;
        if update.credentials.is_some() {
            changed.push("credentials");
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: "shop.updated".into(),
                subject_type: "shop".into(),
                subject_id: shop.id.to_string(),
                details: serde_json::json!({
                    "shop": shop.key,
                    "changed": changed,
                    "market": shop.market,
                    "policy": shop.policy,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(shop)
    }

    async fn shop_by_key(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(&pg(&format!(
            "SELECT {SHOP_COLUMNS} FROM shops WHERE tenant_id = ? AND shop_key = ?"
        )))
        .bind(tenant.to_string())
        .bind(key.as_str())
        .fetch_optional(&self.reader)
        .await?
        .map(Shop::try_from)
        .transpose()
    }
}
