//! The seller's answers in other languages. SQLite implementation of
//! [`TranslationStore`].

use super::*;

const TRANSLATION_COLUMNS: &str = "kind, entry_id, source_hash, lang, source_text, text, \
     status, model, verification, created_at, reviewed_by, reviewed_at";

#[derive(sqlx::FromRow)]
struct TranslationRow {
    kind: String,
    entry_id: String,
    source_hash: String,
    lang: String,
    source_text: String,
    text: String,
    status: String,
    model: Option<String>,
    verification: String,
    created_at: String,
    reviewed_by: Option<String>,
    reviewed_at: Option<String>,
}

impl TryFrom<TranslationRow> for StoredTranslation {
    type Error = StoreError;
    fn try_from(row: TranslationRow) -> Result<Self, StoreError> {
        Ok(StoredTranslation {
            key: TranslationKey {
                kind: row.kind.parse().map_err(StoreError::Corrupt)?,
                entry_id: row.entry_id,
                source_hash: row.source_hash,
                lang: row.lang,
            },
            source_text: row.source_text,
            text: row.text,
            status: parse_enum(&row.status, "translation status")?,
            model: row.model,
            verification: serde_json::from_str(&row.verification)
                .map_err(|e| StoreError::Corrupt(format!("translation verification: {e}")))?,
            created_at: parse_ts(&row.created_at)?,
            reviewed_by: row.reviewed_by,
            reviewed_at: row.reviewed_at.as_deref().map(parse_ts).transpose()?,
        })
    }
}

async fn select(
    conn: &mut sqlx::SqliteConnection,
    tenant: TenantId,
    key: &TranslationKey,
) -> Result<Option<StoredTranslation>, StoreError> {
    sqlx::query_as::<_, TranslationRow>(&format!(
        "SELECT {TRANSLATION_COLUMNS} FROM kb_translations \
         WHERE tenant_id = ? AND kind = ? AND entry_id = ? AND source_hash = ? AND lang = ?"
    ))
    .bind(tenant.to_string())
    .bind(key.kind.as_str())
    .bind(&key.entry_id)
    .bind(&key.source_hash)
    .bind(&key.lang)
    .fetch_optional(conn)
    .await?
    .map(StoredTranslation::try_from)
    .transpose()
}

#[async_trait]
impl TranslationStore for SqliteStore {
    async fn buyer_languages(
        &self,
        tenant: TenantId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Ok(sqlx::query_as::<_, (String, i64)>(
            "SELECT language, COUNT(*) FROM messages \
             WHERE tenant_id = ? AND direction = 'inbound' AND author = 'buyer' \
             AND language IS NOT NULL AND received_at >= ? \
             GROUP BY language ORDER BY COUNT(*) DESC, language",
        )
        .bind(tenant.to_string())
        .bind(ts(since))
        .fetch_all(&mut *conn)
        .await?)
    }

    async fn translation(
        &self,
        tenant: TenantId,
        key: &TranslationKey,
    ) -> Result<Option<StoredTranslation>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        select(&mut conn, tenant, key).await
    }

    async fn record_faq_asked(
        &self,
        tenant: TenantId,
        entry_id: &str,
        lang: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO faq_asked (tenant_id, entry_id, lang, asked, last_asked_at) \
             VALUES (?, ?, ?, 1, ?) \
             ON CONFLICT (tenant_id, entry_id, lang) \
             DO UPDATE SET asked = faq_asked.asked + 1, last_asked_at = excluded.last_asked_at",
        )
        .bind(tenant.to_string())
        .bind(entry_id)
        .bind(lang.to_ascii_lowercase())
        .bind(ts(now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn faq_asked(&self, tenant: TenantId) -> Result<Vec<FaqAsked>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        let rows = sqlx::query_as::<_, (String, String, i64, String)>(
            "SELECT entry_id, lang, asked, last_asked_at FROM faq_asked \
             WHERE tenant_id = ? ORDER BY asked DESC, entry_id, lang",
        )
        .bind(tenant.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(entry_id, lang, asked, at)| {
                Ok(FaqAsked {
                    entry_id,
                    lang,
                    asked,
                    last_asked_at: parse_ts(&at)?,
                })
            })
            .collect()
    }

    async fn save_translation(
        &self,
        tenant: TenantId,
        translation: &NewTranslation,
    ) -> Result<StoredTranslation, StoreError> {
        let mut tx = self.begin_write().await?;
        let key = &translation.key;
        sqlx::query(
            "INSERT INTO kb_translations (tenant_id, kind, entry_id, source_hash, lang, \
             source_text, text, status, model, verification, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, kind, entry_id, source_hash, lang) DO NOTHING",
        )
        .bind(tenant.to_string())
        .bind(key.kind.as_str())
        .bind(&key.entry_id)
        .bind(&key.source_hash)
        .bind(&key.lang)
        .bind(&translation.source_text)
        .bind(&translation.text)
        .bind(translation.status.as_str())
        .bind(translation.model.as_deref())
        .bind(translation.verification.to_string())
        .bind(ts(now()))
        .execute(&mut *tx)
        .await?;
        let stored = select(&mut tx, tenant, key).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("translation of {} vanished", key.entry_id))
        })?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn review_translation(
        &self,
        tenant: TenantId,
        key: &TranslationKey,
        review: &TranslationReview,
        actor: &str,
    ) -> Result<StoredTranslation, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(before) = select(&mut tx, tenant, key).await? else {
            return Err(StoreError::NotFound {
                what: format!(
                    "translation of {}:{} into {}",
                    key.kind, key.entry_id, key.lang
                ),
            });
        };
        let (status, text) = match review {
            TranslationReview::Approve { text } => (
                TranslationStatus::Approved,
                text.clone().unwrap_or_else(|| before.text.clone()),
            ),
            TranslationReview::Reject => (TranslationStatus::Rejected, before.text.clone()),
        };
        let at = now();
        sqlx::query(
            "UPDATE kb_translations SET status = ?, text = ?, reviewed_by = ?, reviewed_at = ? \
             WHERE tenant_id = ? AND kind = ? AND entry_id = ? AND source_hash = ? AND lang = ?",
        )
        .bind(status.as_str())
        .bind(&text)
        .bind(actor)
        .bind(ts(at))
        .bind(tenant.to_string())
        .bind(key.kind.as_str())
        .bind(&key.entry_id)
        .bind(&key.source_hash)
        .bind(&key.lang)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: format!("translation.{}", status.as_str()),
                subject_type: "kb_translation".into(),
                subject_id: format!("{}:{}:{}", key.kind, key.entry_id, key.lang),
                details: serde_json::json!({
                    "source_hash": key.source_hash,
                    "previous_status": before.status,
                    "edited": text != before.text,
                }),
            },
        )
        .await?;
        let stored = select(&mut tx, tenant, key).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("translation of {} vanished", key.entry_id))
        })?;
        tx.commit().await?;
        Ok(stored)
    }

    async fn list_translations(
        &self,
        tenant: TenantId,
        status: Option<TranslationStatus>,
        limit: u32,
    ) -> Result<Vec<StoredTranslation>, StoreError> {
        sqlx::query_as::<_, TranslationRow>(&format!(
            "SELECT {TRANSLATION_COLUMNS} FROM kb_translations \
             WHERE tenant_id = ? AND (? IS NULL OR status = ?) \
             ORDER BY created_at DESC LIMIT ?"
        ))
        .bind(tenant.to_string())
        .bind(status.map(TranslationStatus::as_str))
        .bind(status.map(TranslationStatus::as_str))
        .bind(i64::from(limit.clamp(1, 500)))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(StoredTranslation::try_from)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{open, tenant_with_shop};
    use super::*;

    fn machine(key: &TranslationKey, text: &str, status: TranslationStatus) -> NewTranslation {
        NewTranslation {
            key: key.clone(),
            source_text: "Returns are accepted within 7 days.".into(),
            text: text.into(),
            status,
            model: Some("test-model".into()),
            verification: serde_json::json!({"similarity": 0.9}),
        }
    }

    #[tokio::test]
    async fn h1_translations_are_kept_per_tenant_and_source() {
        let (store, _dir) = open().await;
        let a = tenant_with_shop(&store, "tenant-a").await.tenant_id;
        let b = tenant_with_shop(&store, "tenant-b").await.tenant_id;
        let key = TranslationKey::new(
            KbKind::Faq,
            "returns",
            "Returns are accepted within 7 days.",
            "id",
        );
        store
            .save_translation(
                a,
                &machine(&key, "Retur diterima 7 hari.", TranslationStatus::Verified),
            )
            .await
            .unwrap();
        assert!(store.translation(b, &key).await.unwrap().is_none());
        let edited = TranslationKey::new(
            KbKind::Faq,
            "returns",
            "Returns are accepted within 14 days.",
            "id",
        );
        assert_ne!(key.source_hash, edited.source_hash);
        assert!(store.translation(a, &edited).await.unwrap().is_none());
        assert_eq!(
            store.translation(a, &key).await.unwrap().unwrap().text,
            "Retur diterima 7 hari."
        );
    }

    #[tokio::test]
    async fn an_approved_translation_is_never_overwritten_by_a_machine() {
        let (store, _dir) = open().await;
        let tenant = tenant_with_shop(&store, "tenant-a").await.tenant_id;
        let key = TranslationKey::new(KbKind::Faq, "returns", "source", "th");
        store
            .save_translation(tenant, &machine(&key, "old", TranslationStatus::Unverified))
            .await
            .unwrap();
        let approved = store
            .review_translation(
                tenant,
                &key,
                &TranslationReview::Approve {
                    text: Some("fixed by a person".into()),
                },
                "agent:ana",
            )
            .await
            .unwrap();
        assert_eq!(approved.status, TranslationStatus::Approved);
        assert_eq!(approved.reviewed_by.as_deref(), Some("agent:ana"));
        let after = store
            .save_translation(tenant, &machine(&key, "new", TranslationStatus::Verified))
            .await
            .unwrap();
        assert_eq!(after.text, "fixed by a person");
        assert_eq!(after.status, TranslationStatus::Approved);
        let waiting = store
            .list_translations(tenant, Some(TranslationStatus::Unverified), 10)
            .await
            .unwrap();
        assert!(waiting.is_empty());
        let audit = store.audit_log(tenant, 10).await.unwrap();
        assert!(audit
            .iter()
            .any(|r| r.event.action == "translation.approved"));
    }
}
