//! Operator tokens. PostgreSQL implementation of [`OperatorStore`].

use super::*;

#[derive(sqlx::FromRow)]
struct OperatorRow {
    id: String,
    label: String,
    prefix: String,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
    last_used_at: Option<String>,
}

const COLUMNS: &str = "id, label, prefix, created_at, expires_at, revoked_at, last_used_at";

impl TryFrom<OperatorRow> for OperatorTokenInfo {
    type Error = StoreError;
    fn try_from(row: OperatorRow) -> Result<Self, StoreError> {
        let optional = |raw: Option<String>| raw.as_deref().map(parse_ts).transpose();
        Ok(OperatorTokenInfo {
            id: parse_id(&row.id, "token")?,
            label: row.label,
            prefix: row.prefix,
            created_at: parse_ts(&row.created_at)?,
            expires_at: optional(row.expires_at)?,
            revoked_at: optional(row.revoked_at)?,
            last_used_at: optional(row.last_used_at)?,
        })
    }
}

fn audit(action: &str, id: TokenId, details: serde_json::Value) -> AuditEvent {
    AuditEvent {
        actor: "system".into(),
        action: action.into(),
        subject_type: "operator_token".into(),
        subject_id: id.to_string(),
        details,
    }
}

#[async_trait]
impl OperatorStore for PostgresStore {
    async fn create_operator_token(
        &self,
        token: NewOperatorToken,
    ) -> Result<OperatorTokenInfo, StoreError> {
        let info = OperatorTokenInfo {
            id: TokenId::new(),
            label: token.label,
            prefix: token.prefix,
            created_at: now(),
            expires_at: token.expires_at,
            revoked_at: None,
            last_used_at: None,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "INSERT INTO operator_tokens (id, label, token_hash, prefix, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        ))
        .bind(info.id.to_string())
        .bind(&info.label)
        .bind(&token.token_hash)
        .bind(&info.prefix)
        .bind(ts(info.created_at))
        .bind(info.expires_at.map(ts))
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            None,
            &audit(
                "operator_token.created",
                info.id,
                serde_json::json!({ "label": info.label, "prefix": info.prefix }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(info)
    }

    async fn list_operator_tokens(&self) -> Result<Vec<OperatorTokenInfo>, StoreError> {
        sqlx::query_as::<_, OperatorRow>(&pg(&format!(
            "SELECT {COLUMNS} FROM operator_tokens ORDER BY created_at"
        )))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(OperatorTokenInfo::try_from)
        .collect()
    }

    async fn revoke_operator_token(&self, id: TokenId) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(&pg(
            "UPDATE operator_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        ))
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        if !revoked {
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            None,
            &audit("operator_token.revoked", id, serde_json::json!({})),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn authenticate_operator(
        &self,
        token_hash: &str,
    ) -> Result<Option<OperatorTokenInfo>, StoreError> {
        sqlx::query_as::<_, OperatorRow>(&pg(&format!(
            "SELECT {COLUMNS} FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL"
        )))
        .bind(token_hash)
        .fetch_optional(&self.reader)
        .await?
        .map(OperatorTokenInfo::try_from)
        .transpose()
    }

    async fn touch_operator_token(&self, id: TokenId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&pg(
            "UPDATE operator_tokens SET last_used_at = ? WHERE id = ?",
        ))
        .bind(ts(at))
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
