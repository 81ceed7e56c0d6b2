//! The simulation's actors: the platforms generating buyer (and seller)
//! messages on a fixed schedule and pushing them, with drops, delays,
//! duplicates and their retry ladders; echoes of kedai's own sends; an
//! agent answering through kedai's API; and the killer that SIGKILLs and
//! restarts kedai.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::census::{Generated, PushStats};
use super::kedai::Server;
use super::servers::Shared;
use super::world::{SimMessage, World};
use super::{buyer_id, SimulateArgs, AGENT_REPLY, PHRASES, SELLER_PHRASE};
use crate::domain::Platform;

/// The shared state of one run.
pub(super) struct Sim {
    pub world: Shared,
    pub client: reqwest::Client,
    pub base: String,
    pub stats: Mutex<HashMap<Platform, PushStats>>,
    pub generated: Mutex<HashMap<String, Generated>>,
    pub server: Arc<Mutex<Server>>,
    pub pushes: Arc<Semaphore>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The platforms' retry ladders, compressed from minutes and hours to
/// seconds.
const RETRY_LADDER: [f64; 6] = [1.0, 2.0, 4.0, 8.0, 15.0, 30.0];

impl Sim {
    /// Pushes one body until kedai acknowledges it or the ladder runs out.
    /// A Shopee push that fails goes to the lost-push list too.
    /// The first attempt's latency is measured from when it was due, so a
    /// driver that fell behind shows up as latency, not as a lower rate.
    async fn push(
        self: Arc<Self>,
        platform: Platform,
        body: String,
        track: Option<String>,
        due: Option<Instant>,
    ) {
        let due = due.unwrap_or_else(Instant::now);
        let signature = {
            let world = world_lock(&self.world);
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let account = crate::channels::adapter::id_of(&value["shop_id"])
                .or_else(|| crate::channels::adapter::id_of(&value["seller_id"]))
                .unwrap_or_default();
            match world.shop_of(platform, &account) {
                Some(shop) => world.shops[shop].signer().sign(body.as_bytes()),
                None => return,
            }
        };
        let url = format!("{}/webhooks/{platform}", self.base);
        let mut in_lost_list = false;
        for attempt in 0..=RETRY_LADDER.len() {
            let started = if attempt == 0 { due } else { Instant::now() };
            let sent = self
                .client
                .post(&url)
                .header("Authorization", &signature)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
            {
                let mut stats = lock(&self.stats);
                let s = stats.entry(platform).or_default();
                s.delivered += 1;
                match status {
                    Some(200..=299) => {
                        s.acked += 1;
                        s.ack_ms.push(elapsed_ms);
                    }
                    Some(400..=499) => s.refused += 1,
                    _ => s.failed += 1,
                }
            }
            match status {
                Some(200..=299) => {
                    if let Some(id) = &track {
                        if let Some(g) = lock(&self.generated).get_mut(id) {
                            g.acked = true;
                        }
                    }
                    return;
                }
                Some(400..=499) => {
                    tracing::warn!(%platform, status = ?status, "push refused");
                    return;
                }
                _ => {}
            }
            if platform == Platform::Shopee && !in_lost_list {
                let mut world = world_lock(&self.world);
                world.next_lost_id += 1;
                let id = world.next_lost_id;
                world.lost.push((id, body.clone()));
                in_lost_list = true;
            }
            if let Some(wait) = RETRY_LADDER.get(attempt) {
                tokio::time::sleep(Duration::from_secs_f64(*wait)).await;
            }
        }
        lock(&self.stats).entry(platform).or_default().failed += 1;
    }
}

pub(super) fn world_lock(world: &Shared) -> std::sync::MutexGuard<'_, World> {
    world.lock().unwrap_or_else(|e| e.into_inner())
}

/// Generates the messages on schedule and pushes them.
pub(super) async fn drive(sim: &Arc<Sim>, args: &SimulateArgs, total: usize) -> JoinSet<()> {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut tasks = JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let started = tokio::time::Instant::now();
    let shop_count = world_lock(&sim.world).shops.len();
    for i in 0..total {
        let scheduled = started + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let shop = i % shop_count;
        let buyer_n = rng.random_range(0..args.buyers.max(1));
        let from_buyer = rng.random::<f64>() >= args.seller_rate;
        let (lang_text, dropped, duplicate) = (
            PHRASES[rng.random_range(0..PHRASES.len())].1,
            rng.random::<f64>() < args.drop_rate,
            rng.random::<f64>() < args.duplicate_rate,
        );
        let delay = interval * rng.random_range(0..=args.reorder_window);
        let (platform, id, body) = {
            let mut world = world_lock(&sim.world);
            let platform = world.shops[shop].platform;
            let buyer = buyer_id(platform, shop, buyer_n);
            let thread = world.thread_for(shop, &buyer, &format!("Buyer {buyer_n}"));
            let id = world.message_id(platform);
            let message = SimMessage {
                id: id.clone(),
                from_buyer,
                text: if from_buyer {
                    lang_text.to_owned()
                } else {
                    SELLER_PHRASE.to_owned()
                },
                sent_at: Utc::now(),
            };
            world.threads[thread].messages.push(message.clone());
            let platform_time = match platform {
                Platform::Lazada => message.sent_at.timestamp_millis(),
                _ => message.sent_at.timestamp(),
            };
            lock(&sim.generated).insert(
                id.clone(),
                Generated {
                    platform,
                    platform_time,
                    from_buyer,
                    dropped,
                    acked: false,
                },
            );
            let body = world.push_body(thread, &message, Utc::now());
            (platform, id, body)
        };
        if dropped {
            continue;
        }
        let copies = if duplicate { 2 } else { 1 };
        for copy in 0..copies {
            let permit = sim
                .pushes
                .clone()
                .acquire_owned()
                .await
                .expect("open semaphore");
            let (sim, body, id) = (sim.clone(), body.clone(), id.clone());
            let extra = if copy == 1 {
                Duration::from_millis(rng.random_range(200..2000))
            } else {
                Duration::ZERO
            };
            let due = (scheduled + delay + extra).into_std();
            tasks.spawn(async move {
                tokio::time::sleep_until(due.into()).await;
                sim.push(platform, body, Some(id), Some(due)).await;
                drop(permit);
            });
        }
    }
    tasks
}

/// Pushes kedai's own sent messages back, as a platform notifies a shop of
/// its own messages, until `done`.
pub(super) async fn echo(sim: Arc<Sim>, done: Arc<AtomicBool>) {
    loop {
        let bodies: Vec<(Platform, String)> = {
            let mut world = world_lock(&sim.world);
            let echoes = std::mem::take(&mut world.echoes);
            echoes
                .into_iter()
                .filter_map(|(thread, id)| {
                    let message = world.threads[thread]
                        .messages
                        .iter()
                        .find(|m| m.id == id)?
                        .clone();
                    let platform = world.shops[world.threads[thread].shop].platform;
                    Some((platform, world.push_body(thread, &message, Utc::now())))
                })
                .collect()
        };
        for (platform, body) in bodies {
            lock(&sim.stats).entry(platform).or_default().echoes += 1;
            tokio::spawn(sim.clone().push(platform, body, None, None));
        }
        if done.load(Ordering::Relaxed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An agent answering a share of buyers' new messages through kedai's API
/// (each answer idempotent by its external id, so retries across restarts
/// post it once).
pub(super) async fn agent(sim: Arc<Sim>, token: String, rate: f64, done: Arc<AtomicBool>) {
    let mut seen: HashMap<String, i64> = HashMap::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Ok(response) = sim
            .client
            .get(format!("{}/api/v1/conversations?limit=200", sim.base))
            .bearer_auth(&token)
            .send()
            .await
        {
            if let Ok(page) = response.json::<serde_json::Value>().await {
                for c in page["conversations"].as_array().into_iter().flatten() {
                    let (Some(id), Some(count)) = (c["id"].as_str(), c["message_count"].as_i64())
                    else {
                        continue;
                    };
                    if seen.insert(id.to_owned(), count) == Some(count) {
                        continue;
                    }
                    // The same conversation and count always get the same roll.
                    let roll = format!("{id}{count}")
                        .bytes()
                        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
                        % 10_000;
                    if (roll as f64 / 10_000.0) < rate {
                        pending.push((id.to_owned(), format!("agent-{id}-{count}")));
                    }
                }
            }
        }
        let mut still = Vec::new();
        for (conversation, external) in pending.drain(..) {
            // The reply itself adds to the count: not a new buyer message.
            if let Some(count) = seen.get_mut(&conversation) {
                *count += 1;
            }
            let posted = sim
                .client
                .post(format!("{}/api/v1/conversations/{conversation}/replies", sim.base))
                .bearer_auth(&token)
                .json(&json!({"text": AGENT_REPLY, "author_name": "Sim Agent", "external_id": external}))
                .send()
                .await;
            if !posted.is_ok_and(|r| r.status().is_success()) {
                still.push((conversation, external));
            }
        }
        pending = still;
    }
}

/// SIGKILLs and restarts kedai every `every` until `done`.
pub(super) async fn killer(server: Arc<Mutex<Server>>, every: Duration, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        if done.load(Ordering::Relaxed) {
            return;
        }
        let server = server.clone();
        let restarted = tokio::task::spawn_blocking(move || {
            let mut server = lock(&server);
            server.kill();
            server.start(Duration::from_secs(120))
        })
        .await;
        if let Ok(Err(err)) | Err(err) = restarted.map_err(anyhow::Error::from) {
            tracing::error!(error = %err, "kedai did not restart");
        }
    }
}
