use super::*;
use crate::pipeline::policy::{Mode, Policy};

fn defaults() -> Policy {
    crate::config::Settings::defaults().policy.defaults
}

fn now() -> DateTime<Utc> {
    "2026-12-01T10:00:00Z".parse().unwrap()
}

/// A calm message read as `intent` at `confidence`, with a verified
/// answer from the seller's FAQ.
fn case(text: &str, intent: &str, confidence: f32, outcome: Outcome) -> PastCase {
    PastCase {
        text: text.into(),
        at: now(),
        evidence: Evidence {
            signals: Signals {
                intent: intent.into(),
                confidence,
                out_of_scope: false,
                anger: 0,
                urgent: false,
                human_requested: false,
                repeated_question: false,
                vip: false,
                risky_request: false,
                injection_suspected: false,
                learned_route: None,
            },
            answer: Some(AnswerEvidence {
                provenance: Provenance::SellerText,
                verified: true,
                order_late: false,
            }),
            withheld: false,
            custody: CustodyEvidence::AI,
        },
        outcome,
        source: TrialSource::History,
    }
}

fn history() -> Vec<PastCase> {
    vec![
        case(
            "where is my parcel",
            "order_status",
            0.92,
            Outcome::Answered,
        ),
        case(
            "how long to Manila",
            "shipping_time_cost",
            0.68,
            Outcome::Confirmed,
        ),
        case(
            "do you ship to Cebu",
            "shipping_time_cost",
            0.66,
            Outcome::Confirmed,
        ),
        case("pls refund me", "refund_request", 0.91, Outcome::Corrected),
    ]
}

#[test]
fn the_kill_switch_is_never_refused_and_shows_what_it_costs() {
    let before = defaults();
    let after = Policy {
        ai_enabled: false,
        ..before.clone()
    };
    let trial = judge(&before, &after, &history(), now());
    assert!(trial.promoted, "{trial:?}");
    assert_eq!(trial.to_person, 1);
    assert_eq!(trial.to_ai, 0);
    assert_eq!(trial.to_person_examples[0].text, "where is my parcel");
    assert_eq!(trial.to_person_examples[0].before, Action::Send);
    assert_eq!(trial.to_person_examples[0].after, Action::Draft);
}

#[test]
fn a_lower_threshold_that_only_reaches_confirmed_drafts_goes_live() {
    let before = defaults();
    let after = Policy {
        auto_min_confidence: 0.65,
        ..before.clone()
    };
    let trial = judge(&before, &after, &history(), now());
    assert!(trial.promoted, "{trial:?}");
    assert_eq!(trial.to_ai, 2);
    assert!(trial.unsafe_sends.is_empty());
}

#[test]
fn a_lower_threshold_reaching_a_draft_a_person_rewrote_is_refused_with_the_reason() {
    let before = defaults();
    let after = Policy {
        auto_min_confidence: 0.65,
        ..before.clone()
    };
    let mut past = history();
    past.push(case(
        "can it reach Davao by friday",
        "shipping_time_cost",
        0.7,
        Outcome::Corrected,
    ));
    let trial = judge(&before, &after, &past, now());
    assert!(!trial.promoted);
    assert_eq!(trial.to_ai, 3);
    assert_eq!(trial.unsafe_sends.len(), 1);
    assert_eq!(trial.unsafe_sends[0].text, "can it reach Davao by friday");
    assert!(
        trial.reasons[0].starts_with("1 of the shop's 5 past messages"),
        "{:?}",
        trial.reasons
    );
}

#[test]
fn automating_refunds_is_refused_even_where_people_never_corrected_one() {
    let before = defaults();
    let mut after = before.clone();
    after.human_intents.remove("refund_request");
    after.auto_intents.insert("refund_request".into());
    let past = vec![case("refund pls", "refund_request", 0.95, Outcome::Open)];
    let trial = judge(&before, &after, &past, now());
    assert!(!trial.promoted);
    assert_eq!(
        trial.unsafe_sends[0].unsafe_because.as_deref(),
        Some("a binding request (refund_request)")
    );
}

#[test]
fn evaluation_conversations_that_need_a_person_count() {
    let eval = evaluation(
        &[
            Case {
                text: "I was charged twice, fix it".into(),
                intent: "complaint".into(),
                source: crate::learning::CaseSource::EvalSet,
                needs_person: true,
                routine: false,
            },
            Case {
                text: "hi".into(),
                intent: "greeting".into(),
                source: crate::learning::CaseSource::EvalSet,
                needs_person: false,
                routine: true,
            },
        ],
        now(),
    );
    let before = defaults();
    let mut after = before.clone();
    after.human_intents.remove("complaint");
    after.auto_intents.insert("complaint".into());
    let trial = judge(&before, &after, &eval, now());
    assert!(!trial.promoted);
    assert_eq!(trial.evaluation, 2);
    assert!(
        trial.reasons[0].contains("evaluation conversations"),
        "{:?}",
        trial.reasons
    );
    // Suggest mode for greetings only moves the greeting to a person.
    let mut suggest = before.clone();
    suggest
        .intent_modes
        .insert("greeting".into(), Mode::Suggest);
    let trial = judge(&before, &suggest, &eval, now());
    assert!(trial.promoted);
    assert_eq!(trial.to_person, 1);
}

#[test]
fn a_trace_without_a_written_answer_is_measured_as_if_one_passed() {
    let trace = serde_json::json!({
        "intent": "product_specs", "confidence": 0.97, "out_of_scope": false,
        "anger": 2, "urgent": false, "human_requested": false, "repeated": false,
        "binding_request": null, "injection": null, "answer": null,
        "custody": {"holder": "ai", "human_replied_since": false, "resolved": false},
        "reasons": [{"reason": "angry", "level": 2}],
        "handoff": {"buyer": {"vip": true}},
    });
    let evidence = evidence_from_trace(&trace).unwrap();
    assert_eq!(evidence.signals.anger, 2);
    assert!(evidence.signals.vip);
    assert_eq!(
        evidence.answer,
        Some(AnswerEvidence {
            provenance: Provenance::Generated,
            verified: true,
            order_late: false
        })
    );
    let nothing = serde_json::json!({
        "intent": "product_specs", "confidence": 0.9,
        "reasons": [{"reason": "no_grounded_answer"}], "answer": null,
    });
    assert_eq!(evidence_from_trace(&nothing).unwrap().answer, None);
    assert!(evidence_from_trace(&serde_json::json!({"error": "x"})).is_none());
}
