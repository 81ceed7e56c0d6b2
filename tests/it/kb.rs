//! The knowledge base end to end: the demo import on first start, search
//! over HTTP with component scores, CRUD with versions and audit events,
//! tenant isolation, bad input, index rebuilds after crashes, the command
//! line, and cross-lingual retrieval with the real multilingual-e5 model.
//!
//! Plumbing tests use `HashingEmbedder` (spelling-based vectors); the
//! `real_e5_*` tests load the model from the bundle.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use kedai::kb::HashingEmbedder;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::helpers::{Spawn, TestApp};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kb")
        .join(name)
}

/// A server whose demo tenant starts with the `shop` fixture.
async fn shop_app(dir: &Path, embedder: bool) -> TestApp {
    let mut spawn = Spawn::new(dir);
    spawn.settings.kb.demo_dir = fixture("shop").to_string_lossy().into_owned();
    if embedder {
        spawn.kb_embedder = Some(Arc::new(HashingEmbedder::new(256)));
    }
    spawn.start().await
}

async fn search(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/kb/search"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn search_ok(app: &TestApp, body: Value) -> Value {
    let response = search(app, &app.token, body.clone()).await;
    assert_eq!(response.status(), 200, "{body}");
    response.json().await.unwrap()
}

fn ids(results: &Value) -> Vec<String> {
    results["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}:{}",
                h["kind"].as_str().unwrap(),
                h["id"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn the_demo_folder_is_imported_on_first_start_and_searchable_with_component_scores() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let list = app.get_json("/api/v1/kb/entries").await;
    let entries = list["entries"].as_array().unwrap();
    assert_eq!(
        entries.len(),
        8 + 2 + 3 + 1,
        "faq + products + shipping + policy"
    );

    let results = search_ok(&app, json!({"query": "how many days to return an item"})).await;
    assert_eq!(results["mode"], "hybrid");
    assert!(results["degraded"].is_null());
    let top = &results["hits"][0];
    assert_eq!(
        (top["kind"].as_str(), top["id"].as_str()),
        (Some("faq"), Some("returns-window"))
    );
    assert_eq!(top["bm25"]["rank"], 1);
    assert!(top["dense"]["rank"].as_u64().is_some(), "{top}");
    assert!(top["fields"]["answer"]
        .as_str()
        .unwrap()
        .contains("15 days"));

    let policy = search_ok(
        &app,
        json!({"query": "refund original payment method", "kinds": ["policy"]}),
    )
    .await;
    assert_eq!(policy["hits"][0]["section"], "Refunds");
    assert_eq!(policy["hits"][0]["title"], "Returns and refunds - Refunds");
    assert!(ids(&policy).iter().all(|id| id.starts_with("policy:")));

    let shipping = search_ok(
        &app,
        json!({"query": "delivery time to Brazil", "top_k": 1}),
    )
    .await;
    assert_eq!(ids(&shipping), ["shipping:br-correios-economy"]);
    assert_eq!(shipping["hits"][0]["fields"]["max_days"], 25);

    let thai = search_ok(&app, json!({"query": "ส่งด่วนกี่วัน", "mode": "bm25"})).await;
    assert_eq!(ids(&thai)[0], "faq:kirim-cepat-th", "Thai bigrams");

    // A second start with the kb already there imports nothing again.
    app.stop().await;
    let again = shop_app(dir.path(), true).await;
    let audit = again
        .store
        .audit_log(demo_tenant(&again).await, 500)
        .await
        .unwrap();
    let created = audit
        .iter()
        .filter(|a| a.event.action == "kb.created")
        .count();
    assert_eq!(created, 14);
}

async fn demo_tenant(app: &TestApp) -> kedai::domain::TenantId {
    app.store.tenant_by_name("demo").await.unwrap().unwrap().id
}

#[tokio::test]
async fn product_hits_carry_variants_stock_and_the_variants_the_question_names() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let results = search_ok(
        &app,
        json!({"query": "is the red oversized tee in XL in stock?", "kinds": ["product"]}),
    )
    .await;
    let hit = &results["hits"][0];
    assert_eq!(hit["id"], "tee-ovs-01");
    assert_eq!(hit["matched_variants"], json!(["TEE-OVS-01-RED-XL"]));
    let variants = hit["fields"]["variants"].as_array().unwrap();
    let red_xl = variants
        .iter()
        .find(|v| v["sku"] == "TEE-OVS-01-RED-XL")
        .unwrap();
    assert_eq!(red_xl["stock"], 0);
    assert_eq!(red_xl["options"]["size"], "XL");
    assert_eq!(hit["fields"]["ships_from"], "Guangzhou, CN");
}

#[tokio::test]
async fn entries_are_created_versioned_deleted_and_audited_through_the_api() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let url = app.url("/api/v1/kb/entries/faq/gift-wrap");
    let put = |body: Value| {
        app.client
            .put(&url)
            .bearer_auth(&app.token)
            .json(&body)
            .send()
    };
    let body = json!({"questions": ["Do you offer gift wrapping?"], "answer": "Gift wrapping costs 1 USD.", "lang": "en"});
    let created = put(body.clone()).await.unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(
        (created["version"].as_i64(), created["entry"]["id"].as_str()),
        (Some(1), Some("gift-wrap"))
    );

    let found = search_ok(&app, json!({"query": "gift wrapping", "top_k": 1})).await;
    assert_eq!(
        ids(&found),
        ["faq:gift-wrap"],
        "a write is searchable at once"
    );

    let same = put(body).await.unwrap();
    assert_eq!(same.status(), 200);
    assert_eq!(same.json::<Value>().await.unwrap()["version"], 1, "no-op");
    let edited = put(json!({"questions": ["Do you offer gift wrapping?"], "answer": "Gift wrapping is free in December.", "lang": "en"}))
        .await
        .unwrap();
    assert_eq!(edited.json::<Value>().await.unwrap()["version"], 2);
    let found = search_ok(&app, json!({"query": "gift wrapping", "top_k": 1})).await;
    assert!(found["hits"][0]["text"]
        .as_str()
        .unwrap()
        .contains("December"));

    let deleted = app
        .client
        .delete(&url)
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(
        app.get("/api/v1/kb/entries/faq/gift-wrap").await.status(),
        404
    );
    let found = search_ok(&app, json!({"query": "gift wrapping"})).await;
    assert!(!ids(&found).contains(&"faq:gift-wrap".to_string()));

    let history = app
        .get_json("/api/v1/kb/entries/faq/gift-wrap/history")
        .await;
    let versions = history["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[2]["entry"].is_null(), "deletion recorded");
    assert!(versions[0]["actor"].as_str().unwrap().starts_with("token:"));

    let audit = app
        .store
        .audit_log(demo_tenant(&app).await, 10)
        .await
        .unwrap();
    let actions: Vec<&str> = audit
        .iter()
        .filter(|a| a.event.subject_id == "gift-wrap")
        .map(|a| a.event.action.as_str())
        .collect();
    assert_eq!(actions, ["kb.deleted", "kb.updated", "kb.created"]);
}

#[tokio::test]
async fn a_search_never_returns_another_tenants_entries() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let other = app
        .store
        .create_tenant(&kedai::domain::TenantName::parse("other").unwrap())
        .await
        .unwrap();
    let (_, other_token) = kedai::auth::issue_token(app.store.as_ref(), other.id, "t")
        .await
        .unwrap();

    let empty = search(
        &app,
        &other_token,
        json!({"query": "return an item within 15 days"}),
    )
    .await;
    assert_eq!(empty.status(), 200);
    assert_eq!(empty.json::<Value>().await.unwrap()["hits"], json!([]));

    let put = app
        .client
        .put(app.url("/api/v1/kb/entries/faq/returns-window"))
        .bearer_auth(&other_token)
        .json(&json!({"questions": ["Returns?"], "answer": "Other shop: no returns at all.", "lang": "en"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "same id, other tenant: a new entry");
    let theirs: Value = search(&app, &other_token, json!({"query": "returns"}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&theirs), ["faq:returns-window"]);
    assert!(theirs["hits"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Other shop"));
    let ours = search_ok(&app, json!({"query": "returns", "top_k": 50})).await;
    for hit in ours["hits"].as_array().unwrap() {
        assert!(
            !hit["text"].as_str().unwrap().contains("Other shop"),
            "{hit}"
        );
    }
    let listed = app
        .client
        .get(app.url("/api/v1/kb/entries"))
        .bearer_auth(&other_token)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(listed["entries"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bad_searches_and_entries_get_clear_errors_and_change_nothing() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let cases = [
        (json!({"query": "   "}), "query must not be empty"),
        (
            json!({"query": "a".repeat(10_000)}),
            "at most 1000 characters, got 10000",
        ),
        (
            json!({"query": "hi", "top_k": 80}),
            "top_k must be between 1 and 50, got 80",
        ),
        (
            json!({"query": "hi", "mode": "magic"}),
            "mode must be hybrid, bm25 or dense",
        ),
        (
            json!({"query": "hi", "kinds": ["recipes"]}),
            "kind must be faq",
        ),
    ];
    for (body, expected) in cases {
        let response = search(&app, &app.token, body.clone()).await;
        assert_eq!(response.status(), 422, "{body}");
        let message = response.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(expected), "{message}");
    }
    let punctuation = search_ok(&app, json!({"query": "?!", "mode": "bm25"})).await;
    assert_eq!(punctuation["hits"], json!([]));

    let revision = |r: Value| r["revision"].as_i64().unwrap();
    let before = revision(search_ok(&app, json!({"query": "returns"})).await);
    let puts = [
        (
            "faq/x",
            json!({"questions": ["q"], "answer": "a", "lang": "xx"}),
            "unknown language \"xx\"",
        ),
        (
            "faq/Bad_Id",
            json!({"questions": ["q"], "answer": "a", "lang": "en"}),
            "lowercase",
        ),
        (
            "faq/x",
            json!({"id": "y", "questions": ["q"], "answer": "a", "lang": "en"}),
            "body describes \"y\"",
        ),
        (
            "product/cap",
            json!({"sku": "CAP", "name": "Cap", "price": 5.0, "currency": "USD", "lang": "en",
            "variants": [{"sku": "CAP-1", "stock": -3}]}),
            "stock",
        ),
    ];
    for (path, body, expected) in puts {
        let response = app
            .client
            .put(app.url(&format!("/api/v1/kb/entries/{path}")))
            .bearer_auth(&app.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{path} {body}");
        let message = response.json::<Value>().await.unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains(expected), "{message}");
    }
    let unknown_kind = app.get("/api/v1/kb/entries/recipes/x").await;
    assert_eq!(unknown_kind.status(), 404);
    assert_eq!(
        revision(search_ok(&app, json!({"query": "returns"})).await),
        before
    );
}

#[tokio::test]
async fn without_the_embedding_model_hybrid_degrades_to_bm25_and_dense_is_refused() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), false).await;
    let results = search_ok(&app, json!({"query": "cash on delivery"})).await;
    assert_eq!(results["mode"], "bm25");
    assert!(results["degraded"].as_str().unwrap().contains("not loaded"));
    assert_eq!(ids(&results)[0], "faq:cod-available");
    assert!(results["hits"][0]["dense"].is_null());
    let dense = search(&app, &app.token, json!({"query": "cash", "mode": "dense"})).await;
    assert_eq!(dense.status(), 503);
    let body: Value = dense.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
}

#[tokio::test]
async fn a_missing_stale_or_half_written_index_is_rebuilt_from_the_store() {
    let dir = TempDir::new().unwrap();
    let app = shop_app(dir.path(), true).await;
    let tenant = demo_tenant(&app).await;
    search_ok(&app, json!({"query": "warranty"})).await;
    let store = app.store.clone();
    app.stop().await;
    drop(store);

    let tenant_dir = dir.path().join("kb").join(tenant.to_string());
    let generations: Vec<PathBuf> = std::fs::read_dir(&tenant_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(generations.len(), 1, "{generations:?}");
    // A crash mid-write: the manifest is torn and a build was left behind.
    std::fs::write(
        generations[0].join("manifest.json"),
        b"{\"format\": 1, \"ten",
    )
    .unwrap();
    std::fs::create_dir_all(tenant_dir.join(".tmp-crashed/tantivy")).unwrap();

    let app = shop_app(dir.path(), true).await;
    let results = search_ok(&app, json!({"query": "warranty on the earbuds"})).await;
    assert_eq!(ids(&results)[0], "faq:warranty-electronics");
    app.stop().await;

    // Missing altogether.
    std::fs::remove_dir_all(dir.path().join("kb")).unwrap();
    let app = shop_app(dir.path(), true).await;
    let results = search_ok(&app, json!({"query": "warranty on the earbuds"})).await;
    assert_eq!(ids(&results)[0], "faq:warranty-electronics");

    // Stale: the store moved on behind the server's back (another process).
    let other = kedai::store::OpenedStore::open(
        &crate::helpers::test_settings(dir.path()).store,
        kedai::store::Schema::Current,
    )
    .await
    .unwrap();
    let entry = kedai::kb::KbEntry::from_json(
        kedai::store::KbKind::Faq,
        json!({"id": "loyalty", "questions": ["Do you have a loyalty programme?"], "answer": "Every 10th order ships free.", "lang": "en"}),
    )
    .unwrap();
    other
        .kb()
        .kb_apply(
            tenant,
            &[kedai::store::KbChange::Put(entry.to_document())],
            "cli",
        )
        .await
        .unwrap();
    let results = search_ok(&app, json!({"query": "loyalty programme", "top_k": 1})).await;
    assert_eq!(ids(&results), ["faq:loyalty"]);
}

fn kedai_cli(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("KEDAI__LOG__FILTER", "warn")
        .env("KEDAI__MODELS__FETCH_ON_START", "false")
        .output()
        .expect("kedai runs")
}

#[test]
fn the_cli_imports_all_or_nothing_and_searches() {
    let dir = TempDir::new().unwrap();
    assert!(kedai_cli(dir.path(), &["migrate"]).status.success());
    let tenant = kedai_cli(dir.path(), &["--json", "tenant", "create", "acme"]);
    assert!(tenant.status.success());

    let broken = fixture("broken");
    let failed = kedai_cli(
        dir.path(),
        &["kb", "import", broken.to_str().unwrap(), "--tenant", "acme"],
    );
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("products.jsonl:3:") && stderr.contains("stock"),
        "{stderr}"
    );
    let listed = kedai_cli(dir.path(), &["--json", "kb", "list", "--tenant", "acme"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["entries"], json!([]), "nothing half-imported");

    let shop = fixture("shop");
    let imported = kedai_cli(
        dir.path(),
        &[
            "--json",
            "kb",
            "import",
            shop.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
    );
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let imported: Value = serde_json::from_slice(&imported.stdout).unwrap();
    assert_eq!(imported["applied"]["created"], 14);
    let again = kedai_cli(
        dir.path(),
        &[
            "--json",
            "kb",
            "import",
            shop.to_str().unwrap(),
            "--tenant",
            "acme",
        ],
    );
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        (
            again["applied"]["unchanged"].as_u64(),
            again["applied"]["created"].as_u64()
        ),
        (Some(14), Some(0))
    );

    let found = kedai_cli(
        dir.path(),
        &[
            "--json",
            "kb",
            "search",
            "cash on delivery",
            "--tenant",
            "acme",
            "--mode",
            "bm25",
        ],
    );
    assert!(
        found.status.success(),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    let found: Value = serde_json::from_slice(&found.stdout).unwrap();
    assert_eq!(found["hits"][0]["id"], "cod-available");
    assert_eq!(found["hits"][0]["bm25"]["rank"], 1);

    let empty = kedai_cli(
        dir.path(),
        &["kb", "search", "", "--tenant", "acme", "--mode", "bm25"],
    );
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("query must not be empty"));
}

mod real_e5 {
    //! Cross-lingual retrieval with multilingual-e5-small from the bundle.

    use super::*;
    use kedai::inference::TextEmbedder;
    use kedai::models::{self, FetchPolicy, PrepareMode, Progress};

    fn e5() -> Arc<TextEmbedder> {
        let mode = PrepareMode {
            fetch: FetchPolicy::FetchMissing,
            progress: Progress::Lines,
        };
        let model = models::resolve(
            &kedai::config::Settings::defaults().models,
            "bundle:multilingual-e5-small",
            mode,
        )
        .expect("e5 prepared");
        Arc::new(TextEmbedder::load(&model, &candle_core::Device::Cpu).expect("e5 loads"))
    }

    #[tokio::test]
    async fn real_e5_questions_in_other_languages_find_the_english_entries_and_back() {
        let dir = TempDir::new().unwrap();
        let mut spawn = Spawn::new(dir.path());
        spawn.settings.kb.demo_dir = fixture("shop").to_string_lossy().into_owned();
        spawn.kb_embedder = Some(e5());
        let app = spawn.start().await;
        let cases = [
            (
                "Berapa hari saya bisa mengembalikan barang?",
                "faq:returns-window",
            ),
            ("สามารถจ่ายเงินปลายทางได้ไหม", "faq:cod-available"),
            ("Đơn hàng của tôi đang ở đâu?", "faq:order-tracking"),
            ("O fone de ouvido tem garantia?", "faq:warranty-electronics"),
            ("¿Qué talla debo elegir?", "faq:size-guide"),
            (
                "Can I exchange the t-shirt for another size?",
                "faq:troca-tamanho",
            ),
            ("How do I use the shop coupon?", "faq:kupon-toko"),
        ];
        let mut misses = Vec::new();
        for (query, expected) in cases {
            // Dense alone must put the entry in the top 3; fused with BM25,
            // which matches only noise across languages, in the top 5.
            for (mode, top_k) in [("dense", 3), ("hybrid", 5)] {
                let results =
                    search_ok(&app, json!({"query": query, "mode": mode, "top_k": top_k})).await;
                let found = ids(&results);
                eprintln!("{mode:<6} {query}: {found:?}");
                if !found.contains(&expected.to_string()) {
                    misses.push(format!("{mode} {query:?}: {found:?}, expected {expected}"));
                }
            }
        }
        assert!(misses.is_empty(), "{misses:#?}");
    }
}
