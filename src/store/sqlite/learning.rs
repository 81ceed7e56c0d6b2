//! Learned exemplars and head versions. SQLite implementation of
//! [`LearningStore`]; `postgres/learning.rs` runs the same statements.

use uuid::Uuid;

use super::*;
use crate::store::learning::{
    ExemplarKind, ExemplarStatus, HeadVersion, LearnedExemplar, LearningStore, NewHeadVersion,
    NewLearnedExemplar,
};

/// The statement as this database spells its parameters.
fn q(sql: &str) -> String {
    sql.to_owned()
}

const EXEMPLAR_COLUMNS: &str = "id, message_id, text, label, previous_label, status, \
     version_id, created_by, created_at, kind, route_intent";

const VERSION_COLUMNS: &str = "id, tenant_id, number, exemplar_ids, comparison, promoted, \
     reason, active, created_by, created_at";

#[derive(sqlx::FromRow)]
struct ExemplarRow {
    id: String,
    message_id: Option<String>,
    text: String,
    label: String,
    previous_label: Option<String>,
    status: String,
    version_id: Option<String>,
    created_by: String,
    created_at: String,
    kind: String,
    route_intent: Option<String>,
}

impl ExemplarRow {
    fn exemplar(self) -> Result<LearnedExemplar, StoreError> {
        Ok(LearnedExemplar {
            id: parse_id(&self.id, "learned exemplar")?,
            message_id: self
                .message_id
                .map(|m| parse_id(&m, "message"))
                .transpose()?,
            text: self.text,
            label: self.label,
            previous_label: self.previous_label,
            status: ExemplarStatus::parse(&self.status)?,
            version_id: self
                .version_id
                .map(|v| parse_id(&v, "head version"))
                .transpose()?,
            created_by: self.created_by,
            created_at: parse_ts(&self.created_at)?,
            kind: ExemplarKind::parse(&self.kind)?,
            route_intent: self.route_intent,
        })
    }
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    id: String,
    tenant_id: String,
    number: i64,
    exemplar_ids: String,
    comparison: String,
    promoted: i64,
    reason: Option<String>,
    active: i64,
    created_by: String,
    created_at: String,
}

impl VersionRow {
    fn version(self) -> Result<(TenantId, HeadVersion), StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("head version: {e}"));
        Ok((
            parse_id(&self.tenant_id, "tenant")?,
            HeadVersion {
                id: parse_id(&self.id, "head version")?,
                number: self.number,
                exemplar_ids: serde_json::from_str(&self.exemplar_ids).map_err(corrupt)?,
                comparison: serde_json::from_str(&self.comparison).map_err(corrupt)?,
                promoted: self.promoted != 0,
                reason: self.reason,
                active: self.active != 0,
                created_by: self.created_by,
                created_at: parse_ts(&self.created_at)?,
            },
        ))
    }
}

#[async_trait]
impl LearningStore for SqliteStore {
    async fn add_learned_exemplar(
        &self,
        tenant: TenantId,
        exemplar: &NewLearnedExemplar,
    ) -> Result<LearnedExemplar, StoreError> {
        let id = Uuid::now_v7();
        let created_at = now();
        let mut tx = self.begin_write().await?;
        sqlx::query(&q("INSERT INTO learned_exemplars \
             (id, tenant_id, message_id, text, label, previous_label, status, version_id, \
              created_by, created_at, kind, route_intent) \
             VALUES (?, ?, ?, ?, ?, ?, 'pending', NULL, ?, ?, ?, ?)"))
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(exemplar.message_id.map(|m| m.to_string()))
        .bind(&exemplar.text)
        .bind(&exemplar.label)
        .bind(&exemplar.previous_label)
        .bind(&exemplar.created_by)
        .bind(ts(created_at))
        .bind(exemplar.kind.as_str())
        .bind(&exemplar.route_intent)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: exemplar.created_by.clone(),
                action: match exemplar.kind {
                    ExemplarKind::Intent => "learning.intent_corrected",
                    ExemplarKind::Route => "learning.route_corrected",
                }
                .into(),
                subject_type: "message".into(),
                subject_id: exemplar
                    .message_id
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                details: serde_json::json!({
                    "exemplar": id,
                    "label": exemplar.label,
                    "previous_label": exemplar.previous_label,
                    "kind": exemplar.kind.as_str(),
                    "route_intent": exemplar.route_intent,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(LearnedExemplar {
            id,
            message_id: exemplar.message_id,
            text: exemplar.text.clone(),
            label: exemplar.label.clone(),
            previous_label: exemplar.previous_label.clone(),
            status: ExemplarStatus::Pending,
            version_id: None,
            created_by: exemplar.created_by.clone(),
            created_at,
            kind: exemplar.kind,
            route_intent: exemplar.route_intent.clone(),
        })
    }

    async fn learned_exemplars(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<LearnedExemplar>, StoreError> {
        let rows: Vec<ExemplarRow> = sqlx::query_as(&q(&format!(
            "SELECT {EXEMPLAR_COLUMNS} FROM learned_exemplars WHERE tenant_id = ? \
             ORDER BY created_at, id"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(ExemplarRow::exemplar).collect()
    }

    async fn record_head_version(
        &self,
        tenant: TenantId,
        version: &NewHeadVersion,
    ) -> Result<HeadVersion, StoreError> {
        let id = Uuid::now_v7();
        let created_at = now();
        let mut tx = self.begin_write().await?;
        let (last,): (Option<i64>,) = sqlx::query_as(&q(
            "SELECT MAX(number) FROM head_versions WHERE tenant_id = ?",
        ))
        .bind(tenant.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let number = last.unwrap_or(0) + 1;
        if version.promoted {
            sqlx::query(&q(
                "UPDATE head_versions SET active = 0 WHERE tenant_id = ? AND active = 1",
            ))
            .bind(tenant.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let exemplar_ids = serde_json::to_string(&version.exemplar_ids)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        sqlx::query(&q("INSERT INTO head_versions \
             (id, tenant_id, number, exemplar_ids, comparison, promoted, reason, active, \
              created_by, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(number)
        .bind(&exemplar_ids)
        .bind(version.comparison.to_string())
        .bind(i64::from(version.promoted))
        .bind(&version.reason)
        .bind(i64::from(version.promoted))
        .bind(&version.created_by)
        .bind(ts(created_at))
        .execute(&mut *tx)
        .await?;
        let status = if version.promoted {
            ExemplarStatus::Live
        } else {
            ExemplarStatus::Refused
        };
        for exemplar in &version.measured_ids {
            sqlx::query(&q(
                "UPDATE learned_exemplars SET status = ?, version_id = ? \
                 WHERE tenant_id = ? AND id = ?",
            ))
            .bind(status.as_str())
            .bind(id.to_string())
            .bind(tenant.to_string())
            .bind(exemplar.to_string())
            .execute(&mut *tx)
            .await?;
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: version.created_by.clone(),
                action: if version.promoted {
                    "learning.heads_promoted"
                } else {
                    "learning.heads_refused"
                }
                .into(),
                subject_type: "head_version".into(),
                subject_id: id.to_string(),
                details: serde_json::json!({
                    "number": number,
                    "exemplars": version.exemplar_ids.len(),
                    "reason": version.reason,
                }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(HeadVersion {
            id,
            number,
            exemplar_ids: version.exemplar_ids.clone(),
            comparison: version.comparison.clone(),
            promoted: version.promoted,
            reason: version.reason.clone(),
            active: version.promoted,
            created_by: version.created_by.clone(),
            created_at,
        })
    }

    async fn head_versions(&self, tenant: TenantId) -> Result<Vec<HeadVersion>, StoreError> {
        let rows: Vec<VersionRow> = sqlx::query_as(&q(&format!(
            "SELECT {VERSION_COLUMNS} FROM head_versions WHERE tenant_id = ? \
             ORDER BY number DESC"
        )))
        .bind(tenant.to_string())
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter()
            .map(|r| r.version().map(|(_, v)| v))
            .collect()
    }

    async fn activate_head_version(
        &self,
        tenant: TenantId,
        version: Option<Uuid>,
        actor: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let kept: Vec<Uuid> = match version {
            Some(id) => {
                let row: Option<(String, i64)> =
                    sqlx::query_as(&q("SELECT exemplar_ids, promoted FROM head_versions \
                     WHERE tenant_id = ? AND id = ?"))
                    .bind(tenant.to_string())
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((ids, promoted)) = row else {
                    return Err(StoreError::NotFound {
                        what: format!("head version {id}"),
                    });
                };
                if promoted == 0 {
                    return Err(StoreError::Conflict(format!(
                        "head version {id} was refused and cannot be made active"
                    )));
                }
                serde_json::from_str(&ids).map_err(|e| StoreError::Corrupt(e.to_string()))?
            }
            None => Vec::new(),
        };
        sqlx::query(&q(
            "UPDATE head_versions SET active = 0 WHERE tenant_id = ? AND active = 1",
        ))
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
        if let Some(id) = version {
            sqlx::query(&q(
                "UPDATE head_versions SET active = 1 WHERE tenant_id = ? AND id = ?",
            ))
            .bind(tenant.to_string())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        let live: Vec<(String,)> = sqlx::query_as(&q(
            "SELECT id FROM learned_exemplars WHERE tenant_id = ? AND status = 'live'",
        ))
        .bind(tenant.to_string())
        .fetch_all(&mut *tx)
        .await?;
        for (exemplar,) in live {
            let id: Uuid = parse_id(&exemplar, "learned exemplar")?;
            if !kept.contains(&id) {
                sqlx::query(&q("UPDATE learned_exemplars SET status = 'rolled_back' \
                     WHERE tenant_id = ? AND id = ?"))
                .bind(tenant.to_string())
                .bind(exemplar)
                .execute(&mut *tx)
                .await?;
            }
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.into(),
                action: "learning.heads_activated".into(),
                subject_type: "head_version".into(),
                subject_id: version.map(|v| v.to_string()).unwrap_or_default(),
                details: serde_json::json!({ "shared_heads": version.is_none() }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn active_head_versions(&self) -> Result<Vec<(TenantId, HeadVersion)>, StoreError> {
        let rows: Vec<VersionRow> = sqlx::query_as(&q(&format!(
            "SELECT {VERSION_COLUMNS} FROM head_versions WHERE active = 1 ORDER BY tenant_id"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(VersionRow::version).collect()
    }

    async fn tenants_with_pending_exemplars(&self) -> Result<Vec<TenantId>, StoreError> {
        let rows: Vec<String> = sqlx::query_scalar(&q(
            "SELECT DISTINCT tenant_id FROM learned_exemplars WHERE status = 'pending' \
             ORDER BY tenant_id",
        ))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(|id| parse_id(id, "tenant")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{open, tenant_with_shop};
    use super::*;

    fn correction(text: &str, label: &str) -> NewLearnedExemplar {
        NewLearnedExemplar {
            message_id: None,
            text: text.into(),
            label: label.into(),
            previous_label: Some("greeting".into()),
            created_by: "user:a".into(),
            kind: ExemplarKind::Intent,
            route_intent: None,
        }
    }

    fn version(ids: Vec<Uuid>, measured: Vec<Uuid>, promoted: bool) -> NewHeadVersion {
        NewHeadVersion {
            exemplar_ids: ids,
            measured_ids: measured,
            comparison: serde_json::json!({"promoted": promoted}),
            promoted,
            reason: (!promoted).then(|| "routing would get worse".into()),
            created_by: "user:a".into(),
        }
    }

    #[tokio::test]
    async fn a_route_correction_is_kept_with_its_kind_and_intent_and_audited_as_a_route() {
        let (store, _dir) = open().await;
        let one = tenant_with_shop(&store, "one").await.tenant_id;
        let route = store
            .add_learned_exemplar(
                one,
                &NewLearnedExemplar {
                    label: "person".into(),
                    previous_label: Some("draft".into()),
                    kind: ExemplarKind::Route,
                    route_intent: Some("order_status".into()),
                    ..correction("the courier says delivered, nothing here", "person")
                },
            )
            .await
            .unwrap();
        let intent = store
            .add_learned_exemplar(one, &correction("uang kembali", "refund_request"))
            .await
            .unwrap();
        let stored = store.learned_exemplars(one).await.unwrap();
        let ids: Vec<Uuid> = stored.iter().map(|e| e.id).collect();
        assert_eq!(ids, [route.id, intent.id]);
        assert_eq!(stored[0].kind, ExemplarKind::Route);
        assert_eq!(stored[0].route_intent.as_deref(), Some("order_status"));
        assert_eq!(stored[1].kind, ExemplarKind::Intent);
        let audit = store.audit_log(one, 10).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|e| e.event.action.as_str()).collect();
        assert!(actions.contains(&"learning.route_corrected"), "{actions:?}");
        assert!(
            actions.contains(&"learning.intent_corrected"),
            "{actions:?}"
        );
    }

    #[tokio::test]
    async fn versions_promote_refuse_and_roll_back_per_tenant() {
        let (store, _dir) = open().await;
        let one = tenant_with_shop(&store, "one").await.tenant_id;
        let two = tenant_with_shop(&store, "two").await.tenant_id;
        let a = store
            .add_learned_exemplar(one, &correction("uang kembali", "refund_request"))
            .await
            .unwrap();
        assert_eq!(a.status, ExemplarStatus::Pending);
        let first = store
            .record_head_version(one, &version(vec![a.id], vec![a.id], true))
            .await
            .unwrap();
        assert_eq!((first.number, first.active), (1, true));

        let b = store
            .add_learned_exemplar(one, &correction("where is it", "greeting"))
            .await
            .unwrap();
        let refused = store
            .record_head_version(one, &version(vec![a.id, b.id], vec![b.id], false))
            .await
            .unwrap();
        assert_eq!((refused.number, refused.active), (2, false));
        let c = store
            .add_learned_exemplar(one, &correction("size 42 please", "size_fit"))
            .await
            .unwrap();
        let second = store
            .record_head_version(one, &version(vec![a.id, c.id], vec![c.id], true))
            .await
            .unwrap();
        assert_eq!(second.number, 3);

        let versions = store.head_versions(one).await.unwrap();
        let active: Vec<i64> = versions
            .iter()
            .filter(|v| v.active)
            .map(|v| v.number)
            .collect();
        assert_eq!(active, [3], "one active version");
        assert_eq!(
            versions[1].reason.as_deref(),
            Some("routing would get worse")
        );
        let statuses: Vec<_> = store
            .learned_exemplars(one)
            .await
            .unwrap()
            .iter()
            .map(|e| e.status)
            .collect();
        use ExemplarStatus::*;
        assert_eq!(statuses, [Live, Refused, Live]);

        // Nothing of tenant one is tenant two's.
        assert!(store.learned_exemplars(two).await.unwrap().is_empty());
        assert!(store.head_versions(two).await.unwrap().is_empty());
        let err = store
            .activate_head_version(two, Some(first.id), "user:b")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
        let err = store
            .activate_head_version(one, Some(refused.id), "user:a")
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

        // Back to version 1: c was only in version 3.
        store
            .activate_head_version(one, Some(first.id), "user:a")
            .await
            .unwrap();
        let statuses: Vec<_> = store
            .learned_exemplars(one)
            .await
            .unwrap()
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(statuses, [Live, Refused, RolledBack]);
        let all = store.active_head_versions().await.unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].0, all[0].1.number), (one, 1));

        // Back to the shared heads.
        store
            .activate_head_version(one, None, "user:a")
            .await
            .unwrap();
        assert!(store.active_head_versions().await.unwrap().is_empty());
        let audit = store.audit_log(one, 20).await.unwrap();
        assert!(audit
            .iter()
            .any(|e| e.event.action == "learning.heads_refused"));
        assert!(audit
            .iter()
            .any(|e| e.event.action == "learning.heads_activated"));
    }
}
