//! The seller's answers in other languages. PostgreSQL implementation of
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
    conn: &mut sqlx::PgConnection,
    tenant: TenantId,
    key: &TranslationKey,
) -> Result<Option<StoredTranslation>, StoreError> {
    sqlx::query_as::<_, TranslationRow>(&pg(&format!(
        "SELECT {TRANSLATION_COLUMNS} FROM kb_translations \
         WHERE tenant_id = ? AND kind = ? AND entry_id = ? AND source_hash = ? AND lang = ?"
    )))
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
impl TranslationStore for PostgresStore {
    async fn buyer_languages(
        &self,
        tenant: TenantId,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut conn = self.reader.acquire().await?;
        Ok(
            sqlx::query_as::<_, (String, i64)>(&pg("SELECT language, COUNT(*) FROM messages \
             WHERE tenant_id = ? AND direction = 'inbound' AND author = 'buyer' \
             AND language IS NOT NULL AND received_at >= ? \
             GROUP BY language ORDER BY COUNT(*) DESC, language"))
            .bind(tenant.to_string())
            .bind(ts(since))
            .fetch_all(&mut *conn)
            .await?,
        )
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
        sqlx::query(&pg(
            "INSERT INTO faq_asked (tenant_id, entry_id, lang, asked, last_asked_at) \
             VALUES (?, ?, ?, 1, ?) \
             ON CONFLICT (tenant_id, entry_id, lang) \
             DO UPDATE SET asked = faq_asked.asked + 1, last_asked_at = excluded.last_asked_at",
        ))
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
        let rows = sqlx::query_as::<_, (String, String, i64, String)>(&pg(
            "SELECT entry_id, lang, asked, last_asked_at FROM faq_asked \
             WHERE tenant_id = ? ORDER BY asked DESC, entry_id, lang",
        ))
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
        sqlx::query(&pg(
            "INSERT INTO kb_translations (tenant_id, kind, entry_id, source_hash, lang, \
             source_text, text, status, model, verification, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, kind, entry_id, source_hash, lang) DO NOTHING",
        ))
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
        sqlx::query(&pg(
            "UPDATE kb_translations SET status = ?, text = ?, reviewed_by = ?, reviewed_at = ? \
             WHERE tenant_id = ? AND kind = ? AND entry_id = ? AND source_hash = ? AND lang = ?",
        ))
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
        sqlx::query_as::<_, TranslationRow>(&pg(&format!(
            "SELECT {TRANSLATION_COLUMNS} FROM kb_translations \
             WHERE tenant_id = ? AND (? IS NULL OR status = ?) \
             ORDER BY created_at DESC LIMIT ?"
        )))
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
