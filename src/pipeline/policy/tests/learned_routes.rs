//! Learned routes: a `person` route sends a message to a person whatever
//! else it is; an `auto` route lowers only the confidence a layer-1 answer
//! needs, never past any other gate, and never for a binding action.
use super::*;

fn learned(route: Route) -> Option<LearnedRoute> {
    Some(LearnedRoute {
        route,
        similarity: 0.93,
    })
}

fn names(reasons: &[Reason]) -> Vec<String> {
    reasons
        .iter()
        .map(|r| {
            serde_json::to_value(r).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_learned_person_route_hands_a_routine_message_to_a_person() {
    let mut evidence = routine();
    evidence.signals.learned_route = learned(Route::Person);
    let decision = decide(&policy(), &evidence, at(10, 0));
    assert_eq!(decision.action, Action::Handoff);
    assert_eq!(u8::from(decision.layer), 3);
    assert_eq!(names(&decision.reasons), ["learned_route_person"]);
}

#[test]
fn a_learned_auto_route_answers_below_the_usual_confidence_only_when_every_other_gate_passes() {
    let unsure = || {
        let mut e = routine();
        e.signals.confidence = 0.6;
        e.signals.learned_route = learned(Route::Auto);
        e
    };
    type Change = fn(&mut Evidence);
    // (case, change to an unsure routine message with an auto route,
    //  action, a reason expected)
    let rows: &[(&str, Change, Action, &str)] = &[
        (
            "routine, below 0.75",
            |_| {},
            Action::Send,
            "learned_route_auto",
        ),
        (
            "without the route",
            |e| e.signals.learned_route = None,
            Action::Draft,
            "below_auto_confidence",
        ),
        (
            "below human_below_confidence",
            |e| e.signals.confidence = 0.2,
            Action::Handoff,
            "low_confidence",
        ),
        (
            "an intent the shop does not automate",
            |e| e.signals.intent = "product_specs".into(),
            Action::Draft,
            "intent_not_automated",
        ),
        ("annoyed", |e| e.signals.anger = 1, Action::Draft, "annoyed"),
        ("angry", |e| e.signals.anger = 2, Action::Handoff, "angry"),
        ("a VIP", |e| e.signals.vip = true, Action::Handoff, "vip"),
        (
            "an injection",
            |e| e.signals.injection_suspected = true,
            Action::Handoff,
            "injection_suspected",
        ),
        (
            "a risky request",
            |e| e.signals.risky_request = true,
            Action::Handoff,
            "risky_request",
        ),
        (
            "generated text still needs generated_min_confidence",
            |e| {
                e.answer = Some(AnswerEvidence {
                    provenance: Provenance::Generated,
                    verified: true,
                    order_late: false,
                })
            },
            Action::Draft,
            "below_generated_confidence",
        ),
        (
            "unverified text",
            |e| {
                e.answer = Some(AnswerEvidence {
                    provenance: Provenance::MachineTranslation,
                    verified: false,
                    order_late: false,
                })
            },
            Action::Draft,
            "unverified",
        ),
        (
            "a late order",
            |e| {
                e.answer = Some(AnswerEvidence {
                    provenance: Provenance::OrderRecord,
                    verified: true,
                    order_late: true,
                })
            },
            Action::Draft,
            "order_late",
        ),
        (
            "no answer",
            |e| e.answer = None,
            Action::Draft,
            "no_grounded_answer",
        ),
        (
            "a person holds the conversation",
            |e| e.custody.holder = Custody::Human,
            Action::Draft,
            "human_holds",
        ),
    ];
    for (case, change, action, reason) in rows {
        let mut evidence = unsure();
        change(&mut evidence);
        let decision = decide(&policy(), &evidence, at(10, 0));
        assert_eq!(decision.action, *action, "{case}: {:?}", decision.reasons);
        assert!(
            names(&decision.reasons).iter().any(|r| r == reason),
            "{case}: {:?}",
            decision.reasons
        );
    }
}

/// A binding action is never answered alone through a learned route, even
/// in a shop that (wrongly) lists it as automatic and not as a person's.
#[test]
fn a_learned_auto_route_never_makes_a_risky_action_automatic() {
    for intent in ACTION_INTENTS {
        let mut shop = policy();
        shop.human_intents.remove(*intent);
        shop.auto_intents.insert(intent.to_string());
        let mut evidence = routine();
        evidence.signals.intent = intent.to_string();
        evidence.signals.confidence = 0.6;
        evidence.signals.learned_route = learned(Route::Auto);
        let decision = decide(&shop, &evidence, at(10, 0));
        assert_ne!(decision.action, Action::Send, "{intent}");
    }
    // The shipped lists agree: every binding intent the approvals know is
    // one a learned route cannot automate.
    for intent in [
        "refund_request",
        "return_request",
        "damaged_item",
        "wrong_item",
        "not_received",
        "cancel_order",
    ] {
        assert!(
            crate::store::desk::BindingKind::from_trace(None, Some(intent)).is_some(),
            "{intent}"
        );
        assert!(ACTION_INTENTS.contains(&intent), "{intent}");
    }
}
