//! `kedai bench load`: many buyers writing at once, at a fixed rate, with
//! the mix a shop sees (mostly questions the knowledge base and orders
//! answer, some that need a person's review, a few that need a person now),
//! in several languages, with follow-up messages in conversations already
//! open; it reports how long each message waited for the AI's decision,
//! per layer, and how deep the queue grew.
//!
//! Messages come from a cases file in the `kedai eval replies` format,
//! drawn by the layer each case expects, so the offered mix is known; the
//! figures are reported by the layer kedai actually chose. The latency of a
//! message is its decision's `created_at` minus its `received_at`, both
//! server timestamps. With several `--rates`, each rate runs for
//! `--duration` seconds after the queue of the previous one drained, and
//! the report names the highest rate at which layer-1 answers stayed
//! within `--target-ms` at p95.
//!
//! Like the other benchmarks it knows only the public API: it drives a
//! running kedai (`--url`, `--token`) or starts a fresh one with the models
//! and the demo shops.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::http::Method;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::{BenchClient, Call};
use super::server::{self, BenchServer, Endpoint, ServerSetup};
use super::Output;
use crate::config::Settings;
use crate::pipeline::evaluate::{self, percentile, ReplyCase};

/// Longest wait for one message's decision before it counts as timed out.
const DECISION_TIMEOUT: Duration = Duration::from_secs(180);
/// How often the queue depth is sampled.
const QUEUE_SAMPLE: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Messages, one JSON object per line in the `kedai eval replies`
    /// format; drawn by their `expected_layer` (relative paths resolve
    /// from the current directory).
    #[arg(long, value_name = "FILE", default_value = "kb/eval/replies.jsonl")]
    pub cases: PathBuf,
    /// Orders in the demo format (`kedai orders import`): a drawn case whose
    /// buyer has orders here gets a copy of them for its synthetic buyer,
    /// stored through `POST /api/v1/orders` before the message is sent, so
    /// order questions are answered from records as for the real buyer.
    /// The copies' numbers end in the buyer's index, in the text too.
    #[arg(long, value_name = "FILE", default_value = "kb/orders/demo.jsonl")]
    pub orders: PathBuf,
    /// Conversations open at once (distinct buyers).
    #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conversations: u32,
    /// Messages per second; several (`1,2,5`) run one after another.
    #[arg(
        long,
        value_name = "R[,R...]",
        value_delimiter = ',',
        default_value = "5"
    )]
    pub rates: Vec<f64>,
    /// Seconds each rate runs.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub duration: u64,
    /// Offered shares of messages expecting layers 1, 2 and 3, in percent.
    #[arg(
        long,
        value_name = "L1,L2,L3",
        value_delimiter = ',',
        default_value = "70,20,10"
    )]
    pub mix: Vec<u32>,
    /// Share of messages sent into a conversation that already has one
    /// (a follow-up), in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub follow_ups: u32,
    /// Layer-1 p95 the report checks each rate against, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000.0)]
    pub target_ms: f64,
    /// Milliseconds between polls of a conversation for a decision.
    #[arg(long, value_name = "MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub poll_ms: u64,
    /// Longest wait between rates for the queue to drain.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    pub drain_timeout_secs: u64,
    /// Drive this running kedai (`http://host:port`) instead of starting one.
    #[arg(long, value_name = "URL", requires = "token")]
    pub url: Option<String>,
    /// A tenant token for `--url` (scopes: ingest and read).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KEDAI_BENCH_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// An operator token for `--url`, to sample the queue depth.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "KEDAI_BENCH_OPERATOR_TOKEN",
        hide_env_values = true
    )]
    pub operator_token: Option<String>,
    /// Seed of the message draw, for repeatable runs.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// The messages to draw from, by expected layer, each with its shop.
struct Pools {
    by_layer: [Vec<ReplyCase>; 3],
    shops: Vec<String>,
}

impl Pools {
    fn new(cases: Vec<ReplyCase>) -> anyhow::Result<Pools> {
        let mut by_layer: [Vec<ReplyCase>; 3] = Default::default();
        let mut shops: Vec<String> = Vec::new();
        for case in cases {
            if case.message.trim().is_empty() {
                continue;
            }
            if !shops.contains(&case.shop) {
                shops.push(case.shop.clone());
            }
            let layer = usize::from(case.expected_layer.clamp(1, 3)) - 1;
            by_layer[layer].push(case);
        }
        if by_layer.iter().all(Vec::is_empty) {
            bail!("the cases file holds no messages");
        }
        Ok(Pools { by_layer, shops })
    }

    /// A message for a conversation in `lang` expecting a layer drawn by
    /// `mix`: one in its language when there is one, else any.
    fn draw(&self, rng: &mut StdRng, mix: &[u32; 3], lang: &str) -> &ReplyCase {
        let total: u32 = mix.iter().sum::<u32>().max(1);
        let mut roll = rng.random_range(0..total);
        let mut layer = 0;
        for (i, share) in mix.iter().enumerate() {
            if roll < *share {
                layer = i;
                break;
            }
            roll -= share;
        }
        let pool = (0..3)
            .map(|k| &self.by_layer[(layer + k) % 3])
            .find(|p| !p.is_empty())
            .expect("some pool has cases");
        let same: Vec<&ReplyCase> = pool.iter().filter(|c| c.lang == lang).collect();
        if same.is_empty() {
            &pool[rng.random_range(0..pool.len())]
        } else {
            same[rng.random_range(0..same.len())]
        }
    }

    fn languages(&self) -> Vec<String> {
        let mut langs: Vec<String> = self
            .by_layer
            .iter()
            .flatten()
            .map(|c| c.lang.clone())
            .collect();
        langs.sort();
        langs.dedup();
        langs
    }
}

/// The orders of the cases' buyers, as `POST /api/v1/orders` bodies, by
/// (shop, buyer id).
struct CaseOrders(HashMap<(String, String), Vec<serde_json::Value>>);

impl CaseOrders {
    fn read(path: &std::path::Path) -> anyhow::Result<CaseOrders> {
        let mut by_buyer: HashMap<(String, String), Vec<serde_json::Value>> = HashMap::new();
        for (_, request) in crate::demo::order_requests(path, Utc::now())? {
            let Some(buyer) = &request.buyer else {
                continue;
            };
            let key = (request.shop.clone(), buyer.id.clone());
            by_buyer
                .entry(key)
                .or_default()
                .push(serde_json::to_value(&request)?);
        }
        Ok(CaseOrders(by_buyer))
    }

    /// Copies of `case`'s buyer's orders for synthetic buyer `buyer` (number
    /// `index`) in `shop`, and the case's text naming the copies' numbers.
    fn copies_for(
        &self,
        case: &ReplyCase,
        buyer: &str,
        index: usize,
        shop: &str,
    ) -> (Vec<serde_json::Value>, String) {
        let mut text = case.message.clone();
        let Some(orders) = self.0.get(&(case.shop.clone(), case.buyer.clone())) else {
            return (Vec::new(), text);
        };
        let copies = orders
            .iter()
            .map(|order| {
                let mut copy = order.clone();
                let number = order["order_number"].as_str().unwrap_or_default();
                let renamed = format!("{number}-L{index}");
                text = text.replace(number, &renamed);
                copy["order_number"] = renamed.into();
                copy["shop"] = shop.into();
                copy["buyer"]["id"] = buyer.into();
                copy
            })
            .collect();
        (copies, text)
    }
}

/// One buyer's conversation: its shop and language stay fixed.
struct Buyer {
    id: String,
    shop: String,
    lang: String,
    sent: u32,
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
    created_at: DateTime<Utc>,
    #[serde(default)]
    trace: serde_json::Value,
}

/// Whether the chat model wrote text for this decision while the buyer
/// waited (a reply, or the first translation of the seller's answer): the
/// trace then carries what the generation cost. Everything else comes from
/// records: the order, the catalogue, the seller's own words, stored
/// translations, templates.
fn written_now(trace: &serde_json::Value) -> bool {
    trace["generation"].is_object()
}

/// What happened to one message.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// `follow_up`: sent into a conversation that already had a message.
    /// `written`: the chat model wrote the answer's text for it.
    Decided {
        layer: u8,
        ms: f64,
        follow_up: bool,
        written: bool,
    },
    TimedOut,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
struct LayerLatency {
    layer: u8,
    n: usize,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct StepReport {
    rate: f64,
    duration_secs: u64,
    sent: usize,
    follow_ups: usize,
    decided: usize,
    timed_out: usize,
    failed: usize,
    by_layer: Vec<LayerLatency>,
    /// Layer-1 answers split by whether the message opened its
    /// conversation or followed one up: a follow-up waits for its
    /// conversation's earlier message (a draft, maybe) to be decided first.
    layer1_first_messages: Option<LayerLatency>,
    layer1_follow_ups: Option<LayerLatency>,
    /// Layer-1 answers split by where their text came from: records and
    /// the seller's own words, or the chat model writing (a reply, or a
    /// first translation of the seller's answer) while the buyer waits.
    layer1_from_records: Option<LayerLatency>,
    layer1_written: Option<LayerLatency>,
    /// Queued plus running jobs, sampled every second: the largest, and a
    /// sample every five seconds.
    queue_max: Option<u64>,
    queue_timeline: Vec<u64>,
    layer1_p95_within_target: bool,
    /// Seconds after the last message until the queue was empty again.
    drained_after_secs: Option<f64>,
}

#[derive(Debug, Serialize)]
struct LoadReport {
    benchmark: &'static str,
    cases_file: String,
    conversations: u32,
    mix_percent: [u32; 3],
    follow_up_percent: u32,
    target_ms: f64,
    steps: Vec<StepReport>,
    /// The highest rate whose layer-1 p95 stayed within the target.
    highest_rate_within_target: Option<f64>,
}

pub(super) async fn run(
    args: LoadArgs,
    settings: &Settings,
    output: Output,
    config: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let mix = match args.mix.as_slice() {
        [a, b, c] if a + b + c > 0 => [*a, *b, *c],
        _ => bail!("--mix takes three percentages, e.g. 70,20,10"),
    };
    if args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        bail!("--rates must be positive numbers of messages per second");
    }
    let pools = Pools::new(evaluate::read_cases(&args.cases)?)?;
    let orders = CaseOrders::read(&args.orders)
        .with_context(|| format!("reading {}", args.orders.display()))?;
    let client = server::bench_client(settings)?;
    let (server, endpoint) = match &args.url {
        Some(url) => (
            None,
            Endpoint {
                base: url.trim_end_matches('/').to_owned(),
                token: args.token.clone().unwrap_or_default(),
                operator: args.operator_token.clone().unwrap_or_default(),
                shop: String::new(),
            },
        ),
        None => {
            eprintln!("starting kedai serve with the models and the demo shops...");
            let server = BenchServer::start(&client, ServerSetup::Demo, config).await?;
            let endpoint = server.endpoint().clone();
            (Some(server), endpoint)
        }
    };
    let measured = measure(&client, &endpoint, &pools, &orders, &args, mix, output).await;
    if let Some(server) = server {
        if let Err(err) = server.stop(server::stop_grace(settings)).await {
            eprintln!("note: {err:#}");
        }
    }
    let steps = measured?;
    let report = LoadReport {
        benchmark: "load",
        cases_file: args.cases.display().to_string(),
        conversations: args.conversations,
        mix_percent: mix,
        follow_up_percent: args.follow_ups,
        target_ms: args.target_ms,
        highest_rate_within_target: steps
            .iter()
            .filter(|s| s.layer1_p95_within_target)
            .map(|s| s.rate)
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            }),
        steps,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Output::Human => print!("{}", table(&report)),
    }
    Ok(())
}

async fn measure(
    client: &BenchClient,
    endpoint: &Endpoint,
    pools: &Pools,
    orders: &CaseOrders,
    args: &LoadArgs,
    mix: [u32; 3],
    output: Output,
) -> anyhow::Result<Vec<StepReport>> {
    let api = Arc::new(Api {
        client: client.clone(),
        endpoint: endpoint.clone(),
        poll: Duration::from_millis(args.poll_ms),
    });
    let tag = format!("{:08x}", rand::random::<u32>());
    let mut rng = StdRng::seed_from_u64(args.seed);
    let langs = pools.languages();
    let mut buyers: Vec<Buyer> = (0..args.conversations)
        .map(|n| Buyer {
            id: format!("load-{tag}-{n}"),
            shop: pools.shops[n as usize % pools.shops.len()].clone(),
            lang: langs[rng.random_range(0..langs.len())].clone(),
            sent: 0,
        })
        .collect();
    let mut next_new = 0usize;
    // (buyer index, order number) already stored.
    let mut stored: HashSet<(usize, String)> = HashSet::new();
    let mut steps = Vec::new();
    for &rate in &args.rates {
        if output == Output::Human {
            eprintln!("{rate} messages/s for {}s...", args.duration);
        }
        let queue = QueueSampler::start(api.clone());
        let interval = Duration::from_secs_f64(1.0 / rate);
        let count = (rate * args.duration as f64).round().max(1.0) as usize;
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(count);
        let mut follow_ups = 0;
        for n in 0..count {
            tokio::time::sleep_until(started + interval.mul_f64(n as f64)).await;
            let open = next_new.min(buyers.len());
            let follow_up = open > 0
                && (next_new >= buyers.len() || rng.random_range(0..100) < args.follow_ups);
            let index = if follow_up {
                follow_ups += 1;
                rng.random_range(0..open)
            } else {
                next_new += 1;
                next_new - 1
            };
            let buyer = &mut buyers[index];
            buyer.sent += 1;
            let case = pools.draw(&mut rng, &mix, &buyer.lang);
            let (copies, text) = orders.copies_for(case, &buyer.id, index, &buyer.shop);
            let copies: Vec<serde_json::Value> = copies
                .into_iter()
                .filter(|c| {
                    let number = c["order_number"].as_str().unwrap_or_default().to_owned();
                    stored.insert((index, number))
                })
                .collect();
            let body = serde_json::json!({
                "shop": buyer.shop,
                "external_id": format!("{}-{}", buyer.id, buyer.sent),
                "buyer": {"id": buyer.id},
                "text": text,
            });
            let api = api.clone();
            tasks.push(tokio::spawn(async move {
                for order in &copies {
                    if api.store_order(order).await.is_err() {
                        return Outcome::Failed;
                    }
                }
                api.send_and_wait(body, follow_up).await
            }));
        }
        let mut outcomes = Vec::with_capacity(tasks.len());
        for task in tasks {
            outcomes.push(task.await.unwrap_or(Outcome::Failed));
        }
        let sent_for = started.elapsed();
        let drained = api
            .wait_for_empty_queue(Duration::from_secs(args.drain_timeout_secs))
            .await;
        let (queue_max, timeline) = queue.stop().await;
        let step = step_report(
            rate, args, &outcomes, follow_ups, queue_max, timeline, drained,
        );
        if output == Output::Human {
            eprintln!(
                "  {} sent in {:.0}s, {} decided, {} timed out",
                step.sent,
                sent_for.as_secs_f64(),
                step.decided,
                step.timed_out
            );
        }
        steps.push(step);
    }
    Ok(steps)
}

fn latency(layer: u8, mut ms: Vec<f64>) -> LayerLatency {
    ms.sort_by(f64::total_cmp);
    LayerLatency {
        layer,
        n: ms.len(),
        p50_ms: percentile(&ms, 50.0),
        p95_ms: percentile(&ms, 95.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

fn step_report(
    rate: f64,
    args: &LoadArgs,
    outcomes: &[Outcome],
    follow_ups: usize,
    queue_max: Option<u64>,
    queue_timeline: Vec<u64>,
    drained: Option<Duration>,
) -> StepReport {
    let mut by_layer: BTreeMap<u8, Vec<f64>> = BTreeMap::new();
    let (mut layer1_first, mut layer1_follow_ups) = (Vec::new(), Vec::new());
    let (mut layer1_records, mut layer1_written) = (Vec::new(), Vec::new());
    let (mut timed_out, mut failed) = (0, 0);
    for outcome in outcomes {
        match *outcome {
            Outcome::Decided {
                layer,
                ms,
                follow_up,
                written,
            } => {
                by_layer.entry(layer).or_default().push(ms);
                if layer == 1 {
                    match follow_up {
                        true => layer1_follow_ups.push(ms),
                        false => layer1_first.push(ms),
                    }
                    match written {
                        true => layer1_written.push(ms),
                        false => layer1_records.push(ms),
                    }
                }
            }
            Outcome::TimedOut => timed_out += 1,
            Outcome::Failed => failed += 1,
        }
    }
    let by_layer: Vec<LayerLatency> = by_layer
        .into_iter()
        .map(|(layer, ms)| latency(layer, ms))
        .collect();
    let layer1_ok = by_layer
        .iter()
        .find(|l| l.layer == 1)
        .is_some_and(|l| l.p95_ms <= args.target_ms)
        && timed_out == 0
        && failed == 0;
    StepReport {
        rate,
        duration_secs: args.duration,
        sent: outcomes.len(),
        follow_ups,
        decided: outcomes.len() - timed_out - failed,
        timed_out,
        failed,
        by_layer,
        layer1_first_messages: (!layer1_first.is_empty()).then(|| latency(1, layer1_first)),
        layer1_follow_ups: (!layer1_follow_ups.is_empty()).then(|| latency(1, layer1_follow_ups)),
        layer1_from_records: (!layer1_records.is_empty()).then(|| latency(1, layer1_records)),
        layer1_written: (!layer1_written.is_empty()).then(|| latency(1, layer1_written)),
        queue_max,
        queue_timeline,
        layer1_p95_within_target: layer1_ok,
        drained_after_secs: drained.map(|d| d.as_secs_f64()),
    }
}

struct Api {
    client: BenchClient,
    endpoint: Endpoint,
    poll: Duration,
}

impl Api {
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> anyhow::Result<T> {
        let mut call = Call::new(method.clone(), format!("{}{path}", self.endpoint.base))
            .bearer(&self.endpoint.token);
        if let Some(body) = body {
            call = call.json(body);
        }
        let reply = self
            .client
            .send(call)
            .await
            .with_context(|| format!("{method} {path}"))?;
        if !reply.status.is_success() {
            bail!(
                "{method} {path} answered {}: {}",
                reply.status,
                reply.text()
            );
        }
        reply
            .json()
            .with_context(|| format!("{method} {path}: unexpected response"))
    }

    /// Stores one order (`POST /api/v1/orders`).
    async fn store_order(&self, order: &serde_json::Value) -> anyhow::Result<()> {
        self.json::<serde_json::Value>(Method::POST, "/api/v1/orders", Some(order))
            .await
            .map(drop)
    }

    /// Sends one message and polls its conversation until the decision on
    /// it is stored.
    async fn send_and_wait(&self, body: serde_json::Value, follow_up: bool) -> Outcome {
        let Ok(ack) = self
            .json::<Ack>(Method::POST, "/api/v1/messages", Some(&body))
            .await
        else {
            return Outcome::Failed;
        };
        let path = format!("/api/v1/conversations/{}", ack.conversation_id);
        let deadline = Instant::now() + DECISION_TIMEOUT;
        loop {
            tokio::time::sleep(self.poll).await;
            let Ok(conversation) = self.json::<Conversation>(Method::GET, &path, None).await else {
                return Outcome::Failed;
            };
            let decision = conversation
                .decisions
                .iter()
                .find(|d| d.message_id == ack.message_id);
            let message = conversation
                .messages
                .iter()
                .find(|m| m.id == ack.message_id);
            if let (Some(decision), Some(message)) = (decision, message) {
                let ms = (decision.created_at - message.received_at)
                    .num_microseconds()
                    .map_or(f64::INFINITY, |us| us as f64 / 1000.0);
                return Outcome::Decided {
                    layer: decision.layer,
                    ms,
                    follow_up,
                    written: written_now(&decision.trace),
                };
            }
            if Instant::now() >= deadline {
                return Outcome::TimedOut;
            }
        }
    }

    /// Queued plus running jobs, from `/readyz`; `None` without an
    /// operator token or when the report has no queue.
    async fn queue_depth(&self) -> Option<u64> {
        if self.endpoint.operator.is_empty() {
            return None;
        }
        let url = format!("{}/readyz", self.endpoint.base);
        let reply = self
            .client
            .send(Call::get(&url).bearer(&self.endpoint.operator))
            .await
            .ok()?;
        let report: serde_json::Value = reply.json().ok()?;
        let queue = report.get("queue")?;
        Some(queue["queued"].as_u64()? + queue["leased"].as_u64()?)
    }

    async fn wait_for_empty_queue(&self, timeout: Duration) -> Option<Duration> {
        let started = Instant::now();
        loop {
            match self.queue_depth().await {
                Some(0) => return Some(started.elapsed()),
                None => return None,
                Some(_) if started.elapsed() >= timeout => return None,
                Some(_) => tokio::time::sleep(QUEUE_SAMPLE).await,
            }
        }
    }
}

/// Samples the queue depth every second while a rate runs.
struct QueueSampler {
    samples: Arc<Mutex<Vec<u64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl QueueSampler {
    fn start(api: Arc<Api>) -> QueueSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let into = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some(depth) = api.queue_depth().await {
                    into.lock().await.push(depth);
                }
                tokio::time::sleep(QUEUE_SAMPLE).await;
            }
        });
        QueueSampler { samples, task }
    }

    /// The largest depth and every fifth sample.
    async fn stop(self) -> (Option<u64>, Vec<u64>) {
        self.task.abort();
        let samples = self.samples.lock().await;
        (
            samples.iter().copied().max(),
            samples.iter().step_by(5).copied().collect(),
        )
    }
}

fn table(report: &LoadReport) -> String {
    let mut out = format!(
        "{} conversations, offered mix {}/{}/{}% (layers 1/2/3), {}% follow-ups, \
         acknowledgement to decision (server timestamps)\n\n",
        report.conversations,
        report.mix_percent[0],
        report.mix_percent[1],
        report.mix_percent[2],
        report.follow_up_percent
    );
    out.push_str(
        "rate/s  sent  decided  timed out  layer  n      p50 ms    p95 ms    p99 ms  queue max\n",
    );
    for step in &report.steps {
        let queue = step.queue_max.map_or("-".into(), |q| q.to_string());
        for (i, layer) in step.by_layer.iter().enumerate() {
            let lead = if i == 0 {
                format!(
                    "{:<7} {:<5} {:<8} {:<10}",
                    step.rate, step.sent, step.decided, step.timed_out
                )
            } else {
                format!("{:<33}", "")
            };
            out.push_str(&format!(
                "{lead} {:<6} {:<6} {:>8.0} {:>9.0} {:>9.0}  {}\n",
                layer.layer,
                layer.n,
                layer.p50_ms,
                layer.p95_ms,
                layer.p99_ms,
                if i == 0 { queue.as_str() } else { "" }
            ));
        }
    }
    for step in &report.steps {
        for (what, layer) in [
            ("first messages", &step.layer1_first_messages),
            ("follow-ups", &step.layer1_follow_ups),
            ("from records", &step.layer1_from_records),
            ("written by the chat model", &step.layer1_written),
        ] {
            if let Some(l) = layer {
                out.push_str(&format!(
                    "{}/s layer 1, {what}: n {} p50 {:.0} ms p95 {:.0} ms\n",
                    step.rate, l.n, l.p50_ms, l.p95_ms
                ));
            }
        }
    }
    out.push_str(&match report.highest_rate_within_target {
        Some(rate) => format!(
            "\nhighest rate with layer-1 p95 <= {} ms: {rate}/s\n",
            report.target_ms
        ),
        None => format!("\nno rate kept layer-1 p95 <= {} ms\n", report.target_ms),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cases_buyers_orders_are_copied_for_the_synthetic_buyer_with_their_numbers_in_the_text() {
        let order = serde_json::json!({"shop": "demo-lazada", "order_number": "LZD-2611-30418",
            "buyer": {"id": "lazada:somchai.k", "vip": false}, "status": "in_transit"});
        let orders = CaseOrders(HashMap::from([(
            ("demo-lazada".to_string(), "lazada:somchai.k".to_string()),
            vec![order],
        )]));
        let mut asked = case(1, "th");
        asked.shop = "demo-lazada".into();
        asked.buyer = "lazada:somchai.k".into();
        asked.message = "เลขออเดอร์ LZD-2611-30418 ถึงไหนแล้วครับ".into();
        let (copies, text) = orders.copies_for(&asked, "load-x-7", 7, "demo-shopee");
        assert_eq!(text, "เลขออเดอร์ LZD-2611-30418-L7 ถึงไหนแล้วครับ");
        assert_eq!(copies.len(), 1);
        assert_eq!(copies[0]["order_number"], "LZD-2611-30418-L7");
        assert_eq!(copies[0]["shop"], "demo-shopee");
        assert_eq!(copies[0]["buyer"]["id"], "load-x-7");
        // A buyer without orders: the text as written, nothing to store.
        let other = case(1, "th");
        let (copies, text) = orders.copies_for(&other, "load-x-8", 8, "demo-shopee");
        assert!(copies.is_empty());
        assert_eq!(text, other.message);
    }

    #[test]
    fn the_shipped_demo_orders_read_as_order_bodies() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb/orders/demo.jsonl");
        let orders = CaseOrders::read(&path).unwrap();
        let nadia = &orders.0[&("demo-shopee".to_string(), "shopee:nadia.r".to_string())];
        assert!(nadia.iter().any(|o| o["order_number"] == "SPE-2611-00123"));
    }

    fn case(layer: u8, lang: &str) -> ReplyCase {
        ReplyCase {
            id: format!("{lang}-{layer}"),
            shop: "demo-web".into(),
            buyer: "b".into(),
            lang: lang.into(),
            history: vec![],
            message: format!("message {lang} {layer}"),
            expected_layer: layer,
            expected_intent: "x".into(),
            expected_facts: vec![],
            notes: String::new(),
        }
    }

    #[test]
    fn draws_follow_the_mix_and_the_conversation_language() {
        let pools = Pools::new(vec![
            case(1, "en"),
            case(1, "id"),
            case(2, "en"),
            case(3, "th"),
        ])
        .unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut layers = [0u32; 3];
        for _ in 0..1000 {
            let c = pools.draw(&mut rng, &[70, 20, 10], "en");
            layers[usize::from(c.expected_layer) - 1] += 1;
            if c.expected_layer != 3 {
                assert_eq!(c.lang, "en", "a case in the conversation's language exists");
            }
        }
        assert!((640..=760).contains(&layers[0]), "{layers:?}");
        assert!((150..=250).contains(&layers[1]), "{layers:?}");
        assert!((60..=140).contains(&layers[2]), "{layers:?}");
    }

    #[test]
    fn an_empty_layer_borrows_from_the_next() {
        let pools = Pools::new(vec![case(1, "en")]).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(pools.draw(&mut rng, &[0, 0, 100], "en").expected_layer, 1);
    }

    #[test]
    fn a_step_passes_only_when_layer_one_is_fast_and_nothing_was_lost() {
        let args = LoadArgs {
            cases: "x".into(),
            orders: "y".into(),
            conversations: 1,
            rates: vec![1.0],
            duration: 1,
            mix: vec![70, 20, 10],
            follow_ups: 0,
            target_ms: 1000.0,
            poll_ms: 250,
            drain_timeout_secs: 1,
            url: None,
            token: None,
            operator_token: None,
            seed: 1,
        };
        let fast: Vec<Outcome> = (0..20)
            .map(|n| Outcome::Decided {
                layer: 1,
                ms: 100.0 + f64::from(n),
                follow_up: n % 4 == 0,
                written: n == 19,
            })
            .chain([Outcome::Decided {
                layer: 2,
                ms: 9000.0,
                follow_up: false,
                written: true,
            }])
            .collect();
        let step = step_report(1.0, &args, &fast, 0, Some(3), vec![3], None);
        assert!(step.layer1_p95_within_target, "slow drafts do not count");
        assert_eq!(step.by_layer[0].n, 20);
        assert_eq!(step.by_layer[0].max_ms, 119.0);
        assert_eq!(step.layer1_follow_ups.as_ref().map(|l| l.n), Some(5));
        // Written answers are split out of layer 1 only.
        assert_eq!(step.layer1_written.as_ref().map(|l| l.n), Some(1));
        assert_eq!(step.layer1_written.as_ref().map(|l| l.max_ms), Some(119.0));
        assert_eq!(
            step.layer1_from_records.as_ref().map(|l| (l.n, l.max_ms)),
            Some((19, 118.0))
        );
        assert_eq!(
            step.layer1_first_messages.as_ref().map(|l| l.max_ms),
            Some(119.0)
        );
        assert!(written_now(
            &serde_json::json!({"answer_kind": "faq_translated", "generation": {"prefill_ms": 1.0}})
        ));
        assert!(!written_now(
            &serde_json::json!({"answer_kind": "faq_translated", "generation": null})
        ));
        let mut lost = fast.clone();
        lost.push(Outcome::TimedOut);
        let step = step_report(1.0, &args, &lost, 0, None, vec![], None);
        assert!(
            !step.layer1_p95_within_target,
            "a timed-out message fails the step"
        );
        assert_eq!((step.decided, step.timed_out), (21, 1));
    }
}
