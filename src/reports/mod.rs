//! Reports over a tenant's conversations: the filter people give (a period
//! as times, dates or `7d`, a shop, platform, language, intent or tag)
//! turned into a [`figures::Filter`], the records read from the store, the
//! report computed by [`figures`], and its tables written as CSV. Shared by
//! `GET /api/v1/reports/...`, `kedai report` and the workbench.
//!
//! Knows the store and the figures; nothing of HTTP, sessions or
//! templates.

pub mod cli;
pub mod csv;
pub mod replay;

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::domain::{Platform, ShopKey, TenantId};
use crate::figures::{self, Filter, Report, Resolution};
use crate::store::reports::Tag;
use crate::store::users::ShopAccess;
use crate::store::{Store, StoreError};

/// The period a report covers when none is given.
pub const DEFAULT_DAYS: i64 = 30;
/// The longest period a report may cover.
pub const MAX_DAYS: i64 = 366;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("embedding the questions failed: {0}")]
    Embedding(String),
}

/// A report's filter as people write it.
#[derive(Debug, Clone, Default)]
pub struct FilterText {
    pub since: Option<String>,
    pub until: Option<String>,
    pub shop: Option<String>,
    pub platform: Option<String>,
    pub language: Option<String>,
    pub intent: Option<String>,
    pub tag: Option<String>,
}

/// A time as people write it: RFC 3339, a date (`2026-12-01`, midnight
/// UTC), or a span back from now (`7d`, `12h`, `30m`).
pub fn parse_time(field: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    let bad = || {
        format!("{field} must be an RFC 3339 time, a date like 2026-12-01, or 7d, 12h, 30m; got {raw:?}")
    };
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let amount: i64 = number
        .parse()
        .ok()
        .filter(|n| *n <= MAX_DAYS * 24 * 60)
        .ok_or_else(bad)?;
    let back = match unit {
        "d" => Duration::days(amount),
        "h" => Duration::hours(amount),
        "m" => Duration::minutes(amount),
        _ => return Err(bad()),
    };
    Ok(now - back)
}

fn optional(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl FilterText {
    /// The validated filter; the period defaults to the last
    /// [`DEFAULT_DAYS`] days up to now.
    pub fn parse(&self, now: DateTime<Utc>) -> Result<Filter, ReportError> {
        let invalid = ReportError::Invalid;
        let until = match optional(&self.until) {
            Some(raw) => parse_time("until", raw, now).map_err(invalid)?,
            None => now,
        };
        let since = match optional(&self.since) {
            Some(raw) => parse_time("since", raw, now).map_err(invalid)?,
            None => until - Duration::days(DEFAULT_DAYS),
        };
        if since >= until {
            return Err(invalid(format!(
                "since ({since}) must be before until ({until})"
            )));
        }
        if until - since > Duration::days(MAX_DAYS) {
            return Err(invalid(format!(
                "a report covers at most {MAX_DAYS} days, got {} days",
                (until - since).num_days()
            )));
        }
        let word = |field: &'static str, raw: &str| -> Result<String, ReportError> {
            let value = raw.to_lowercase();
            if value.len() > 64
                || !value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(invalid(format!(
                    "{field} must be a code like `th` or `size_fit`, got {raw:?}"
                )));
            }
            Ok(value)
        };
        Ok(Filter {
            since,
            until,
            shop: optional(&self.shop)
                .map(ShopKey::parse)
                .transpose()
                .map_err(|e| invalid(e.to_string()))?,
            platform: optional(&self.platform)
                .map(|p| {
                    p.parse::<Platform>()
                        .map_err(|_| invalid(format!("unknown platform {p:?}")))
                })
                .transpose()?,
            language: optional(&self.language)
                .map(|l| word("language", l))
                .transpose()?,
            intent: optional(&self.intent)
                .map(|i| word("intent", i))
                .transpose()?,
            tag: optional(&self.tag)
                .map(Tag::parse)
                .transpose()
                .map_err(|e| invalid(e.to_string()))?,
        })
    }
}

/// The report over the conversations of `access` that `filter` selects.
pub async fn build(
    store: &dyn Store,
    tenant: TenantId,
    access: &ShopAccess,
    filter: &Filter,
    now: DateTime<Utc>,
) -> Result<Report, ReportError> {
    let facts = store
        .conversation_facts(tenant, access, filter.since)
        .await?;
    let edits = store.tag_edits(tenant, filter.since).await?;
    Ok(figures::report(&facts, &edits, filter, now))
}

/// The resolution figure over the conversations the report selects, from
/// the rows of the published SQL.
pub async fn resolution(
    store: &dyn Store,
    tenant: TenantId,
    report: &Report,
) -> Result<Resolution, ReportError> {
    let rows = store
        .resolution_rows(tenant, report.filter.since, report.filter.until)
        .await?;
    let selected: Vec<_> = report.conversations.iter().map(|c| c.id).collect();
    Ok(figures::resolution(rows, &selected))
}

/// The knowledge gaps among the conversations `report` covers (already
/// narrowed to the caller's shops), their questions grouped by meaning
/// with `embedder`'s vectors (run on a blocking thread).
pub async fn gaps(
    store: &dyn Store,
    tenant: TenantId,
    report: &Report,
    embedder: std::sync::Arc<dyn crate::kb::Embedder>,
) -> Result<Vec<figures::gaps::Gap>, ReportError> {
    let selected: std::collections::HashSet<_> =
        report.conversations.iter().map(|c| c.id).collect();
    let facts = store
        .conversation_facts(tenant, &ShopAccess::All, report.filter.since)
        .await?;
    let chosen: Vec<_> = facts.iter().filter(|c| selected.contains(&c.id)).collect();
    group_gaps(figures::gaps::gap_messages(&chosen), embedder).await
}

/// Groups gap messages by meaning with `embedder`'s vectors (run on a
/// blocking thread), most asked first.
pub async fn group_gaps(
    messages: Vec<figures::gaps::GapMessage>,
    embedder: std::sync::Arc<dyn crate::kb::Embedder>,
) -> Result<Vec<figures::gaps::Gap>, ReportError> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let texts: Vec<String> = messages.iter().map(|m| m.text.clone()).collect();
    let vectors = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        embedder.embed(&refs, crate::inference::EmbedRole::Query)
    })
    .await
    .map_err(|e| ReportError::Embedding(e.to_string()))?
    .map_err(|e| ReportError::Embedding(e.to_string()))?;
    Ok(figures::gaps::cluster(
        messages,
        &vectors,
        figures::gaps::SAME_QUESTION,
    ))
}

/// One conversation's tags as people see them: kedai's, with people's
/// edits applied. Empty when the tenant has no such conversation.
pub async fn conversation_tags(
    store: &dyn Store,
    tenant: TenantId,
    conversation: crate::domain::ConversationId,
) -> Result<Vec<Tag>, ReportError> {
    let Some(detail) = store.conversation(tenant, conversation).await? else {
        return Ok(Vec::new());
    };
    let facts = store
        .conversation_facts(tenant, &ShopAccess::All, detail.summary.created_at)
        .await?;
    let Some(facts) = facts.iter().find(|c| c.id == conversation) else {
        return Ok(Vec::new());
    };
    let edits = store.conversation_tag_edits(tenant, conversation).await?;
    let by = figures::tags::edits_by_conversation(&edits);
    Ok(figures::tags::effective_tags(facts, by.get(&conversation))
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-07T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn times_are_rfc3339_dates_or_spans_back() {
        let t = |raw| parse_time("since", raw, now());
        assert_eq!(t("7d").unwrap(), now() - Duration::days(7));
        assert_eq!(t("12h").unwrap(), now() - Duration::hours(12));
        assert_eq!(
            t("2026-12-01").unwrap(),
            "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            t("2026-12-01T08:00:00+07:00").unwrap(),
            "2026-12-01T01:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        for bad in ["", "7w", "yesterday", "-3d", "99999999d"] {
            let err = t(bad).unwrap_err();
            assert!(err.contains("since must be"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn filters_are_checked_and_default_to_the_last_30_days() {
        let f = FilterText::default().parse(now()).unwrap();
        assert_eq!((f.since, f.until), (now() - Duration::days(30), now()));
        let text = |edit: fn(&mut FilterText)| {
            let mut t = FilterText::default();
            edit(&mut t);
            t.parse(now())
        };
        let f = text(|t| {
            t.shop = Some("demo-shopee".into());
            t.platform = Some("shopee".into());
            t.language = Some("TH".into());
            t.tag = Some("VIP".into());
        })
        .unwrap();
        assert_eq!(f.language.as_deref(), Some("th"));
        assert_eq!(f.tag.unwrap().as_str(), "vip");
        for bad in [
            text(|t| t.platform = Some("ebay".into())),
            text(|t| t.language = Some("th' OR 1=1".into())),
            text(|t| t.since = Some("2026-12-08".into())),
            text(|t| t.since = Some("400d".into())),
            text(|t| t.tag = Some("<b>".into())),
        ] {
            assert!(matches!(bad, Err(ReportError::Invalid(_))), "{bad:?}");
        }
    }
}
