//! Traces exported over OTLP/HTTP. A small in-test receiver decodes what
//! kedai sends (`opentelemetry-proto`), and one buyer message is followed
//! under one trace id from its ingest request through the queued job to
//! the reply's outbox delivery. On PostgreSQL (`KEDAI_TEST_STORE=postgres`)
//! two replicas share the database: one without models only ingests, the
//! other runs the reply pipeline, so the trace crosses replicas through the
//! job row; on SQLite one replica does both.
//!
//! Each replica runs on a tokio runtime of its own whose threads use a
//! subscriber with that replica's exporter (in one test process there is
//! one global subscriber, which the other tests leave alone); `kedai serve`
//! installs the same layer globally, which the second test checks with the
//! request span at the root of the trace and the flush at shutdown.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use axum::Router;
use kedai::telemetry::{Exporter, TelemetrySettings};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::Value;
use tempfile::TempDir;
use tokio::runtime::Runtime;
use tracing_subscriber::layer::SubscriberExt;

use crate::helpers::{message, on_postgres, postgres_for, Spawn, TestApp};

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Exported {
    name: String,
    trace_id: String,
    span_id: String,
    parent_id: String,
    instance: String,
    attributes: HashMap<String, String>,
}

impl Exported {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

fn text(value: &KeyValue) -> String {
    match value.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

/// An OTLP/HTTP receiver on port 0 keeping every span it is sent.
struct Receiver {
    base: String,
    spans: Arc<Mutex<Vec<Exported>>>,
    runtime: Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = Runtime::new().unwrap();
        let spans: Arc<Mutex<Vec<Exported>>> = Arc::default();
        let kept = spans.clone();
        let app = Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| {
                let kept = kept.clone();
                async move {
                    let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                    let mut kept = kept.lock().unwrap();
                    for resource in request.resource_spans {
                        let instance = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.instance.id")
                            .map(text)
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            kept.push(Exported {
                                name: span.name,
                                trace_id: hex::encode(&span.trace_id),
                                span_id: hex::encode(&span.span_id),
                                parent_id: hex::encode(&span.parent_span_id),
                                instance: instance.clone(),
                                attributes: span
                                    .attributes
                                    .iter()
                                    .map(|a| (a.key.clone(), text(a)))
                                    .collect(),
                            });
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        Vec::<u8>::new(),
                    )
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await });
        Receiver {
            base: format!("http://{address}"),
            spans,
            runtime,
        }
    }

    /// Waits until `found` picks what it needs out of the spans so far.
    fn wait_for<T>(&self, what: &str, found: impl Fn(&[Exported]) -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(value) = found(&self.spans.lock().unwrap()) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} among {:#?}",
                self.spans.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn telemetry_to(endpoint: &str) -> TelemetrySettings {
    let mut settings = kedai::config::Settings::defaults().telemetry;
    settings.otlp_endpoint = endpoint.into();
    settings.batch_delay_ms = 100;
    settings
}

/// A server on a runtime whose threads trace into an exporter of its own.
struct Replica {
    app: Option<TestApp>,
    exporter: Option<Exporter>,
    runtime: Runtime,
}

impl Replica {
    fn start(spawn: Spawn, instance: &str, endpoint: &str) -> Replica {
        let exporter = Exporter::start(&telemetry_to(endpoint), instance)
            .unwrap()
            .expect("an endpoint is configured");
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(tracing_subscriber::filter::LevelFilter::INFO)
                .with(exporter.layer()),
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // The thread keeps this subscriber for its whole life.
                std::mem::forget(tracing::dispatcher::set_default(&dispatch));
            })
            .build()
            .unwrap();
        let app = runtime.block_on(spawn.start());
        Replica {
            app: Some(app),
            exporter: Some(exporter),
            runtime,
        }
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().unwrap()
    }

    fn stop(mut self) {
        let app = self.app.take().unwrap();
        self.runtime.block_on(app.stop());
        self.exporter.take().unwrap().shutdown();
    }
}

/// The pipeline on the stand-ins with the demo orders, so an order-status
/// question is answered at layer 1 from the record (a reply that goes
/// through the outbox).
fn working(dir: &Path, store_url: Option<&str>, key: &Path) -> Spawn {
    let mut spawn = Spawn::stand_in(dir);
    spawn.settings.kb.demo_orders = "kb/orders/demo.jsonl".into();
    if let Some(url) = store_url {
        spawn.settings.store.url = kedai::config::StoreUrl(url.into());
    }
    spawn.settings.store.credentials_key_file = key.to_string_lossy().into_owned();
    spawn
}

const QUESTION: &str = "where is my order SPE-2611-00123";

#[test]
fn one_buyer_message_is_one_trace_from_ingest_through_the_job_to_the_outbox() {
    let receiver = Receiver::start();
    let shared = TempDir::new().unwrap();
    let key = shared.path().join("credentials.key");
    let url = postgres_for(shared.path());
    let worker = Replica::start(
        working(&shared.path().join("worker"), url.as_deref(), &key),
        "replica-worker",
        &receiver.base,
    );
    // On PostgreSQL a second replica without models takes the message; it
    // leases no jobs (no pipeline), so the worker replica must run it.
    let ingesting = url.as_ref().map(|url| {
        let mut spawn = Spawn::new(&shared.path().join("ingest"));
        spawn.settings.store.url = kedai::config::StoreUrl(url.clone());
        spawn.settings.store.credentials_key_file = key.to_string_lossy().into_owned();
        Replica::start(spawn, "replica-ingest", &receiver.base)
    });
    let front = ingesting.as_ref().unwrap_or(&worker);

    let body = message("demo-shopee", "trace-1", "shopee:nadia.r", QUESTION);
    let ack: Value = receiver.runtime.block_on(async {
        let response = front.app().ingest(&body).await;
        assert_eq!(response.status(), 202);
        response.json().await.unwrap()
    });
    let message_id = ack["message_id"].as_str().unwrap().to_owned();
    let conversation = ack["conversation_id"].as_str().unwrap().to_owned();

    let ingest = receiver.wait_for("message.ingest span", |spans| {
        spans
            .iter()
            .find(|s| s.name == "message.ingest" && s.attr("message_id") == message_id)
            .cloned()
    });
    let front_instance = if on_postgres() {
        "replica-ingest"
    } else {
        "replica-worker"
    };
    assert_eq!(ingest.instance, front_instance);
    assert_eq!(ingest.attr("shop"), "demo-shopee");
    assert_eq!(ingest.attr("platform"), "shopee");
    assert_eq!(ingest.attr("duplicate"), "false");
    let job = receiver.wait_for("queue.job span of the message", |spans| {
        spans
            .iter()
            .find(|s| {
                s.name == "queue.job"
                    && s.attr("message_id") == message_id
                    && s.attr("kind") == "inbound_message"
            })
            .cloned()
    });
    assert_eq!(job.trace_id, ingest.trace_id, "the job continues the trace");
    assert_eq!(
        job.parent_id, ingest.span_id,
        "queued inside the ingest span"
    );
    assert_eq!(job.instance, "replica-worker");
    assert_eq!(job.attr("conversation_id"), conversation);
    assert_eq!(job.attr("outcome"), "done");
    assert_eq!(job.attr("layer"), "1", "{job:#?}");
    assert_eq!(job.attr("action"), "Send");

    let delivery = receiver.wait_for("outbox.deliver span of the reply", |spans| {
        spans
            .iter()
            .find(|s| s.name == "outbox.deliver" && s.attr("conversation_id") == conversation)
            .cloned()
    });
    assert_eq!(delivery.trace_id, ingest.trace_id, "the delivery too");
    assert_eq!(delivery.parent_id, job.span_id, "written by the job's run");
    assert_eq!(delivery.attr("kind"), "reply");
    assert!(!delivery.attr("outcome").is_empty(), "{delivery:#?}");

    // The buyer's words are nowhere in what left the process.
    for span in receiver.spans.lock().unwrap().iter() {
        for value in span.attributes.values() {
            assert!(!value.contains("where is my order"), "{span:#?}");
        }
    }
    if let Some(replica) = ingesting {
        replica.stop();
    }
    worker.stop();
}

/// `kedai serve` with `KEDAI__TELEMETRY__OTLP_ENDPOINT` set exports the
/// spans of its requests, continuing a caller's W3C context, and sends
/// the last batch when it stops on SIGTERM (the batch delay is far longer
/// than the test, so only the flush at shutdown can deliver them).
#[test]
fn serve_exports_its_spans_and_flushes_them_on_shutdown() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let receiver = Receiver::start();
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_kedai"));
    command
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("KEDAI__TELEMETRY__OTLP_ENDPOINT", &receiver.base)
        .env("KEDAI__TELEMETRY__BATCH_DELAY_MS", "600000")
        .env("KEDAI__SERVER__INSTANCE", "it-serve")
        .env("KEDAI__MODELS__FETCH_ON_START", "false")
        .env("KEDAI__MODELS__REQUIRED", "false")
        .env("KEDAI__KB__DEMO_DIR", "")
        .env("KEDAI__KB__DEMO_ORDERS", "")
        .env("KEDAI__LOG__FILTER", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = postgres_for(&data) {
        command.env("KEDAI__STORE__URL", url);
    }
    let mut child = command.spawn().expect("kedai serve starts");
    let stdout = child.stdout.take().unwrap();
    let base = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("kedai is listening on ")
                .map(|a| a.trim().to_owned())
        })
        .expect("the server announces its address");
    let token = std::fs::read_to_string(data.join("demo-token")).unwrap();
    let caller_trace = "0af7651916cd43dd8448eb211c80319c";
    receiver.runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = client
            .get(format!("{base}/healthz"))
            .header(
                "traceparent",
                format!("00-{caller_trace}-b7ad6b7169203331-01"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let ack = client
            .post(format!("{base}/api/v1/messages"))
            .bearer_auth(token.trim())
            .json(&message(
                "demo-web",
                "serve-1",
                "web:ana",
                "Do you ship to Bali?",
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(ack.status(), 202);
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        receiver.spans.lock().unwrap().is_empty(),
        "nothing is sent before the batch is due"
    );
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert!(child.wait().unwrap().success());

    let spans = receiver.spans.lock().unwrap().clone();
    let health = spans
        .iter()
        .find(|s| s.attr("http.route") == "/healthz")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(
        health.trace_id, caller_trace,
        "the caller's trace continues"
    );
    assert_eq!(health.parent_id, "b7ad6b7169203331");
    assert_eq!(health.instance, "it-serve");
    let ingest = spans
        .iter()
        .find(|s| s.name == "message.ingest")
        .unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(ingest.attr("shop"), "demo-web");
    let request = spans
        .iter()
        .find(|s| s.span_id == ingest.parent_id)
        .unwrap_or_else(|| panic!("the ingest's request span: {spans:#?}"));
    assert_eq!(request.name, "POST /api/v1/messages", "named by its route");
    assert_eq!(request.attr("http.route"), "/api/v1/messages");
    assert_eq!(request.attr("http.response.status_code"), "202");
    assert_eq!(request.trace_id, ingest.trace_id);
    assert!(spans
        .iter()
        .all(|s| !s.attributes.values().any(|v| v.contains("Bali"))));
}

/// A malformed endpoint stops every command at start, naming the key; with
/// no endpoint at all no exporter exists (and so no span leaves the
/// process, and `telemetry::current_traceparent` stores nothing: its unit
/// test).
#[test]
fn a_bad_endpoint_is_refused_and_no_endpoint_exports_nothing() {
    let dir = TempDir::new().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kedai"))
        .arg("--data-dir")
        .arg(dir.path())
        .arg("migrate")
        .env("KEDAI__TELEMETRY__OTLP_ENDPOINT", "collector:4318")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("telemetry.otlp_endpoint"), "{stderr}");

    if std::env::var_os(kedai::telemetry::OTEL_ENDPOINT_VAR).is_none() {
        let settings = kedai::config::Settings::defaults().telemetry;
        assert!(Exporter::start(&settings, "none").unwrap().is_none());
    }
}
