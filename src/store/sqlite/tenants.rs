//! Tenants, their API tokens and their shops. SQLite implementation of [`TenantStore`].

use super::*;

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
    pub(super) created_at: String,
}

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
    pub(super) created_at: String,
    pub(super) revoked_at: Option<String>,
}

impl TryFrom<TokenRow> for TokenInfo {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenInfo {
            id: parse_id(&row.id, "token")?,
            tenant_id: parse_id(&row.tenant_id, "tenant")?,
            label: row.label,
            prefix: row.prefix,
            created_at: parse_ts(&row.created_at)?,
            revoked_at: row.revoked_at.as_deref().map(parse_ts).transpose()?,
        })
    }
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_tenant(&self, name: &TenantName) -> Result<Tenant, StoreError> {
        let tenant = Tenant {
            id: TenantId::new(),
            name: name.as_str().to_owned(),
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
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
        sqlx::query_as::<_, TenantRow>("SELECT id, name, created_at FROM tenants WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        sqlx::query_as::<_, TenantRow>("SELECT id, name, created_at FROM tenants ORDER BY name")
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
            created_at: now(),
            revoked_at: None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, tenant_id, label, token_hash, prefix, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(info.id.to_string())
        .bind(info.tenant_id.to_string())
        .bind(&info.label)
        .bind(&token.token_hash)
        .bind(&info.prefix)
        .bind(ts(info.created_at))
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
                details: serde_json::json!({ "label": info.label, "prefix": info.prefix }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn revoke_token(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let tenant: Option<String> = sqlx::query_scalar(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
             RETURNING tenant_id",
        )
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
        sqlx::query_as::<_, TokenRow>(
            "SELECT id, tenant_id, label, prefix, created_at, revoked_at FROM api_tokens \
             WHERE tenant_id = ? ORDER BY created_at",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(TokenInfo::try_from)
        .collect()
    }

    async fn authenticate(
        &self,
        token_hash: &str,
    ) -> Result<Option<(TenantId, TokenId)>, StoreError> {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT tenant_id, id FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
        )
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|(tenant, token)| Ok((parse_id(&tenant, "tenant")?, parse_id(&token, "token")?)))
            .transpose()
    }

    async fn add_shop(&self, shop: NewShop) -> Result<Shop, StoreError> {
        let record = Shop {
            id: ShopId::new(),
            tenant_id: shop.tenant_id,
            platform: shop.platform,
            key: shop.key,
            name: shop.name,
            created_at: now(),
        };
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO shops (id, tenant_id, platform, shop_key, name, credentials, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.id.to_string())
        .bind(record.tenant_id.to_string())
        .bind(record.platform.as_str())
        .bind(record.key.as_str())
        .bind(&record.name)
        .bind(shop.credentials.expose_secret())
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
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn list_shops(&self, tenant: TenantId) -> Result<Vec<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(
            "SELECT id, tenant_id, platform, shop_key, name, created_at FROM shops \
             WHERE tenant_id = ? ORDER BY shop_key",
        )
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(Shop::try_from)
        .collect()
    }

    async fn shop_by_key(
        &self,
        tenant: TenantId,
        key: &ShopKey,
    ) -> Result<Option<Shop>, StoreError> {
        sqlx::query_as::<_, ShopRow>(
            "SELECT id, tenant_id, platform, shop_key, name, created_at FROM shops \
             WHERE tenant_id = ? AND shop_key = ?",
        )
        .bind(tenant.to_string())
        .bind(key.as_str())
        .fetch_optional(&self.reader)
        .await?
        .map(Shop::try_from)
        .transpose()
    }
}
