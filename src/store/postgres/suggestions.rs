//! Suggested FAQ entries. PostgreSQL implementation of [`SuggestionStore`]:
//! the statements of `sqlite/suggestions.rs`, with the parameters numbered by [`pg`].

use uuid::Uuid;

use super::*;
use crate::store::suggestions::{
    FaqSuggestion, NewFaqSuggestion, SuggestionDecision, SuggestionStatus, SuggestionStore,
};

/// The statement as this database spells its parameters.
fn q(sql: &str) -> String {
    pg(sql)
}

const COLUMNS: &str = "id, questions, answer, lang, asked, conversations, status, entry_id, \
     decided_by, decided_at, created_at, updated_at, trial";

#[derive(sqlx::FromRow)]
struct SuggestionRow {
    id: String,
    questions: String,
    answer: String,
    lang: String,
    asked: i64,
    conversations: String,
    status: String,
    entry_id: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<String>,
    created_at: String,
    updated_at: String,
    trial: Option<String>,
}

impl SuggestionRow {
    fn suggestion(self) -> Result<FaqSuggestion, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("faq suggestion: {e}"));
        Ok(FaqSuggestion {
            id: parse_id(&self.id, "faq suggestion")?,
            questions: serde_json::from_str(&self.questions).map_err(corrupt)?,
            answer: self.answer,
            lang: self.lang,
            asked: self.asked,
            conversations: serde_json::from_str(&self.conversations).map_err(corrupt)?,
            status: SuggestionStatus::parse(&self.status)?,
            entry_id: self.entry_id,
            decided_by: self.decided_by,
            decided_at: self.decided_at.as_deref().map(parse_ts).transpose()?,
            created_at: parse_ts(&self.created_at)?,
            updated_at: parse_ts(&self.updated_at)?,
            trial: self
                .trial
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(corrupt)?,
        })
    }
}

fn json(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("faq suggestion: {e}")))
}

#[async_trait]
impl SuggestionStore for PostgresStore {
    async fn upsert_faq_suggestion(
        &self,
        tenant: TenantId,
        suggestion: &NewFaqSuggestion,
    ) -> Result<bool, StoreError> {
        let at = ts(now());
        let mut tx = self.begin_write().await?;
        let existing: Option<(String,)> = sqlx::query_as(&q(
            "SELECT id FROM faq_suggestions WHERE tenant_id = ? AND answer_key = ?",
        ))
        .bind(tenant.to_string())
        .bind(&suggestion.answer_key)
        .fetch_optional(&mut *tx)
        .await?;
        let questions = json(&suggestion.questions)?;
        let conversations = json(&suggestion.conversations)?;
        if existing.is_some() {
            sqlx::query(&q(
                "UPDATE faq_suggestions SET questions = ?, lang = ?, asked = ?, \
                 conversations = ?, updated_at = ? \
                 WHERE tenant_id = ? AND answer_key = ? AND status = 'pending'",
            ))
            .bind(&questions)
            .bind(&suggestion.lang)
            .bind(suggestion.asked)
            .bind(&conversations)
            .bind(&at)
            .bind(tenant.to_string())
            .bind(&suggestion.answer_key)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(false);
        }
        let id = Uuid::now_v7();
        sqlx::query(&q(
            "INSERT INTO faq_suggestions \
             (id, tenant_id, answer_key, questions, answer, lang, asked, conversations, status, \
              entry_id, decided_by, decided_at, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', NULL, NULL, NULL, ?, ?)",
        ))
        .bind(id.to_string())
        .bind(tenant.to_string())
        .bind(&suggestion.answer_key)
        .bind(&questions)
        .bind(&suggestion.answer)
        .bind(&suggestion.lang)
        .bind(suggestion.asked)
        .bind(&conversations)
        .bind(&at)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: "kedai".into(),
                action: "learning.faq_suggested".into(),
                subject_type: "faq_suggestion".into(),
                subject_id: id.to_string(),
                details: serde_json::json!({ "asked": suggestion.asked }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn faq_suggestions(
        &self,
        tenant: TenantId,
        status: Option<SuggestionStatus>,
    ) -> Result<Vec<FaqSuggestion>, StoreError> {
        let rows: Vec<SuggestionRow> = sqlx::query_as(&q(&format!(
            "SELECT {COLUMNS} FROM faq_suggestions WHERE tenant_id = ? \
             AND (? IS NULL OR status = ?) ORDER BY asked DESC, created_at, id"
        )))
        .bind(tenant.to_string())
        .bind(status.map(SuggestionStatus::as_str))
        .bind(status.map(SuggestionStatus::as_str))
        .fetch_all(&self.reader)
        .await?;
        rows.into_iter().map(SuggestionRow::suggestion).collect()
    }

    async fn faq_suggestion(
        &self,
        tenant: TenantId,
        id: Uuid,
    ) -> Result<Option<FaqSuggestion>, StoreError> {
        let row: Option<SuggestionRow> = sqlx::query_as(&q(&format!(
            "SELECT {COLUMNS} FROM faq_suggestions WHERE tenant_id = ? AND id = ?"
        )))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await?;
        row.map(SuggestionRow::suggestion).transpose()
    }

    async fn decide_faq_suggestion(
        &self,
        tenant: TenantId,
        id: Uuid,
        decision: &SuggestionDecision,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let (status, entry_id, action) = match decision {
            SuggestionDecision::Accept { entry_id } => (
                SuggestionStatus::Accepted,
                Some(entry_id.as_str()),
                "learning.faq_suggestion_accepted",
            ),
            SuggestionDecision::Dismiss => (
                SuggestionStatus::Dismissed,
                None,
                "learning.faq_suggestion_dismissed",
            ),
        };
        let at = ts(now());
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(&q("UPDATE faq_suggestions SET status = ?, entry_id = ?, \
             decided_by = ?, decided_at = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ? AND status = 'pending'"))
        .bind(status.as_str())
        .bind(entry_id)
        .bind(actor)
        .bind(&at)
        .bind(&at)
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(false);
        }
        insert_audit(
            &mut tx,
            Some(tenant),
            &AuditEvent {
                actor: actor.to_owned(),
                action: action.into(),
                subject_type: "faq_suggestion".into(),
                subject_id: id.to_string(),
                details: serde_json::json!({ "entry_id": entry_id }),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_faq_trial(
        &self,
        tenant: TenantId,
        id: Uuid,
        trial: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(&q("UPDATE faq_suggestions SET trial = ?, updated_at = ? \
             WHERE tenant_id = ? AND id = ? AND status = 'pending'"))
        .bind(json(trial)?)
        .bind(ts(now()))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn reopen_faq_suggestion(&self, tenant: TenantId, id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(&q(
            "UPDATE faq_suggestions SET status = 'pending', entry_id = NULL, \
             decided_by = NULL, decided_at = NULL, updated_at = ? \
             WHERE tenant_id = ? AND id = ? AND status = 'accepted'",
        ))
        .bind(ts(now()))
        .bind(tenant.to_string())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
