//! A retraining interrupted by a restart is resumed: a correction the
//! previous run recorded but never decided is trained, measured and
//! decided once the server is back, with the real e5 model. On
//! PostgreSQL, a retraining claimed by another replica is left to it
//! until the claim is given back. Runs on SQLite and on PostgreSQL
//! (`KEDAI_TEST_STORE`).

use std::time::Duration;

use kedai::domain::MessageId;
use kedai::learning::claim::retraining_timer;
use kedai::store::learning::NewLearnedExemplar;
use serde_json::Value;
use tempfile::TempDir;

use crate::learning::{learning_spawn, read_as, versions, MISREAD, MISREAD_AGAIN, TARGET};

#[tokio::test]
async fn a_correction_left_pending_by_a_crashed_run_is_trained_and_decided_after_restart() {
    let dir = TempDir::new().unwrap();
    let app = learning_spawn(dir.path()).start().await;
    let (before, misread) = read_as(&app, &app.token, "demo-web", MISREAD).await;
    assert_ne!(
        before, TARGET,
        "the fixture classifiers must misread the probe"
    );
    let token = app.token.clone();
    app.stop().await;

    // What a run killed between recording a correction and deciding it
    // leaves behind: the exemplar, pending, and no version.
    let settings = learning_spawn(dir.path()).settings;
    let opened = kedai::store::OpenedStore::open(&settings.store, kedai::store::Schema::Migrate)
        .await
        .unwrap();
    let store = opened.store();
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap().id;
    store
        .add_learned_exemplar(
            tenant,
            &NewLearnedExemplar {
                message_id: Some(misread.parse::<MessageId>().unwrap()),
                text: MISREAD.into(),
                label: TARGET.into(),
                previous_label: Some(before.clone()),
                kind: kedai::store::learning::ExemplarKind::Intent,
                route_intent: None,
                created_by: "user:agent".into(),
            },
        )
        .await
        .unwrap();
    // On PostgreSQL, another replica holds the tenant's retraining.
    let replicas = crate::helpers::on_postgres();
    if replicas {
        assert!(store
            .claim_timer(&retraining_timer(tenant), Duration::from_secs(600))
            .await
            .unwrap());
    }
    opened.close().await;

    let app = learning_spawn(dir.path()).start().await;
    if replicas {
        // The classifiers are trained once a message is read; a start and
        // two passes of the follow loop later, the claimed tenant is
        // still left to the replica that holds it.
        let _ = read_as(&app, &token, "demo-web", MISREAD_AGAIN).await;
        tokio::time::sleep(Duration::from_secs(12)).await;
        let heads = heads(&app, &token).await;
        assert_eq!(heads["versions"], serde_json::json!([]), "{heads:#}");
        assert_eq!(heads["exemplars"][0]["status"], "pending");
        // The replica holding it died: its claim is given back (or runs
        // out), and this one takes the retraining over.
        app.store
            .release_timer(&retraining_timer(tenant))
            .await
            .unwrap();
    }
    let heads = versions(&app, &token, 1).await;
    let version = &heads["versions"][0];
    assert_eq!(version["promoted"], true, "{heads:#}");
    assert_eq!(version["active"], true);
    assert_eq!(version["created_by"], "kedai:resumed");
    assert_eq!(heads["exemplars"][0]["status"], "live");
    assert_eq!(heads["using"], "tenant");
    let (after, _) = read_as(&app, &token, "demo-web", MISREAD_AGAIN).await;
    assert_eq!(after, TARGET, "the resumed correction is in use");
}

async fn heads(app: &crate::helpers::TestApp, token: &str) -> Value {
    app.client
        .get(app.url("/api/v1/learning/heads"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A retraining renews its claim while it runs: a claim renewed past its
/// first lease is not taken over when that lease ends, a claim given back
/// is taken at once, and one not renewed runs out. On SQLite (one server
/// per database) every claim succeeds.
#[tokio::test]
async fn a_renewed_retraining_claim_is_not_taken_over_when_its_first_lease_ends() {
    let dir = TempDir::new().unwrap();
    let app = crate::helpers::Spawn::new(&dir.path().join("data"))
        .start()
        .await;
    let store = &app.store;
    let tenant = store.tenant_by_name("demo").await.unwrap().unwrap().id;
    let timer = retraining_timer(tenant);
    let short = Duration::from_millis(300);
    let replicas = crate::helpers::on_postgres();

    assert!(store.claim_timer(&timer, short).await.unwrap());
    assert!(store
        .renew_timer(&timer, Duration::from_secs(600))
        .await
        .unwrap());
    tokio::time::sleep(short * 2).await;
    assert_eq!(
        store.claim_timer(&timer, short).await.unwrap(),
        !replicas,
        "renewed, the claim outlives its first lease"
    );
    store.release_timer(&timer).await.unwrap();
    assert!(
        store.claim_timer(&timer, short).await.unwrap(),
        "given back"
    );
    assert_eq!(
        store.claim_timer(&timer, short).await.unwrap(),
        !replicas,
        "held for its lease"
    );
    tokio::time::sleep(short * 2).await;
    assert!(
        store.claim_timer(&timer, short).await.unwrap(),
        "not renewed, it runs out"
    );
}
