//! Suggested FAQ entries. SQLite implementation of [`SuggestionStore`];
//! `postgres/suggestions.rs` runs the same statements.

use uuid::Uuid;

use super::*;
use crate::store::suggestions::{
    FaqSuggestion, NewFaqSuggestion, SuggestionDecision, SuggestionStatus, SuggestionStore,
};

/// The statement as this database spells its parameters.
fn q(sql: &str) -> String {
    sql.to_owned()
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
impl SuggestionStore for SqliteStore {
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{open, tenant_with_shop};
    use super::*;

    fn suggestion(answer: &str, questions: &[&str]) -> NewFaqSuggestion {
        NewFaqSuggestion {
            answer_key: format!("key:{answer}"),
            questions: questions.iter().map(|q| q.to_string()).collect(),
            answer: answer.into(),
            lang: "en".into(),
            asked: questions.len() as i64,
            conversations: vec![],
        }
    }

    #[tokio::test]
    async fn suggestions_refresh_while_pending_are_decided_once_and_stay_with_their_tenant() {
        let (store, _dir) = open().await;
        let one = tenant_with_shop(&store, "one").await.tenant_id;
        let two = tenant_with_shop(&store, "two").await.tenant_id;
        let first = suggestion("Yes, under 100 Wh.", &["plane?"]);
        assert!(store.upsert_faq_suggestion(one, &first).await.unwrap());
        // The same answer again refreshes the pending suggestion.
        let more = suggestion("Yes, under 100 Wh.", &["plane?", "flight?"]);
        assert!(!store.upsert_faq_suggestion(one, &more).await.unwrap());
        let listed = store.faq_suggestions(one, None).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].questions, vec!["plane?", "flight?"]);
        assert_eq!(listed[0].asked, 2);
        let id = listed[0].id;
        // Another tenant neither sees nor decides it.
        assert!(store.faq_suggestions(two, None).await.unwrap().is_empty());
        assert!(store.faq_suggestion(two, id).await.unwrap().is_none());
        let accept = SuggestionDecision::Accept {
            entry_id: "learned-1".into(),
        };
        assert!(!store
            .decide_faq_suggestion(two, id, &accept, "user:b")
            .await
            .unwrap());
        // Decided once; a decided one is not refreshed.
        assert!(store
            .decide_faq_suggestion(one, id, &accept, "user:a")
            .await
            .unwrap());
        assert!(!store
            .decide_faq_suggestion(one, id, &SuggestionDecision::Dismiss, "user:a")
            .await
            .unwrap());
        let again = suggestion("Yes, under 100 Wh.", &["plane?", "flight?", "fly?"]);
        assert!(!store.upsert_faq_suggestion(one, &again).await.unwrap());
        let decided = store.faq_suggestion(one, id).await.unwrap().unwrap();
        assert_eq!(decided.status, SuggestionStatus::Accepted);
        assert_eq!(decided.entry_id.as_deref(), Some("learned-1"));
        assert_eq!(decided.asked, 2);
        assert!(store
            .faq_suggestions(one, Some(SuggestionStatus::Pending))
            .await
            .unwrap()
            .is_empty());
        // A failed entry write returns it to pending.
        store.reopen_faq_suggestion(one, id).await.unwrap();
        let reopened = store.faq_suggestion(one, id).await.unwrap().unwrap();
        assert_eq!(reopened.status, SuggestionStatus::Pending);
        assert_eq!(reopened.entry_id, None);
    }
}
