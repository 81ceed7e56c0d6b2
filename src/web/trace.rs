//! Reading a decision's trace for people: intent, sentiment, reasons, the
//! AI summary, and "why did the AI say this" (sources, checks, models,
//! time). The trace is JSON whose shape grows; every field is read
//! defensively, and one that is missing or shaped otherwise is left out.

use serde_json::Value;

use crate::store::Decision;

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub fn field(trace: &Value, key: &str) -> Option<String> {
    text(trace.get(key))
}

/// A reason as words: `{"reason": "low_confidence", "confidence": 0.41}`
/// becomes "low confidence (confidence 0.41)".
fn reason(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.replace('_', " ")),
        Value::Object(fields) => {
            let name = fields
                .get("reason")
                .or_else(|| fields.get("code"))
                .and_then(Value::as_str)?
                .replace('_', " ");
            let details: Vec<String> = fields
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "reason" | "code"))
                .filter_map(|(k, v)| {
                    let shown = match v {
                        Value::Number(n) => n.as_f64().map(|f| {
                            format!("{:.2}", f)
                                .trim_end_matches('0')
                                .trim_end_matches('.')
                                .to_owned()
                        })?,
                        Value::String(s) => s.clone(),
                        Value::Bool(b) => b.to_string(),
                        _ => return None,
                    };
                    Some(format!("{} {shown}", k.replace('_', " ")))
                })
                .collect();
            Some(if details.is_empty() {
                name
            } else {
                format!("{name} ({})", details.join(", "))
            })
        }
        _ => None,
    }
}

pub fn reasons(trace: &Value) -> Vec<String> {
    trace
        .get("reasons")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(reason).collect())
        .unwrap_or_default()
}

/// The AI's summary for an agent: the follow-up's, else the handoff's.
pub fn summary(decision: &Decision) -> Option<String> {
    let trace = &decision.trace;
    decision
        .follow_up
        .as_ref()
        .and_then(|f| text(f.get("summary")))
        .or_else(|| text(trace.pointer("/follow_up/summary")))
        .or_else(|| text(trace.pointer("/handoff/ai_summary")))
        .or_else(|| text(trace.pointer("/handoff/summary")))
}

/// Suggested replies from the handoff packet.
pub fn suggestions(trace: &Value) -> Vec<String> {
    trace
        .pointer("/handoff/suggested_replies")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(|v| text(Some(v))).collect())
        .unwrap_or_default()
}

/// "Why did the AI say this": one decision's evidence, in words.
#[derive(Debug, Clone, Default)]
pub struct Why {
    pub answer_kind: String,
    pub sources: Vec<String>,
    pub checks: Vec<String>,
    pub models: Vec<String>,
    pub took: String,
    pub layer: u8,
    pub action: String,
    pub intent: String,
    pub confidence: String,
    pub sentiment: String,
    pub language: String,
    pub reasons: Vec<String>,
}

pub fn why(decision: &Decision) -> Why {
    let trace = &decision.trace;
    let sources = trace
        .get("sources")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|s| match s {
                    Value::Object(o) => {
                        let id = o.get("id").and_then(Value::as_str)?;
                        let kind = o.get("kind").and_then(Value::as_str).unwrap_or("source");
                        let score = o
                            .get("similarity")
                            .and_then(Value::as_f64)
                            .or_else(|| o.get("score").and_then(Value::as_f64));
                        Some(match score {
                            Some(score) => format!("{kind} {id} (match {score:.2})"),
                            None => format!("{kind} {id}"),
                        })
                    }
                    Value::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let mut checks = Vec::new();
    match trace.get("guard").and_then(Value::as_array) {
        Some(found) if !found.is_empty() => {
            for v in found {
                let what = match v {
                    Value::Object(o) => o
                        .get("rule")
                        .or_else(|| o.get("kind"))
                        .or_else(|| o.get("violation"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                    other => other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned),
                };
                checks.push(format!("output guard flagged: {}", what.replace('_', " ")));
            }
        }
        Some(_) => checks.push("passed the output guard".into()),
        None => {}
    }
    if let Some(injection) = field(trace, "injection") {
        checks.push(format!("prompt injection suspected: {injection}"));
    }
    let verification = trace
        .pointer("/answer/verification")
        .or_else(|| trace.get("verification"));
    match verification
        .and_then(|v| v.get("checks"))
        .and_then(Value::as_array)
    {
        Some(found) => checks.extend(found.iter().map(|check| {
            let name = check
                .get("check")
                .and_then(Value::as_str)
                .unwrap_or("check")
                .replace('_', " ");
            match check.get("passed").and_then(Value::as_bool) {
                Some(true) => format!("{name} check passed"),
                Some(false) => format!("{name} check failed: {}", compact(check)),
                None => format!("{name}: {}", compact(check)),
            }
        })),
        None => {
            if let Some(v) = verification {
                checks.push(format!("verification: {}", compact(v)));
            }
        }
    }
    let models = trace
        .get("models")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|v| text(Some(v))).collect())
        .unwrap_or_default();
    let took = trace
        .get("timings_ms")
        .and_then(Value::as_object)
        .map(|t| t.values().filter_map(Value::as_f64).sum::<f64>())
        .filter(|ms| *ms > 0.0)
        .map(|ms| {
            if ms < 1000.0 {
                format!("{ms:.0} ms")
            } else {
                format!("{:.1} s", ms / 1000.0)
            }
        })
        .unwrap_or_default();
    let provenance = trace
        .pointer("/answer/provenance")
        .and_then(Value::as_str)
        .map(|p| format!(" · {}", p.replace('_', " ")))
        .unwrap_or_default();
    Why {
        answer_kind: format!(
            "{}{provenance}",
            field(trace, "answer_kind")
                .unwrap_or_default()
                .replace('_', " ")
        ),
        sources,
        checks,
        models,
        took,
        layer: decision.layer.get(),
        action: decision.action.as_str().to_owned(),
        intent: field(trace, "intent").unwrap_or_default().replace('_', " "),
        confidence: trace
            .get("confidence")
            .and_then(Value::as_f64)
            .map(|c| format!("{:.0}%", c * 100.0))
            .unwrap_or_default(),
        sentiment: field(trace, "sentiment").unwrap_or_default(),
        language: field(trace, "lang").unwrap_or_default(),
        reasons: reasons(trace),
    }
}

/// A JSON value on one line, cut short.
fn compact(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.chars().count() > 200 {
        text.chars().take(200).chain(std::iter::once('…')).collect()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reasons_read_as_words() {
        let trace = json!({"reasons": [
            {"reason": "low_confidence", "confidence": 0.41, "threshold": 0.6},
            {"reason": "risky_request"},
            "vip",
            42
        ]});
        assert_eq!(
            reasons(&trace),
            vec![
                "low confidence (confidence 0.41, threshold 0.6)",
                "risky request",
                "vip"
            ]
        );
        assert!(reasons(&json!({"reasons": "oops"})).is_empty());
    }

    fn decision(trace: Value, follow_up: Option<Value>) -> Decision {
        Decision {
            id: crate::domain::DecisionId::new(),
            conversation_id: crate::domain::ConversationId::new(),
            message_id: crate::domain::MessageId::new(),
            layer: crate::domain::Layer::try_from(3).unwrap(),
            action: crate::domain::Action::Handoff,
            draft: None,
            reply_message_id: None,
            trace,
            follow_up,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn verification_checks_and_provenance_are_read_from_the_answer() {
        let d = decision(
            json!({"answer_kind": "faq_translated", "guard": [],
                   "answer": {"provenance": "machine_translation", "verification": {"passed": false,
                     "checks": [{"check": "language", "expected": "th", "passed": true},
                                {"check": "facts", "problems": ["15 missing"], "passed": false}]}}}),
            None,
        );
        let w = why(&d);
        assert_eq!(w.answer_kind, "faq translated · machine translation");
        assert_eq!(w.checks[0], "passed the output guard");
        assert_eq!(w.checks[1], "language check passed");
        assert!(
            w.checks[2].starts_with("facts check failed: "),
            "{:?}",
            w.checks
        );
    }

    #[test]
    fn summary_prefers_the_follow_up() {
        let packet = json!({"handoff": {"summary": "packet"}});
        let d = decision(packet.clone(), Some(json!({"summary": "ai"})));
        assert_eq!(summary(&d).as_deref(), Some("ai"));
        assert_eq!(summary(&decision(packet, None)).as_deref(), Some("packet"));
        let queued = decision(json!({}), Some(json!({"state": "queued"})));
        assert_eq!(summary(&queued), None);
    }
}
