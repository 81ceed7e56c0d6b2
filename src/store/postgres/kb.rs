//! [`KbStore`] on the same SQLite database: entries, their history and the
//! per-tenant revision, all written in one `BEGIN IMMEDIATE` transaction
//! with their audit events.

use super::*;
use crate::store::kb::{
    KbApplied, KbChange, KbDocument, KbKind, KbRecord, KbSnapshot, KbStore, KbVersion,
};

#[derive(sqlx::FromRow)]
struct KbRow {
    kind: String,
    entry_id: String,
    lang: String,
    body: String,
    version: i64,
    created_at: String,
    updated_at: String,
}

impl TryFrom<KbRow> for KbRecord {
    type Error = StoreError;
    fn try_from(row: KbRow) -> Result<Self, StoreError> {
        Ok(KbRecord {
            document: KbDocument {
                kind: row
                    .kind
                    .parse()
                    .map_err(|e: String| StoreError::Corrupt(e))?,
                id: row.entry_id,
                lang: row.lang,
                body: serde_json::from_str(&row.body)
                    .map_err(|e| StoreError::Corrupt(format!("kb entry json: {e}")))?,
            },
            version: row.version,
            created_at: parse_ts(&row.created_at)?,
            updated_at: parse_ts(&row.updated_at)?,
        })
    }
}

const KB_COLUMNS: &str = "kind, entry_id, lang, body, version, created_at, updated_at";

/// The highest version an entry ever had, deletions included.
async fn last_version(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    kind: KbKind,
    id: &str,
) -> Result<i64, StoreError> {
    let version: Option<i64> = sqlx::query_scalar(&pg(
        "SELECT MAX(version) FROM kb_versions WHERE tenant_id = ? AND kind = ? AND entry_id = ?",
    ))
    .bind(tenant)
    .bind(kind.as_str())
    .bind(id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(version.unwrap_or(0))
}

async fn record_version(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    (kind, id, version): (KbKind, &str, i64),
    body: Option<&str>,
    actor: &str,
) -> Result<(), StoreError> {
    sqlx::query(&pg(
        "INSERT INTO kb_versions (tenant_id, kind, entry_id, version, body, actor, at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    ))
    .bind(tenant)
    .bind(kind.as_str())
    .bind(id)
    .bind(version)
    .bind(body)
    .bind(actor)
    .bind(ts(now()))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn kb_audit(actor: &str, action: &str, kind: KbKind, id: &str, version: i64) -> AuditEvent {
    AuditEvent {
        actor: actor.to_owned(),
        action: format!("kb.{action}"),
        subject_type: format!("kb_{kind}"),
        subject_id: id.to_owned(),
        details: serde_json::json!({ "version": version }),
    }
}

#[async_trait]
impl KbStore for PostgresStore {
    async fn kb_apply(
        &self,
        tenant: TenantId,
        changes: &[KbChange],
        actor: &str,
    ) -> Result<KbApplied, StoreError> {
        let tenant_id = tenant.to_string();
        let mut applied = KbApplied::default();
        let mut tx = self.begin_write().await?;
        for change in changes {
            match change {
                KbChange::Put(doc) => {
                    let body = doc.body.to_string();
                    let current: Option<(String, String)> =
                        sqlx::query_as(&pg("SELECT body, lang FROM kb_entries \
                         WHERE tenant_id = ? AND kind = ? AND entry_id = ?"))
                        .bind(&tenant_id)
                        .bind(doc.kind.as_str())
                        .bind(&doc.id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some((old_body, old_lang)) = &current {
                        let old: serde_json::Value = serde_json::from_str(old_body)
                            .map_err(|e| StoreError::Corrupt(format!("kb entry json: {e}")))?;
                        if old == doc.body && *old_lang == doc.lang {
                            applied.unchanged += 1;
                            continue;
                        }
                    }
                    let version = last_version(&mut tx, &tenant_id, doc.kind, &doc.id).await? + 1;
                    let at = ts(now());
                    sqlx::query(&pg("INSERT INTO kb_entries \
                         (tenant_id, kind, entry_id, lang, body, version, created_at, updated_at) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
                         ON CONFLICT (tenant_id, kind, entry_id) DO UPDATE SET \
                           lang = excluded.lang, body = excluded.body, \
                           version = excluded.version, updated_at = excluded.updated_at"))
                    .bind(&tenant_id)
                    .bind(doc.kind.as_str())
                    .bind(&doc.id)
                    .bind(&doc.lang)
                    .bind(&body)
                    .bind(version)
                    .bind(&at)
                    .bind(&at)
                    .execute(&mut *tx)
                    .await?;
                    record_version(
                        &mut tx,
                        &tenant_id,
                        (doc.kind, &doc.id, version),
                        Some(&body),
                        actor,
                    )
                    .await?;
                    let action = if current.is_some() {
                        applied.updated += 1;
                        "updated"
                    } else {
                        applied.created += 1;
                        "created"
                    };
                    insert_audit(
                        &mut tx,
                        Some(tenant),
                        &kb_audit(actor, action, doc.kind, &doc.id, version),
                    )
                    .await?;
                }
                KbChange::Delete { kind, id } => {
                    let removed = sqlx::query(&pg(
                        "DELETE FROM kb_entries WHERE tenant_id = ? AND kind = ? AND entry_id = ?",
                    ))
                    .bind(&tenant_id)
                    .bind(kind.as_str())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if removed == 0 {
                        return Err(StoreError::NotFound {
                            what: format!("{kind} entry {id:?}"),
                        });
                    }
                    let version = last_version(&mut tx, &tenant_id, *kind, id).await? + 1;
                    record_version(&mut tx, &tenant_id, (*kind, id, version), None, actor).await?;
                    insert_audit(
                        &mut tx,
                        Some(tenant),
                        &kb_audit(actor, "deleted", *kind, id, version),
                    )
                    .await?;
                    applied.deleted += 1;
                }
            }
        }
        let changed = applied.created + applied.updated + applied.deleted > 0;
        let revision: i64 = if changed {
            sqlx::query_scalar(&pg(
                "INSERT INTO kb_revisions (tenant_id, revision) VALUES (?, 1) \
                 ON CONFLICT (tenant_id) DO UPDATE SET revision = kb_revisions.revision + 1 \
                 RETURNING revision",
            ))
            .bind(&tenant_id)
            .fetch_one(&mut *tx)
            .await?
        } else {
            sqlx::query_scalar(&pg("SELECT revision FROM kb_revisions WHERE tenant_id = ?"))
                .bind(&tenant_id)
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0)
        };
        tx.commit().await?;
        applied.revision = revision;
        Ok(applied)
    }

    async fn kb_get(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
    ) -> Result<Option<KbRecord>, StoreError> {
        sqlx::query_as::<_, KbRow>(&pg(&format!(
            "SELECT {KB_COLUMNS} FROM kb_entries WHERE tenant_id = ? AND kind = ? AND entry_id = ?"
        )))
        .bind(tenant.to_string())
        .bind(kind.as_str())
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .map(KbRecord::try_from)
        .transpose()
    }

    async fn kb_list(
        &self,
        tenant: TenantId,
        kind: Option<KbKind>,
    ) -> Result<Vec<KbRecord>, StoreError> {
        sqlx::query_as::<_, KbRow>(&pg(&format!(
            "SELECT {KB_COLUMNS} FROM kb_entries WHERE tenant_id = ? AND (? IS NULL OR kind = ?) \
             ORDER BY kind, entry_id"
        )))
        .bind(tenant.to_string())
        .bind(kind.map(KbKind::as_str))
        .bind(kind.map(KbKind::as_str))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(KbRecord::try_from)
        .collect()
    }

    async fn kb_history(
        &self,
        tenant: TenantId,
        kind: KbKind,
        id: &str,
    ) -> Result<Vec<KbVersion>, StoreError> {
        let rows: Vec<(i64, Option<String>, String, String)> =
            sqlx::query_as(&pg("SELECT version, body, actor, at FROM kb_versions \
             WHERE tenant_id = ? AND kind = ? AND entry_id = ? ORDER BY version"))
            .bind(tenant.to_string())
            .bind(kind.as_str())
            .bind(id)
            .fetch_all(&self.reader)
            .await?;
        rows.into_iter()
            .map(|(version, body, actor, at)| {
                Ok(KbVersion {
                    version,
                    body: body
                        .as_deref()
                        .map(serde_json::from_str)
                        .transpose()
                        .map_err(|e| StoreError::Corrupt(format!("kb version json: {e}")))?,
                    actor,
                    at: parse_ts(&at)?,
                })
            })
            .collect()
    }

    async fn kb_revision(&self, tenant: TenantId) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar(&pg("SELECT revision FROM kb_revisions WHERE tenant_id = ?"))
                .bind(tenant.to_string())
                .fetch_optional(&self.reader)
                .await?
                .unwrap_or(0),
        )
    }

    async fn kb_snapshot(&self, tenant: TenantId) -> Result<KbSnapshot, StoreError> {
        // One read transaction: in WAL mode it sees a single commit, so the
        // revision matches the entries exactly.
        let mut tx = self.reader.begin().await?;
        let revision: i64 =
            sqlx::query_scalar(&pg("SELECT revision FROM kb_revisions WHERE tenant_id = ?"))
                .bind(tenant.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(0);
        let records = sqlx::query_as::<_, KbRow>(&pg(&format!(
            "SELECT {KB_COLUMNS} FROM kb_entries WHERE tenant_id = ? ORDER BY kind, entry_id"
        )))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(KbRecord::try_from)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok(KbSnapshot { revision, records })
    }
}
