//! `kedai bench ingest`: how fast kedai acknowledges inbound messages, and
//! how many per second it keeps acknowledging.
//!
//! The generator is open-loop: sends are scheduled on a fixed clock, one
//! every `1/rate` seconds, each in a task of its own, and latency is counted
//! from the scheduled time rather than from when the request actually left.
//! A server that stalls therefore shows up as high latency, never as a
//! politely lower offered rate (no coordinated omission). Each run starts
//! with a warm-up at full rate whose latencies are not recorded.
//!
//! This module owns the schedule and the HTTP traffic; the message texts live
//! in `messages`, the bookkeeping in `report`, the throwaway server in
//! `server`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::http::{Method, StatusCode};
use indicatif::{ProgressBar, ProgressStyle};

use super::client::{BenchClient, Call, ClientError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::messages::{GeneratorParams, MessageGenerator};
use super::report::{self, Failure, Medians, Outcome, Phase, RunRecorder, RunReport, Sample};
use super::server::{self, BenchServer, Endpoint, ServerSetup};
use super::Output;
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct IngestArgs {
    /// Messages offered per second, on a fixed clock
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub rate: u32,
    /// Seconds measured in each run
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Seconds sent at full rate before each run, not measured
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub warmup: u64,
    /// Base URL of a running kedai (http only); without it a fresh server is
    /// started in a temporary data directory and stopped afterwards
    #[arg(long, requires_all = ["token", "shop"])]
    pub url: Option<String>,
    /// API token of the tenant owning --shop (with --url)
    #[arg(long, requires = "url")]
    pub token: Option<String>,
    /// Shop the messages are addressed to (with --url)
    #[arg(long, requires = "url")]
    pub shop: Option<String>,
    /// Distinct buyers, hence conversations, to spread messages over
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub conversations: u32,
    /// Share of deliveries that repeat an earlier external_id, 0 to 1
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0, value_parser = parse_fraction)]
    pub duplicates: f64,
    /// Repeat the measurement this many times and report the medians
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
}

fn parse_fraction(raw: &str) -> Result<f64, String> {
    let value: f64 = raw
        .parse()
        .map_err(|_| format!("expected a number between 0 and 1, got {raw:?}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("must be between 0 and 1, got {value}"))
    }
}

impl IngestArgs {
    fn remote_endpoint(&self) -> anyhow::Result<Option<Endpoint>> {
        let (Some(url), Some(token), Some(shop)) = (&self.url, &self.token, &self.shop) else {
            return Ok(None);
        };
        let parsed: axum::http::Uri = url
            .parse()
            .with_context(|| format!("--url {url:?} is not a URL"))?;
        if parsed.scheme_str() != Some("http") || parsed.host().is_none() {
            bail!(
                "--url must be a plain http URL such as http://127.0.0.1:8080, got {url:?}; \
                 put the bench next to the server or behind its TLS proxy"
            );
        }
        Ok(Some(Endpoint {
            base: url.trim_end_matches('/').to_string(),
            token: token.clone(),
            // Remote servers: queue counts are not read.
            operator: String::new(),
            shop: shop.clone(),
        }))
    }
}

/// When each send is due, counted from the start of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Schedule {
    rate: u32,
    warmup_sends: u64,
    measured_sends: u64,
}

impl Schedule {
    fn new(rate: u32, warmup_secs: u64, duration_secs: u64) -> Schedule {
        Schedule {
            rate,
            warmup_sends: warmup_secs * u64::from(rate),
            measured_sends: duration_secs * u64::from(rate),
        }
    }

    fn total_sends(&self) -> u64 {
        self.warmup_sends + self.measured_sends
    }

    /// Computed from the index rather than accumulated, so rounding never
    /// drifts the offered rate.
    fn due(&self, index: u64) -> Duration {
        let nanos = u128::from(index) * 1_000_000_000 / u128::from(self.rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    fn phase(&self, index: u64) -> Phase {
        if index < self.warmup_sends {
            Phase::Warmup
        } else {
            Phase::Measured
        }
    }

    fn measurement_start(&self) -> Duration {
        self.due(self.warmup_sends)
    }

    fn window(&self) -> Duration {
        self.due(self.total_sends()) - self.measurement_start()
    }
}

/// Everything a send task needs, cheap to clone.
#[derive(Clone)]
struct Target {
    client: BenchClient,
    messages_url: String,
    token: String,
}

#[derive(Deserialize)]
struct Ack {
    #[serde(default)]
    duplicate: bool,
}

#[derive(Deserialize)]
struct ConversationPage {
    conversations: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct IngestReport<'a> {
    benchmark: &'static str,
    target: &'a str,
    server: &'static str,
    offered_rate: u32,
    duration_secs: u64,
    warmup_secs: u64,
    conversations: u32,
    duplicates: f64,
    runs: &'a [RunReport],
    median: Option<Medians>,
    /// Conversations on the first page listed after the runs, when the
    /// server was started here.
    visible_conversations: Option<usize>,
    errors: u64,
}

pub(super) async fn run(
    args: IngestArgs,
    settings: &Settings,
    output: Output,
    config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let remote = args.remote_endpoint()?;
    let client = server::bench_client(settings)?;

    let (endpoint, server) = match remote {
        Some(endpoint) => (endpoint, None),
        None => {
            eprintln!("starting a fresh kedai server (no model downloads)...");
            let server = BenchServer::start(&client, ServerSetup::IngestOnly, config).await?;
            eprintln!(
                "kedai listening on {} with data in {}",
                server.endpoint().base,
                server.data_dir().display()
            );
            (server.endpoint().clone(), Some(server))
        }
    };

    let measured = measure_runs(&client, &endpoint, &args, output).await;
    let visible = match (&server, &measured) {
        (Some(_), Ok(_)) => Some(count_visible_conversations(&client, &endpoint).await),
        _ => None,
    };
    if let Some(server) = server {
        let stopped = server.stop(server::stop_grace(settings)).await;
        if let Err(err) = stopped {
            eprintln!("note: {err:#}");
        }
    }
    let runs = measured?;
    let (visible, visibility_error) = match visible {
        Some(Ok(count)) => (Some(count), None),
        Some(Err(err)) => (None, Some(err)),
        None => (None, None),
    };

    let errors: u64 = runs.iter().map(RunReport::all_errors).sum();
    let acked: u64 = runs.iter().map(|r| r.acked).sum();
    let report = IngestReport {
        benchmark: "ingest",
        target: &endpoint.base,
        server: if args.url.is_none() {
            "started"
        } else {
            "external"
        },
        offered_rate: args.rate,
        duration_secs: args.duration,
        warmup_secs: args.warmup,
        conversations: args.conversations,
        duplicates: args.duplicates,
        runs: &runs,
        median: report::medians(&runs),
        visible_conversations: visible,
        errors,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Human => print_human(&report),
    }

    if errors > 0 {
        bail!("{errors} deliveries failed");
    }
    if let Some(err) = visibility_error {
        return Err(err.context("cannot list conversations after the runs"));
    }
    if visible == Some(0) && acked > 0 {
        bail!("{acked} messages were acknowledged but no conversation is listed");
    }
    Ok(())
}

async fn measure_runs(
    client: &BenchClient,
    endpoint: &Endpoint,
    args: &IngestArgs,
    output: Output,
) -> anyhow::Result<Vec<RunReport>> {
    let schedule = Schedule::new(args.rate, args.warmup, args.duration);
    let target = Target {
        client: client.clone(),
        messages_url: format!("{}/api/v1/messages", endpoint.base),
        token: endpoint.token.clone(),
    };
    let mut generator = MessageGenerator::new(GeneratorParams {
        shop: endpoint.shop.clone(),
        conversations: args.conversations,
        duplicates: args.duplicates,
        seed: rand::random(),
    });

    let mut reports = Vec::new();
    for run in 1..=args.runs {
        let progress = progress_bar(output, &schedule, format!("run {run}/{}", args.runs));
        let (recorder, returned) =
            measure_run(target.clone(), schedule, generator, progress.clone()).await?;
        generator = returned;
        progress.finish_and_clear();
        let report = recorder.finish(run, f64::from(args.rate), schedule.window());
        if output == Output::Human {
            eprintln!(
                "run {run}/{}: {:.1} acked/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
                args.runs,
                report.ack_rate,
                report.latency_ms.p50,
                report.latency_ms.p99,
                report.all_errors()
            );
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Sends one run's traffic and collects its samples. The clock is kept by a
/// blocking thread with `std::thread::sleep`, not by tokio's timer: tokio
/// rounds every deadline up to the next millisecond, which would add up to a
/// millisecond of the generator's own lateness to every sample.
async fn measure_run(
    target: Target,
    schedule: Schedule,
    mut generator: MessageGenerator,
    progress: ProgressBar,
) -> anyhow::Result<(RunRecorder, MessageGenerator)> {
    let (samples, mut received) = mpsc::unbounded_channel::<Sample>();
    let collector = tokio::spawn(async move {
        let mut recorder = RunRecorder::new();
        while let Some(sample) = received.recv().await {
            recorder.record(sample);
        }
        recorder
    });

    let runtime = tokio::runtime::Handle::current();
    let generator = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let measurement_start = start + schedule.measurement_start();
        for index in 0..schedule.total_sends() {
            let offset = schedule.due(index);
            let due = start + offset;
            let phase = schedule.phase(index);
            let delivery = generator.next_delivery();
            let request = Call::new(Method::POST, target.messages_url.clone())
                .bearer(&target.token)
                .json_bytes(delivery.body);
            let client = target.client.clone();
            let wait = due.saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }

            let samples = samples.clone();
            runtime.spawn(async move {
                let outcome = deliver(&client, request).await;
                let done = Instant::now();
                let _ = samples.send(Sample {
                    phase,
                    redelivery: delivery.redelivery,
                    outcome,
                    latency: done.saturating_duration_since(due),
                    completed_after: done.saturating_duration_since(measurement_start),
                });
            });

            if offset.as_secs() != progress.position() {
                progress.set_position(offset.as_secs());
                if phase == Phase::Measured {
                    progress.set_message("measuring");
                }
            }
        }
        progress.set_message("waiting for the last responses");
        generator
    })
    .await
    .context("the send scheduler panicked")?;
    let recorder = collector.await.context("the sample collector panicked")?;
    Ok((recorder, generator))
}

async fn deliver(client: &BenchClient, request: Call) -> Outcome {
    let response = match client.send(request).await {
        Ok(response) => response,
        Err(err) => return Outcome::Failed(transport_failure(&err)),
    };
    if response.status != StatusCode::ACCEPTED {
        return Outcome::Failed(Failure::Status(response.status.as_u16()));
    }
    match response.json::<Ack>() {
        Ok(ack) => Outcome::Acked {
            duplicate: ack.duplicate,
        },
        Err(_) => Outcome::Failed(Failure::UnreadableAck),
    }
}

fn transport_failure(err: &ClientError) -> Failure {
    match err {
        ClientError::Timeout(_) => Failure::Timeout,
        ClientError::Connect(_) => Failure::Connect,
        ClientError::Transport(_) | ClientError::Request(_) => Failure::Transport,
    }
}

async fn count_visible_conversations(
    client: &BenchClient,
    endpoint: &Endpoint,
) -> anyhow::Result<usize> {
    let url = format!(
        "{}/api/v1/conversations?shop={}&limit=50",
        endpoint.base, endpoint.shop
    );
    let response = client
        .send(Call::get(&url).bearer(&endpoint.token))
        .await
        .with_context(|| format!("GET {url} failed"))?;
    let status = response.status;
    let body = response.text();
    if status != StatusCode::OK {
        bail!("GET {url} answered {status}: {body}");
    }
    let page: ConversationPage = serde_json::from_str(&body)
        .with_context(|| format!("GET {url} answered an unexpected body: {body}"))?;
    Ok(page.conversations.len())
}

fn progress_bar(output: Output, schedule: &Schedule, prefix: String) -> ProgressBar {
    if output == Output::Json {
        return ProgressBar::hidden();
    }
    let total_secs = schedule.due(schedule.total_sends()).as_secs();
    let bar = ProgressBar::new(total_secs);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len}s {msg}")
            .expect("static progress template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar.set_message(if schedule.warmup_sends > 0 {
        "warming up"
    } else {
        "measuring"
    });
    bar
}

fn print_human(report: &IngestReport<'_>) {
    println!(
        "ingest: {} msg/s offered for {} s (+{} s warm-up) over {} conversations, {:.0}% redeliveries, against {} ({} server)",
        report.offered_rate,
        report.duration_secs,
        report.warmup_secs,
        report.conversations,
        report.duplicates * 100.0,
        report.target,
        report.server
    );
    println!();
    print!("{}", report::render_table(report.runs));
    let mut causes: std::collections::BTreeMap<&str, u64> = Default::default();
    for run in report.runs {
        for (cause, count) in &run.errors_by_cause {
            *causes.entry(cause.as_str()).or_default() += count;
        }
    }
    let warmup_errors: u64 = report.runs.iter().map(|r| r.warmup_errors).sum();
    if !causes.is_empty() || warmup_errors > 0 {
        let listed: Vec<String> = causes
            .iter()
            .map(|(cause, count)| format!("{cause}: {count}"))
            .collect();
        println!(
            "\nerrors while measuring: {}; during warm-up: {warmup_errors}",
            if listed.is_empty() {
                "none".to_string()
            } else {
                listed.join(", ")
            }
        );
    }
    if let Some(visible) = report.visible_conversations {
        println!("\nconversations listed afterwards (first page, limit 50): {visible}");
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn sends_are_due_on_a_fixed_clock() {
        let schedule = Schedule::new(200, 5, 60);
        assert_eq!(schedule.total_sends(), 13_000);
        assert_eq!(schedule.due(0), Duration::ZERO);
        assert_eq!(schedule.due(1), Duration::from_millis(5));
        assert_eq!(schedule.due(200), Duration::from_secs(1));
        assert_eq!(schedule.due(12_999), Duration::from_millis(64_995));
        assert_eq!(schedule.measurement_start(), Duration::from_secs(5));
        assert_eq!(schedule.window(), Duration::from_secs(60));
    }

    #[test]
    fn rates_that_do_not_divide_a_second_do_not_drift() {
        let schedule = Schedule::new(3, 0, 10);
        assert_eq!(schedule.due(1), Duration::from_nanos(333_333_333));
        assert_eq!(schedule.due(30), Duration::from_secs(10));
        assert_eq!(schedule.window(), Duration::from_secs(10));
    }

    #[test]
    fn warmup_sends_come_first_and_are_not_measured() {
        let schedule = Schedule::new(10, 2, 3);
        assert_eq!(schedule.phase(19), Phase::Warmup);
        assert_eq!(schedule.phase(20), Phase::Measured);
        assert_eq!(schedule.phase(49), Phase::Measured);
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: IngestArgs,
    }

    #[test]
    fn flags_parse_with_documented_defaults() {
        let cli = Cli::try_parse_from(["ingest"]).unwrap();
        assert_eq!(
            (cli.args.rate, cli.args.duration, cli.args.warmup),
            (200, 60, 5)
        );
        assert_eq!((cli.args.conversations, cli.args.runs), (500, 1));
        assert_eq!(cli.args.duplicates, 0.0);
        assert!(cli.args.remote_endpoint().unwrap().is_none());
    }

    #[test]
    fn a_remote_server_needs_token_and_shop_and_plain_http() {
        assert!(Cli::try_parse_from(["ingest", "--url", "http://h:1"]).is_err());
        assert!(Cli::try_parse_from(["ingest", "--token", "t"]).is_err());
        assert!(Cli::try_parse_from(["ingest", "--duplicates", "1.5"]).is_err());
        let cli = Cli::try_parse_from([
            "ingest",
            "--url",
            "http://h:1/",
            "--token",
            "t",
            "--shop",
            "s",
        ])
        .unwrap();
        assert_eq!(
            cli.args.remote_endpoint().unwrap().unwrap().base,
            "http://h:1"
        );
        let tls = Cli::try_parse_from([
            "ingest",
            "--url",
            "https://h:1",
            "--token",
            "t",
            "--shop",
            "s",
        ])
        .unwrap();
        assert!(tls.args.remote_endpoint().is_err());
    }
}
