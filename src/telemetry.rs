//! Tracing setup: structured logs to stderr as text or JSON, filtered by
//! `log.filter` unless `RUST_LOG` says otherwise, and, when an OTLP endpoint
//! is configured (`[telemetry]`), the same spans exported over OTLP/HTTP
//! (protobuf) to a collector, Jaeger or Tempo. Stdout stays free for the
//! output of commands (tables, `--json`).
//!
//! Also the W3C trace context that follows one buyer message across
//! replicas: [`current_traceparent`] is what the store writes beside a job
//! or an outbox row, and [`continue_trace`] makes the span of whoever
//! leases that row a child of it. This module knows nothing of the store,
//! HTTP routes or the pipeline; it owns no span names but its own.
//!
//! Export never blocks the request path: finished spans go into a bounded
//! queue (`telemetry.max_queued_spans`; beyond it spans are dropped and
//! counted by the SDK) that a thread of its own sends in batches; requests
//! to the collector run on a one-thread runtime of the exporter's own, so a
//! slow collector holds up neither tokio's workers nor shutdown for longer
//! than `telemetry.export_timeout_secs`. Only spans are exported, never log
//! events, so nothing but the fields kedai puts on its spans (ids, names,
//! layers, outcomes; never buyer text or credentials) leaves the process.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// The standard variable naming an OTLP endpoint, honoured when
/// `telemetry.otlp_endpoint` is empty.
pub const OTEL_ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Trace export (`[telemetry]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans go
    /// to its `/v1/traces`. Empty: `OTEL_EXPORTER_OTLP_ENDPOINT`, and with
    /// neither, nothing is exported.
    pub otlp_endpoint: String,
    /// `service.name` of every span; replicas differ by
    /// `service.instance.id`, the `server.instance` name.
    pub service_name: String,
    /// Finished spans waiting for export; beyond, new ones are dropped.
    pub max_queued_spans: usize,
    /// Milliseconds between batches.
    pub batch_delay_ms: u64,
    /// Seconds one export request (and the flush at shutdown) may take.
    pub export_timeout_secs: u64,
}

/// Why trace export could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot start the OTLP exporter: {0}")]
    Exporter(String),
}

impl TelemetrySettings {
    /// Where spans are sent: the configured endpoint, else the standard
    /// environment variable's, with `/v1/traces` appended as OTLP/HTTP
    /// prescribes for a base URL. `None`: export is off.
    pub fn traces_url(&self) -> Result<Option<reqwest::Url>, TelemetryError> {
        let configured = self.otlp_endpoint.trim();
        let (key, base) = if configured.is_empty() {
            match std::env::var(OTEL_ENDPOINT_VAR) {
                Ok(value) if !value.trim().is_empty() => (OTEL_ENDPOINT_VAR, value),
                _ => return Ok(None),
            }
        } else {
            ("telemetry.otlp_endpoint", configured.to_owned())
        };
        let base = base.trim();
        let url = reqwest::Url::parse(base).map_err(|e| {
            TelemetryError::Invalid(format!(
                "{key} must be an http(s) URL such as http://collector:4318, got {base:?} ({e})"
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(TelemetryError::Invalid(format!(
                "{key} must be an http(s) URL such as http://collector:4318, got {base:?}"
            )));
        }
        let traces = format!("{}/v1/traces", base.trim_end_matches('/'));
        reqwest::Url::parse(&traces)
            .map(Some)
            .map_err(|e| TelemetryError::Invalid(format!("{key}: {e}")))
    }

    pub fn validate(&self) -> Result<(), String> {
        self.traces_url().map_err(|e| e.to_string())?;
        if self.service_name.trim().is_empty() {
            return Err("telemetry.service_name must not be empty".into());
        }
        for (key, value) in [
            ("telemetry.max_queued_spans", self.max_queued_spans as u64),
            ("telemetry.batch_delay_ms", self.batch_delay_ms),
            ("telemetry.export_timeout_secs", self.export_timeout_secs),
        ] {
            if value == 0 {
                return Err(format!("{key} must be > 0, got 0"));
            }
        }
        Ok(())
    }
}

/// The OTLP trace exporter of one process: a tracer provider with a batch
/// processor. Flushed and stopped by [`Exporter::shutdown`] or on drop.
pub struct Exporter {
    provider: Option<SdkTracerProvider>,
}

impl Exporter {
    /// Starts exporting if an endpoint is configured; `None` otherwise.
    /// `instance` becomes `service.instance.id`.
    pub fn start(
        settings: &TelemetrySettings,
        instance: &str,
    ) -> Result<Option<Exporter>, TelemetryError> {
        let Some(url) = settings.traces_url()? else {
            return Ok(None);
        };
        let timeout = Duration::from_secs(settings.export_timeout_secs);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(ExportClient::new(timeout)?)
            .with_endpoint(url.as_str())
            .with_timeout(timeout)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queued_spans)
            .with_max_export_batch_size(settings.max_queued_spans.min(512))
            .with_scheduled_delay(Duration::from_millis(settings.batch_delay_ms))
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = Resource::builder()
            .with_service_name(settings.service_name.trim().to_owned())
            .with_attributes([
                KeyValue::new("service.instance.id", instance.to_owned()),
                KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
            ])
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .build();
        Ok(Some(Exporter {
            provider: Some(provider),
        }))
    }

    /// The `tracing` layer that turns spans (not events) into OTLP spans.
    pub fn layer<S>(&self) -> Box<dyn Layer<S> + Send + Sync + 'static>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
    {
        let tracer = self
            .provider
            .as_ref()
            .map(|p| p.tracer("kedai"))
            .expect("the provider lives until shutdown");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_threads(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| meta.is_span()))
            .boxed()
    }

    /// Sends what is queued (waiting up to the export timeout) and stops.
    /// Blocks: call it outside async code, or from `spawn_blocking`.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(err) = provider.shutdown() {
                tracing::warn!(error = %err, "could not flush the last spans to the OTLP endpoint");
            }
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the global subscriber: logs, and trace export when configured.
/// A second call (tests) installs nothing. Keep the returned exporter for
/// the life of the process; dropping it flushes the last spans.
pub fn init(
    log: &LogSettings,
    telemetry: &TelemetrySettings,
    instance: &str,
) -> Result<Option<Exporter>, TelemetryError> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let exporter = Exporter::start(telemetry, instance)?;
    let otel = exporter.as_ref().map(|e| e.layer());
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if installed.is_ok() {
        if let Some(url) = telemetry.traces_url().ok().flatten() {
            tracing::info!(endpoint = %url, instance, "exporting traces over OTLP");
        }
    }
    Ok(exporter)
}

/// The W3C `traceparent` of the current span, when it belongs to an
/// exported trace; what the store keeps beside a job or an outbox row.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&context, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` (not yet entered) a child of the span `traceparent` names,
/// so work leased from the queue or the outbox, on any replica, continues
/// the trace of the request that stored it. A malformed or missing value
/// leaves `span` the root of a trace of its own.
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent else {
        return;
    };
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Makes `span` a child of the W3C context in a request's headers, when a
/// caller (a gateway, a test) sent one.
pub fn continue_from_headers(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    continue_trace(
        span,
        headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok()),
    );
}

/// `message.ingest`: one inbound message stored, from the API or a
/// platform's push; the job it queues continues its trace. Callers record
/// `message_id`, `conversation_id` and `duplicate` once stored.
pub fn ingest_span(tenant: &str, shop: &str, platform: &str) -> tracing::Span {
    tracing::info_span!(
        "message.ingest",
        tenant,
        shop,
        platform,
        message_id = tracing::field::Empty,
        conversation_id = tracing::field::Empty,
        duplicate = tracing::field::Empty,
    )
}

/// What a leased row tells its span about itself.
#[derive(Debug, Clone, Copy)]
pub struct Leased<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub attempt: u32,
    pub tenant: &'a str,
    pub conversation_id: &'a str,
    pub message_id: &'a str,
    /// The W3C context stored with the row.
    pub traceparent: Option<&'a str>,
}

/// `queue.job`: one run of a leased job, a child of the span that queued
/// it (whichever replica that was). The pipeline records `layer` and
/// `action` on it; the queue records `outcome`.
pub fn job_span(job: Leased<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "queue.job",
        id = job.id,
        kind = job.kind,
        attempt = job.attempt,
        tenant = job.tenant,
        conversation_id = job.conversation_id,
        message_id = job.message_id,
        layer = tracing::field::Empty,
        action = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    continue_trace(&span, job.traceparent);
    span
}

/// `outbox.deliver`: one attempt at delivering an outbox row (a reply to
/// a marketplace, an event to an integration), a child of the job run
/// that wrote it. The outbox records `outcome`.
pub fn outbox_span(item: Leased<'_>) -> tracing::Span {
    let span = tracing::info_span!(
        "outbox.deliver",
        outbox_id = item.id,
        kind = item.kind,
        attempt = item.attempt,
        tenant = item.tenant,
        conversation_id = item.conversation_id,
        message_id = item.message_id,
        outcome = tracing::field::Empty,
    );
    continue_trace(&span, item.traceparent);
    span
}

/// The exporter's HTTP client: kedai's own reqwest (rustls, no second
/// HTTP/TLS stack), its requests run on a one-thread runtime of its own.
/// The SDK's batch thread awaits them from outside tokio, and a runtime of
/// our own keeps the export off the server's workers and alive while the
/// server shuts down.
#[derive(Debug, Clone)]
struct ExportClient {
    client: reqwest::Client,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl ExportClient {
    fn new(timeout: Duration) -> Result<ExportClient, TelemetryError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp-export")
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(ExportClient {
            client,
            runtime: Arc::new(runtime),
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let client = self.client.clone();
        let request: reqwest::Request = request.try_into()?;
        let sent = self.runtime.spawn(async move {
            let response = client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            // A receiver answers with a small protobuf; nothing kedai reads.
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = opentelemetry_http::Response::builder()
            .status(status)
            .body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(endpoint: &str) -> TelemetrySettings {
        TelemetrySettings {
            otlp_endpoint: endpoint.into(),
            service_name: "kedai".into(),
            max_queued_spans: 2048,
            batch_delay_ms: 1000,
            export_timeout_secs: 10,
        }
    }

    #[test]
    fn endpoints_get_the_traces_path_and_bad_ones_are_named() {
        for (endpoint, expected) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example.com/base",
                "https://otel.example.com/base/v1/traces",
            ),
        ] {
            let url = settings(endpoint).traces_url().unwrap().unwrap();
            assert_eq!(url.as_str(), expected, "{endpoint}");
        }
        for bad in ["collector:4318", "ftp://collector", "not a url", "http://"] {
            let err = settings(bad).validate().unwrap_err();
            assert!(err.contains("telemetry.otlp_endpoint"), "{bad}: {err}");
        }
    }

    #[test]
    fn no_traceparent_without_an_exported_trace() {
        let span = tracing::info_span!("untraced");
        let _entered = span.enter();
        assert_eq!(current_traceparent(), None);
    }

    #[test]
    fn a_stored_traceparent_becomes_the_parent_of_the_next_span() {
        let exporter = Exporter::start(&settings("http://127.0.0.1:9"), "test")
            .unwrap()
            .unwrap();
        let subscriber = tracing_subscriber::registry().with(exporter.layer());
        tracing::subscriber::with_default(subscriber, || {
            let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            {
                let span = tracing::info_span!("queue.job");
                continue_trace(&span, Some(stored));
                let _entered = span.enter();
                let carried = current_traceparent().expect("a traceparent");
                assert!(
                    carried.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                    "{carried}"
                );
                assert!(!carried.contains("00f067aa0ba902b7"), "a new span id");
            }
            let orphan = tracing::info_span!("queue.job");
            continue_trace(&orphan, Some("garbage"));
            let _entered = orphan.enter();
            let fresh = current_traceparent().expect("a root of its own");
            assert!(
                !fresh.contains("4bf92f3577b34da6a3ce929d0e0e4736"),
                "{fresh}"
            );
        });
    }
}
