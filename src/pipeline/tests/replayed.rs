//! A stored decision's trace carries what the policy needs to decide the
//! message again: replayed under the same policy, every decision comes out
//! as it was stored (what `learning::policy_trial` relies on to measure a
//! policy change against a shop's history).

use super::*;
use crate::learning::policy_trial::evidence_from_trace;
use crate::pipeline::policy::decide;

#[tokio::test]
async fn replaying_stored_traces_under_the_same_policy_reproduces_every_decision() {
    let cases: [(&str, Option<&'static str>); 6] = [
        ("How long does shipping take to Bangkok?", None),
        ("Is the tee soft?", Some("Yes, it is 100% combed cotton.")),
        (
            "What fabric is the tee?",
            Some("It is a medium-weight 180 gsm fabric."),
        ),
        ("Where is my parcel SPE-1???!!!", None),
        ("Can I get a discount on the tee?", None),
        ("Thank you!", None),
    ];
    let policy = Settings::defaults().policy.defaults;
    let mut actions = Vec::new();
    for (n, (text, writer)) in cases.into_iter().enumerate() {
        let f = fixture().await;
        let message = f.say(&format!("m-{n}"), "nadia", text).await;
        let trace = f.run(&f.pipeline(writer), message).await;
        let evidence = evidence_from_trace(&trace).expect("a decided trace has evidence");
        let replayed = decide(&policy, &evidence, Utc::now());
        let stored: crate::domain::Action =
            serde_json::from_value(trace["action"].clone()).unwrap();
        assert_eq!(replayed.action, stored, "{text}: {trace:#}");
        assert_eq!(
            u8::from(replayed.layer),
            trace["layer"].as_u64().unwrap() as u8,
            "{text}"
        );
        actions.push(stored);
    }
    // The cases cover sending, drafting and handing over.
    for action in [
        crate::domain::Action::Send,
        crate::domain::Action::Draft,
        crate::domain::Action::Handoff,
    ] {
        assert!(
            actions.contains(&action),
            "{action:?} not covered: {actions:?}"
        );
    }
}
