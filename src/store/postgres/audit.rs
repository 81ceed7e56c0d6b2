//! The append-only audit log (triggers reject updates and deletes). PostgreSQL implementation of [`AuditStore`].

use super::*;

pub(super) async fn insert_audit(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Option<TenantId>,
    event: &AuditEvent,
) -> Result<(), StoreError> {
    sqlx::query(&pg(
        "INSERT INTO audit_log (tenant_id, at, actor, action, subject_type, subject_id, details) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(tenant.map(|t| t.to_string()))
    .bind(ts(now()))
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.subject_type)
    .bind(&event.subject_id)
    .bind(event.details.to_string())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(
        &self,
        tenant: Option<TenantId>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, tenant, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        tenant: TenantId,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            seq: i64,
            at: String,
            actor: String,
            action: String,
            subject_type: String,
            subject_id: String,
            details: String,
        }
        sqlx::query_as::<_, Row>(&pg(
            "SELECT seq, at, actor, action, subject_type, subject_id, details FROM audit_log \
             WHERE tenant_id = ? ORDER BY seq DESC LIMIT ?",
        ))
        .bind(tenant.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(|row| {
            Ok(AuditRecord {
                seq: row.seq,
                at: parse_ts(&row.at)?,
                event: AuditEvent {
                    actor: row.actor,
                    action: row.action,
                    subject_type: row.subject_type,
                    subject_id: row.subject_id,
                    details: serde_json::from_str(&row.details)
                        .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
                },
            })
        })
        .collect()
    }
}
