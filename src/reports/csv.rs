//! A report's tables as CSV (RFC 4180, through the `csv` crate): the
//! figures per language and intent, the tagged conversations, and the
//! resolution figure's counted conversations. Text cells that a
//! spreadsheet would run as a formula (`=`, `+`, `-`, `@` first) are
//! quoted with a leading `'`.

use crate::figures::report::Row;
use crate::figures::{Report, Resolution, Spread};

fn cell(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

fn number(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn spread(value: Option<Spread>) -> [String; 2] {
    match value {
        Some(s) => [format!("{:.1}", s.p50_secs), format!("{:.1}", s.p90_secs)],
        None => [String::new(), String::new()],
    }
}

fn write(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    // Writing to a Vec cannot fail, and every row has the header's width.
    let _ = out.write_record(header);
    for row in rows {
        let _ = out.write_record(row.iter().map(|c| cell(c)));
    }
    String::from_utf8(out.into_inner().unwrap_or_default()).unwrap_or_default()
}

const ROW_HEADER: &[&str] = &[
    "dimension",
    "value",
    "conversations",
    "with_buyer_message",
    "involvement",
    "automation",
    "first_response_p50_secs",
    "first_response_p90_secs",
    "first_response_ai_p50_secs",
    "first_response_ai_p90_secs",
    "first_response_human_p50_secs",
    "first_response_human_p90_secs",
    "time_to_human_p50_secs",
    "time_to_human_p90_secs",
    "drafts_offered",
    "drafts_sent_unchanged",
    "drafts_edited",
    "edit_distance_p50",
    "ai_answers",
    "ai_answers_asked_again",
    "satisfaction_score",
];

fn row_cells(r: &Row) -> Vec<String> {
    let mut cells = vec![
        r.dimension.to_owned(),
        r.value.clone(),
        r.conversations.to_string(),
        r.with_buyer_message.to_string(),
        number(r.involvement),
        number(r.automation),
    ];
    for s in [
        r.first_response,
        r.first_response_ai,
        r.first_response_human,
        r.time_to_human,
    ] {
        cells.extend(spread(s));
    }
    cells.extend([
        r.drafts_offered.to_string(),
        r.drafts_sent_unchanged.to_string(),
        r.drafts_edited.to_string(),
        number(r.edit_distance_p50),
        r.ai_answers.to_string(),
        r.ai_answers_asked_again.to_string(),
        number(r.satisfaction_score),
    ]);
    cells
}

/// The figures, one row for all conversations, then per language and per
/// intent.
pub fn summary(report: &Report) -> String {
    write(ROW_HEADER, report.rows.iter().map(row_cells))
}

/// The selected conversations with their tags (space-separated).
pub fn conversations(report: &Report) -> String {
    write(
        &[
            "conversation_id",
            "shop",
            "platform",
            "created_at",
            "language",
            "intent",
            "resolved",
            "satisfaction",
            "tags",
        ],
        report.conversations.iter().map(|c| {
            vec![
                c.id.to_string(),
                c.shop.clone(),
                c.platform.clone(),
                c.created_at.to_rfc3339(),
                c.language.clone().unwrap_or_default(),
                c.intent.clone().unwrap_or_default(),
                c.resolved.to_string(),
                c.satisfaction.unwrap_or_default().to_owned(),
                c.tags
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
            ]
        }),
    )
}

/// The conversations the resolution figure counted, with what the rule
/// read of each.
pub fn resolution(resolution: &Resolution) -> String {
    write(
        &[
            "conversation_id",
            "shop",
            "platform",
            "status",
            "created_at",
            "buyer_messages",
            "ai_replies",
            "human_replies",
            "resolved",
            "resolved_by_ai_alone",
        ],
        resolution.conversations.iter().map(|c| {
            vec![
                c.row.conversation_id.to_string(),
                c.row.shop.clone(),
                c.row.platform.clone(),
                c.row.status.clone(),
                c.row.created_at.to_rfc3339(),
                c.row.buyer_messages.to_string(),
                c.row.ai_replies.to_string(),
                c.row.human_replies.to_string(),
                c.resolved.to_string(),
                c.resolved_by_ai_alone.to_string(),
            ]
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_defused_and_commas_quoted() {
        let out = write(
            &["a", "b"],
            [vec!["=cmd|' /C calc'!A0".to_owned(), "x, y".to_owned()]].into_iter(),
        );
        assert_eq!(out, "a,b\n'=cmd|' /C calc'!A0,\"x, y\"\n");
    }

    #[test]
    fn every_row_has_the_header_s_width() {
        let row = Row {
            dimension: "all",
            value: "all".into(),
            conversations: 1,
            with_buyer_message: 1,
            involvement: Some(1.0),
            automation: None,
            first_response: None,
            first_response_ai: None,
            first_response_human: None,
            time_to_human: None,
            drafts_offered: 0,
            drafts_sent_unchanged: 0,
            drafts_edited: 0,
            edit_distance_p50: None,
            ai_answers: 0,
            ai_answers_asked_again: 0,
            satisfaction_score: None,
        };
        assert_eq!(row_cells(&row).len(), ROW_HEADER.len());
    }
}
