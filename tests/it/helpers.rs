//! Starting kedai for a test and talking to it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kedai::config::Settings;
use kedai::engine::Engine;
use kedai::http::ModelReadiness;
use kedai::queue::JobHandler;
use kedai::startup::{Application, BuildOptions};
use kedai::store::Store;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The demo tenant's token (scope admin; demo-shopee, demo-lazada,
    /// demo-tiktok, demo-web).
    pub token: String,
    /// An operator token: readiness details, metrics, retraining.
    pub operator: String,
    /// `http://` and `server.metrics_listen`'s address, when set.
    pub metrics_base: Option<String>,
    pub store: Arc<dyn Store>,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Settings for a test server: port 0, the given data dir, no models, the
/// demo tenant and shops (without their knowledge base and orders).
pub fn test_settings(data_dir: &Path) -> Settings {
    let mut settings = Settings::defaults();
    settings.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.server.demo = true;
    settings.store.data_dir = data_dir.to_path_buf();
    if let Some(url) = postgres_for(data_dir) {
        settings.store.url = kedai::config::StoreUrl(url);
    }
    settings.models.fetch_on_start = false;
    settings.models.required = false;
    settings.models.recheck_secs = 0;
    settings.queue.poll_interval_ms = 50;
    settings.queue.backoff_base_ms = 20;
    settings.queue.backoff_max_ms = 100;
    settings.kb.demo_dir = String::new();
    settings.kb.demo_orders = String::new();
    // Translations ahead run in their own test; elsewhere they would take
    // the chat model from the test's own messages.
    settings.pipeline.prepare_translations_after_idle_secs = 0;
    settings
}

/// Whether this run tests the PostgreSQL store (`KEDAI_TEST_STORE=postgres`,
/// with the cluster's URL in `KEDAI_TEST_POSTGRES_URL`; `.ci/postgres`
/// starts one) rather than SQLite.
pub fn on_postgres() -> bool {
    std::env::var("KEDAI_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// On PostgreSQL, the URL of a database of this data directory's own,
/// created empty on first use: a server restarted on the same directory
/// finds the same database, and no two tests share one.
pub fn postgres_for(data_dir: &Path) -> Option<String> {
    use sha2::Digest;
    use sqlx::Connection;
    if !on_postgres() {
        return None;
    }
    let base = std::env::var("KEDAI_TEST_POSTGRES_URL")
        .expect("KEDAI_TEST_STORE=postgres needs KEDAI_TEST_POSTGRES_URL (see .ci/postgres)");
    let digest = sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes());
    let name: String = format!("kedai_it_{}", hex::encode(&digest[..10]));
    let (root, _) = base.rsplit_once('/').expect("a URL with a database name");
    let url = format!("{root}/{name}");
    let create = format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
    );
    // Its own thread and runtime: callers may be inside a runtime or not.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&base)
                .await
                .expect("the test PostgreSQL cluster accepts connections");
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1")
                    .bind(&name)
                    .fetch_optional(&mut conn)
                    .await
                    .unwrap();
            if exists.is_none() {
                sqlx::query(&create).execute(&mut conn).await.unwrap();
            }
        })
    })
    .join()
    .unwrap();
    Some(url)
}

pub struct Spawn {
    pub settings: Settings,
    pub handler: Option<Arc<dyn JobHandler>>,
    pub models: ModelReadiness,
    pub kb_embedder: Option<Arc<dyn kedai::kb::Embedder>>,
    pub engine: Option<Engine>,
}

impl Spawn {
    pub fn new(data_dir: &Path) -> Spawn {
        Spawn {
            settings: test_settings(data_dir),
            handler: None,
            models: ModelReadiness::NotRequired("tests run without models".into()),
            kb_embedder: None,
            engine: None,
        }
    }

    pub async fn start(self) -> TestApp {
        let app = Application::build(
            self.settings,
            BuildOptions {
                models: self.models,
                handler: self.handler,
                kb_embedder: self.kb_embedder,
                engine: self.engine,
                schema: kedai::store::Schema::Migrate,
            },
        )
        .await
        .expect("application builds");
        let base = format!("http://{}", app.address());
        let metrics_base = app.metrics_address().map(|a| format!("http://{a}"));
        let store = app.store();
        let token = match &app.demo {
            Some(demo) => demo.token.clone(),
            None => {
                let tenant = store.tenant_by_name("demo").await.unwrap().unwrap();
                kedai::auth::issue_token(store.as_ref(), tenant.id, "test")
                    .await
                    .unwrap()
                    .1
            }
        };
        let operator = kedai::auth::issue_operator_token(store.as_ref(), "test", None)
            .await
            .unwrap()
            .1;
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        TestApp {
            base,
            client: reqwest::Client::new(),
            token,
            operator,
            metrics_base,
            store,
            shutdown,
            handle: Some(handle),
        }
    }
}

/// A few exemplars per intent, so a stand-in server trains its
/// classifiers in moments rather than on the whole shipped set.
const SMALL_INTENTS: &[(&str, &[&str])] = &[
    (
        "greeting",
        &["hi", "hello", "good morning", "hey there", "halo kak"],
    ),
    (
        "order_status",
        &[
            "where is my order",
            "has my parcel shipped",
            "when will my package arrive",
            "tracking number please",
            "paket saya sampai mana",
        ],
    ),
    (
        "refund_request",
        &[
            "i want my money back",
            "please refund me",
            "refund this order",
            "give me a refund",
            "minta refund",
        ],
    ),
    (
        "product_specs",
        &[
            "is it waterproof",
            "what material is it",
            "how big is the box",
            "does it have bluetooth",
            "berapa ukurannya",
        ],
    ),
    (
        "thanks",
        &[
            "thank you",
            "thanks a lot",
            "many thanks",
            "terima kasih",
            "thx",
        ],
    ),
];

/// Writes [`SMALL_INTENTS`] as an exemplar folder under `dir`.
pub fn small_intents(dir: &Path) -> std::path::PathBuf {
    let intents = dir.join("intents");
    std::fs::create_dir_all(&intents).unwrap();
    let lines: Vec<String> = SMALL_INTENTS
        .iter()
        .flat_map(|(label, texts)| {
            texts
                .iter()
                .map(move |text| json!({"text": text, "label": label}).to_string())
        })
        .collect();
    std::fs::write(intents.join("en.jsonl"), lines.join("\n") + "\n").unwrap();
    intents
}

/// Settings for a server on the stand-in models (`stand-in:hashing`,
/// `stand-in:echo`) with a small exemplar set, so the whole reply pipeline
/// runs without model files; the model cache is a folder of `dir`.
pub fn stand_in_settings(dir: &Path) -> Settings {
    let mut settings = test_settings(&dir.join("data"));
    settings.models.embedding = "stand-in:hashing".into();
    settings.models.chat = "stand-in:echo".into();
    settings.models.dir = dir.join("models").to_string_lossy().into_owned();
    settings.pipeline.intents_dir = small_intents(dir).to_string_lossy().into_owned();
    settings.pipeline.sentiment_dir = String::new();
    settings.pipeline.exemplars_poll_secs = 0;
    settings
}

impl Spawn {
    /// A server on the stand-in models with the whole reply pipeline.
    pub fn stand_in(dir: &Path) -> Spawn {
        let settings = stand_in_settings(dir);
        let prepared = kedai::models::prepare(
            &settings.models,
            kedai::models::PrepareMode::from_settings(
                &settings.models,
                kedai::models::Progress::Silent,
            ),
        )
        .expect("stand-ins need no files");
        Spawn {
            settings,
            handler: None,
            models: ModelReadiness::Ready(prepared),
            kb_embedder: None,
            engine: None,
        }
    }
}

/// A fresh server in a fresh temporary directory.
pub async fn spawn_app() -> (TestApp, TempDir) {
    let dir = TempDir::new().unwrap();
    let app = Spawn::new(dir.path()).start().await;
    (app, dir)
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn ingest(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/messages"))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    /// GET with the operator token.
    pub async fn get_as_operator(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(&self.operator)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Stops the server as SIGKILL would: its tasks end where they are,
    /// leases held and nothing handed back.
    pub async fn kill(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }

    /// Stops the server as SIGTERM would, and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("server stops within 30 s")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A valid inbound message for `shop`.
pub fn message(shop: &str, external_id: &str, buyer: &str, text: &str) -> Value {
    json!({
        "shop": shop,
        "external_id": external_id,
        "buyer": {"id": buyer, "name": format!("Buyer {buyer}")},
        "text": text,
        "sent_at": "2026-11-21T10:15:00Z",
    })
}

/// Waits until `check` holds, polling; panics after `timeout`.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `/metrics` text without the `instance` label every line carries, so a
/// test can look for a series by its own labels.
pub fn without_instance(metrics: &str) -> String {
    let mut out = String::with_capacity(metrics.len());
    let mut rest = metrics;
    while let Some(start) = rest.find("instance=\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "instance=\"".len()..];
        let end = after.find('"').map_or(after.len(), |e| e + 1);
        rest = after[end..].strip_prefix(',').unwrap_or(&after[end..]);
    }
    out.push_str(rest);
    out.replace("{}", "")
}

/// `kedai --data-dir <data_dir>`, on the test run's store: on PostgreSQL
/// the data directory's own database, as the servers of that directory use.
pub fn kedai_command(data_dir: &Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_kedai"));
    command.arg("--data-dir").arg(data_dir);
    if let Some(url) = postgres_for(data_dir) {
        command.env("KEDAI__STORE__URL", url);
    }
    command
}
