//! `kedai bench replies`: how long kedai takes from acknowledging a buyer
//! message to storing its reply decision, over HTTP, against a fresh
//! `kedai serve` with the models and the demo shops.
//!
//! Cases (the `kedai eval replies` format) are sent one after another; for
//! each, the conversation is polled until the decision on that message
//! exists, and the latency is the decision's `created_at` minus the
//! message's `received_at`, both server timestamps, so how often the client
//! polls does not change the figure. Each conversation is resolved before
//! the next case, so cases that share a buyer start fresh. A case's history
//! is not replayed: only its last message is sent. After the last case the
//! bench waits for the server's queue to drain (the follow-up jobs that add
//! translations and summaries to drafts and handoffs), reading the queue
//! counts `/readyz` reports.
//!
//! This module knows the public API only; the throwaway server lives in
//! `server`, the case file format in `pipeline::evaluate`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::Method;
use chrono::{DateTime, Utc};

use super::client::{BenchClient, Call};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::server::{self, BenchServer, Endpoint, ServerSetup};
use super::Output;
use crate::config::Settings;
use crate::pipeline::evaluate::{self, percentile, ReplyCase};

/// Longest wait for one message's decision; drafts take seconds.
const DECISION_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the queue is read while follow-ups run (they take seconds).
const FOLLOW_UP_POLL: Duration = Duration::from_millis(250);
const WARM_UP_TEXT: &str = "Hello, is this shop open today?";

#[derive(Debug, clap::Args)]
pub struct RepliesArgs {
    /// Cases, one JSON object per line, in the format of `kedai eval
    /// replies`. Relative paths, like the server's `kb.demo_dir` and
    /// `kb.demo_orders` (`kb/...`), resolve from the current directory:
    /// run it from the kedai checkout, as `kedai serve`.
    #[arg(long, value_name = "FILE", default_value = "kb/eval/replies.jsonl")]
    pub cases: PathBuf,
    /// Only the first N cases.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Milliseconds between polls of a conversation for its decision.
    #[arg(long, value_name = "MS", default_value_t = 25, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub poll_ms: u64,
    /// Longest wait, after the last case, for the follow-up jobs to finish.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub follow_up_timeout_secs: u64,
}

#[derive(Deserialize)]
struct Ack {
    message_id: String,
    conversation_id: String,
}

#[derive(Deserialize)]
struct Conversation {
    messages: Vec<Message>,
    decisions: Vec<Decision>,
}

#[derive(Deserialize)]
struct Message {
    id: String,
    received_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Decision {
    message_id: String,
    layer: u8,
    action: String,
    trace: serde_json::Value,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct ReadinessReport {
    queue: Option<QueueCounts>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
struct QueueCounts {
    queued: u64,
    leased: u64,
    dead: u64,
}

/// One case's decision and its latency.
#[derive(Debug, Clone, Serialize)]
struct CaseLatency {
    id: String,
    answer_kind: String,
    layer: u8,
    action: String,
    /// Decision `created_at` minus message `received_at`.
    ms: f64,
    /// Whether the decision queued a follow-up job.
    follow_up: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
struct KindLatency {
    answer_kind: String,
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct FollowUps {
    /// Decisions that queued a follow-up.
    queued: usize,
    /// Seconds from the last case's decision being read to an empty queue;
    /// `None` when the timeout came first.
    done_after_secs: Option<f64>,
    /// Jobs still queued or running when the wait ended.
    pending: u64,
    /// Jobs that failed for good (dead-lettered).
    dead: u64,
    timeout_secs: u64,
}

#[derive(Debug, Serialize)]
struct RepliesReport {
    benchmark: &'static str,
    cases_file: String,
    cases: usize,
    poll_ms: u64,
    by_answer_kind: Vec<KindLatency>,
    follow_ups: FollowUps,
    results: Vec<CaseLatency>,
}

pub(super) async fn run(
    args: RepliesArgs,
    settings: &Settings,
    output: Output,
    config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mut cases = evaluate::read_cases(&args.cases)?;
    if let Some(limit) = args.limit {
        cases.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    if cases.is_empty() {
        bail!("{} holds no cases", args.cases.display());
    }
    let demo_dir = settings.kb.demo_dir.trim();
    if !demo_dir.is_empty() && !std::path::Path::new(demo_dir).is_dir() {
        bail!(
            "the demo knowledge base {demo_dir:?} (kb.demo_dir) is not a folder from {}; \
             run this from the kedai checkout or set KEDAI__KB__DEMO_DIR",
            std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    let client = server::bench_client(settings)?;
    eprintln!("starting kedai serve with the models and the demo shops...");
    let server = BenchServer::start(&client, ServerSetup::Demo, config).await?;
    eprintln!(
        "kedai ready on {} with data in {}",
        server.endpoint().base,
        server.data_dir().display()
    );
    let api = Api {
        client: &client,
        endpoint: server.endpoint(),
    };
    let measured = measure(&api, &cases, &args, output).await;
    if let Err(err) = server.stop(server::stop_grace(settings)).await {
        eprintln!("note: {err:#}");
    }
    let (results, follow_ups) = measured?;
    let report = RepliesReport {
        benchmark: "replies",
        cases_file: args.cases.display().to_string(),
        cases: results.len(),
        poll_ms: args.poll_ms,
        by_answer_kind: by_answer_kind(&results),
        follow_ups,
        results,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Human => print!("{}", table(&report)),
    }
    Ok(())
}

async fn measure(
    api: &Api<'_>,
    cases: &[ReplyCase],
    args: &RepliesArgs,
    output: Output,
) -> anyhow::Result<(Vec<CaseLatency>, FollowUps)> {
    let poll = Duration::from_millis(args.poll_ms);
    let tag = format!("{:08x}", rand::random::<u32>());
    // The understand stage trains and caches fill on the first message; a
    // server has done that long before its buyers write.
    let warm_up = Outbound {
        shop: &api.endpoint.shop,
        buyer: "bench:warm-up",
        text: WARM_UP_TEXT,
        external_id: format!("bench-{tag}-warm-up"),
    };
    api.decide(&warm_up, poll)
        .await
        .context("the warm-up message")?;

    let mut results = Vec::with_capacity(cases.len());
    for (n, case) in cases.iter().enumerate() {
        let text = if case.message.trim().is_empty() {
            "(empty)"
        } else {
            case.message.as_str()
        };
        let outbound = Outbound {
            shop: &case.shop,
            buyer: &case.buyer,
            text,
            external_id: format!("bench-{tag}-{n}"),
        };
        let result = api
            .decide(&outbound, poll)
            .await
            .with_context(|| format!("case {}", case.id))?;
        if output == Output::Human {
            eprintln!(
                "{:>4}/{} {:<36} {:<16} {:>9.1} ms",
                n + 1,
                cases.len(),
                case.id,
                result.answer_kind,
                result.ms
            );
        }
        results.push(CaseLatency {
            id: case.id.clone(),
            ..result
        });
    }

    let follow_ups = results.iter().filter(|r| r.follow_up).count();
    if output == Output::Human {
        eprintln!(
            "waiting up to {}s for {follow_ups} follow-ups...",
            args.follow_up_timeout_secs
        );
    }
    let timeout = Duration::from_secs(args.follow_up_timeout_secs);
    let (done_after, counts) = api.wait_for_empty_queue(timeout).await?;
    Ok((
        results,
        FollowUps {
            queued: follow_ups,
            done_after_secs: done_after.map(|d| d.as_secs_f64()),
            pending: counts.queued + counts.leased,
            dead: counts.dead,
            timeout_secs: args.follow_up_timeout_secs,
        },
    ))
}

/// One buyer message to send.
struct Outbound<'a> {
    shop: &'a str,
    buyer: &'a str,
    text: &'a str,
    external_id: String,
}

struct Api<'a> {
    client: &'a BenchClient,
    endpoint: &'a Endpoint,
}

impl Api<'_> {
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let mut call = Call::new(method.clone(), format!("{}{path}", self.endpoint.base))
            .bearer(&self.endpoint.token);
        if let Some(body) = &body {
            call = call.json(body);
        }
        let response = self
            .client
            .send(call)
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = response.status;
        let text = response.text();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text)
            .with_context(|| format!("{method} {path}: unexpected response {text}"))
    }

    /// Sends the message, waits for its decision, resolves the conversation,
    /// and returns the decision's latency (with no case id yet).
    async fn decide(&self, outbound: &Outbound<'_>, poll: Duration) -> anyhow::Result<CaseLatency> {
        let ack: Ack = self
            .call(
                Method::POST,
                "/api/v1/messages",
                Some(serde_json::json!({
                    "shop": outbound.shop,
                    "external_id": outbound.external_id,
                    "buyer": {"id": outbound.buyer},
                    "text": outbound.text,
                })),
            )
            .await?;
        let path = format!("/api/v1/conversations/{}", ack.conversation_id);
        let deadline = Instant::now() + DECISION_TIMEOUT;
        let (conversation, decision) = loop {
            let mut conversation: Conversation = self.call(Method::GET, &path, None).await?;
            let found = conversation
                .decisions
                .iter()
                .position(|d| d.message_id == ack.message_id);
            if let Some(index) = found {
                let decision = conversation.decisions.swap_remove(index);
                break (conversation, decision);
            }
            if Instant::now() >= deadline {
                bail!(
                    "no decision on message {} within {}s",
                    ack.message_id,
                    DECISION_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(poll).await;
        };
        let message = conversation
            .messages
            .iter()
            .find(|m| m.id == ack.message_id)
            .with_context(|| format!("message {} is not in {path}", ack.message_id))?;
        let ms = (decision.created_at - message.received_at)
            .num_microseconds()
            .map_or(f64::INFINITY, |us| us as f64 / 1000.0);
        self.call::<serde_json::Value>(
            Method::PUT,
            &format!("{path}/status"),
            Some(serde_json::json!({"status": "resolved"})),
        )
        .await?;
        Ok(CaseLatency {
            id: String::new(),
            answer_kind: decision.trace["answer_kind"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            layer: decision.layer,
            action: decision.action,
            ms,
            follow_up: decision.trace["follow_up"]["state"].as_str() == Some("queued"),
        })
    }

    /// Reads the queue counts from `/readyz` until nothing is queued or
    /// running, or `timeout` passes; returns how long that took (`None` on
    /// timeout) and the last counts.
    async fn wait_for_empty_queue(
        &self,
        timeout: Duration,
    ) -> anyhow::Result<(Option<Duration>, QueueCounts)> {
        let started = Instant::now();
        loop {
            let counts = self.queue_counts().await?;
            if counts.queued + counts.leased == 0 {
                return Ok((Some(started.elapsed()), counts));
            }
            if started.elapsed() >= timeout {
                return Ok((None, counts));
            }
            tokio::time::sleep(FOLLOW_UP_POLL).await;
        }
    }

    /// `/readyz` answers 503 with the same report when not ready, so the
    /// body is read whatever the status.
    async fn queue_counts(&self) -> anyhow::Result<QueueCounts> {
        let url = format!("{}/readyz", self.endpoint.base);
        let body = self
            .client
            .send(Call::get(&url).bearer(&self.endpoint.operator))
            .await
            .with_context(|| format!("GET {url}"))?
            .text();
        let report: ReadinessReport = serde_json::from_str(&body)
            .with_context(|| format!("GET {url}: unexpected response {body}"))?;
        report
            .queue
            .with_context(|| format!("GET {url} reports no queue (the store is unavailable)"))
    }
}

fn by_answer_kind(results: &[CaseLatency]) -> Vec<KindLatency> {
    let mut kinds: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for result in results {
        kinds
            .entry(&result.answer_kind)
            .or_default()
            .push(result.ms);
    }
    kinds
        .into_iter()
        .map(|(kind, mut ms)| {
            ms.sort_by(f64::total_cmp);
            KindLatency {
                answer_kind: kind.to_string(),
                n: ms.len(),
                p50_ms: percentile(&ms, 50.0),
                p95_ms: percentile(&ms, 95.0),
                max_ms: ms.last().copied().unwrap_or_default(),
            }
        })
        .collect()
}

fn table(report: &RepliesReport) -> String {
    let mut out = format!(
        "{} cases from {}, acknowledgement to stored decision (server timestamps)\n\n",
        report.cases, report.cases_file
    );
    out.push_str(&format!(
        "| {:<16} | {:>4} | {:>9} | {:>9} | {:>9} |\n",
        "answer kind", "n", "p50 ms", "p95 ms", "max ms"
    ));
    out.push_str(&format!(
        "|{:-<18}|{:->6}|{:->11}|{:->11}|{:->11}|\n",
        "", "", "", "", ""
    ));
    for kind in &report.by_answer_kind {
        out.push_str(&format!(
            "| {:<16} | {:>4} | {:>9.1} | {:>9.1} | {:>9.1} |\n",
            kind.answer_kind, kind.n, kind.p50_ms, kind.p95_ms, kind.max_ms
        ));
    }
    let f = &report.follow_ups;
    out.push_str(&format!("\nfollow-ups queued: {}; ", f.queued));
    match f.done_after_secs {
        Some(secs) => out.push_str(&format!("all done {secs:.1} s after the last case")),
        None => out.push_str(&format!(
            "{} jobs still pending after {} s",
            f.pending, f.timeout_secs
        )),
    }
    out.push_str(&format!("; dead jobs: {}\n", f.dead));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(kind: &str, ms: f64) -> CaseLatency {
        CaseLatency {
            id: format!("{kind}-{ms}"),
            answer_kind: kind.into(),
            layer: 1,
            action: "send".into(),
            ms,
            follow_up: false,
        }
    }

    #[test]
    fn latencies_are_summarised_per_answer_kind() {
        let mut results: Vec<CaseLatency> = (1..=20).map(|ms| case("faq", ms as f64)).collect();
        results.push(case("draft", 3000.0));
        results.push(case("draft", 1000.0));
        let kinds = by_answer_kind(&results);
        assert_eq!(
            kinds,
            [
                KindLatency {
                    answer_kind: "draft".into(),
                    n: 2,
                    p50_ms: 3000.0,
                    p95_ms: 3000.0,
                    max_ms: 3000.0
                },
                KindLatency {
                    answer_kind: "faq".into(),
                    n: 20,
                    p50_ms: 11.0,
                    p95_ms: 19.0,
                    max_ms: 20.0
                },
            ]
        );
    }

    #[test]
    fn the_table_says_when_follow_ups_did_not_finish() {
        let report = RepliesReport {
            benchmark: "replies",
            cases_file: "cases.jsonl".into(),
            cases: 1,
            poll_ms: 25,
            by_answer_kind: by_answer_kind(&[case("handoff", 12.5)]),
            follow_ups: FollowUps {
                queued: 1,
                done_after_secs: None,
                pending: 1,
                dead: 0,
                timeout_secs: 5,
            },
            results: vec![case("handoff", 12.5)],
        };
        let table = table(&report);
        assert!(
            table.contains("| handoff          |    1 |      12.5 |"),
            "{table}"
        );
        assert!(table.contains("1 jobs still pending after 5 s"), "{table}");
    }
}
