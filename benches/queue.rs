//! The job queue's lease round trip: what a worker pays per job in the store
//! before and after its handler runs: `lease_jobs` (one job, the
//! conversation's next in order, none of whose siblings is leased), then
//! `complete_job`; and one lease renewal, which a long job pays every third
//! of `queue.lease_secs`.
//!
//! Measured against a backlog of queued buyer messages spread over
//! conversations (the lease statement's cost grows with the due jobs it
//! must rank), with the store's two durability settings: `full` (every
//! commit fsynced, the default) and `normal`. Each backend is a factory
//! returning `Arc<dyn Store>`; SQLite is the only one today, and a
//! PostgreSQL one slots into `backends()` without touching the
//! measurements. After criterion's runs, the percentiles of 2,000 single
//! round trips per case are printed.
//!
//! Then the same round trips by eight workers at once, as the workers of
//! several replicas lease: jobs per second through the store's locking.
//!
//! `cargo bench --bench queue` (`QUEUE_BENCH_BACKLOG=10000` for one size)

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use kedai::config::{Durability, Settings};
use kedai::domain::{
    BuyerRef, ExternalMessageId, InboundMessage, MessageText, Platform, PlatformBuyerId, ShopKey,
    TenantName, TextLimits,
};
use kedai::store::{LeaseRequest, NewShop, PostgresStore, Schema, Shop, SqliteStore, Store};
use tempfile::TempDir;

const BACKLOGS: [usize; 3] = [100, 1_000, 10_000];
/// Conversations a backlog is spread over.
const CONVERSATIONS: usize = 200;
const LEASE: chrono::Duration = chrono::Duration::seconds(60);

/// A store to measure, and what keeps it alive.
struct Backend {
    store: Arc<dyn Store>,
    shop: Shop,
    _dir: TempDir,
    next: usize,
}

/// Every backend and durability the queue runs on, by name.
/// PostgreSQL joins when `KEDAI_BENCH_POSTGRES_URL` names a database
/// (`.ci/postgres start` makes one).
fn backends(rt: &tokio::runtime::Runtime) -> Vec<(String, Backend)> {
    let mut backends: Vec<(String, Backend)> = [Durability::Full, Durability::Normal]
        .into_iter()
        .map(|durability| {
            let name = format!("sqlite-{}", format!("{durability:?}").to_lowercase());
            (name, rt.block_on(sqlite(durability)))
        })
        .collect();
    if let Ok(url) = std::env::var("KEDAI_BENCH_POSTGRES_URL") {
        backends.push(("postgres".into(), rt.block_on(postgres(url))));
    }
    backends
}

async fn sqlite(durability: Durability) -> Backend {
    let dir = TempDir::new().unwrap();
    let mut settings = Settings::defaults().store;
    settings.data_dir = dir.path().to_path_buf();
    settings.durability = durability;
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&settings, Schema::Migrate).await.unwrap());
    with_shop(store, dir).await
}

async fn postgres(url: String) -> Backend {
    let dir = TempDir::new().unwrap();
    let mut settings = Settings::defaults().store;
    settings.data_dir = dir.path().to_path_buf();
    let url = kedai::config::StoreUrl(url);
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&url, &settings, Schema::Migrate)
            .await
            .unwrap(),
    );
    with_shop(store, dir).await
}

/// A tenant of its own (a PostgreSQL database may hold earlier runs').
async fn with_shop(store: Arc<dyn Store>, dir: TempDir) -> Backend {
    let name = format!("bench-{}", &uuid::Uuid::now_v7().simple().to_string()[..16]);
    let tenant = store
        .create_tenant(&TenantName::parse(&name).unwrap())
        .await
        .unwrap();
    let shop = store
        .add_shop(NewShop {
            tenant_id: tenant.id,
            platform: Platform::Web,
            key: ShopKey::parse("web").unwrap(),
            name: "Web".into(),
            market: Default::default(),
            credentials: secrecy::SecretString::from("{}"),
        })
        .await
        .unwrap();
    Backend {
        store,
        shop,
        _dir: dir,
        next: 0,
    }
}

impl Backend {
    /// Queues `n` more buyer messages, round-robin over the conversations.
    async fn queue(&mut self, n: usize) {
        for _ in 0..n {
            let i = self.next;
            self.next += 1;
            let message = InboundMessage {
                shop: self.shop.key.clone(),
                external_id: ExternalMessageId::parse(&format!("m-{i}")).unwrap(),
                buyer: BuyerRef {
                    id: PlatformBuyerId::parse(&format!("b-{}", i % CONVERSATIONS)).unwrap(),
                    name: None,
                },
                text: MessageText::parse("where is my order?", TextLimits { max_chars: 100 })
                    .unwrap(),
                sent_at: chrono::Utc::now(),
                sender: kedai::domain::Sender::Buyer,
                attachment: None,
            };
            self.store.ingest(&self.shop, &message, 5).await.unwrap();
        }
    }

    async fn waiting(&self) -> usize {
        self.store.job_counts().await.unwrap().queued as usize
    }

    /// One lease and completion; panics when nothing was due.
    async fn round_trip(&self) {
        let jobs = self
            .store
            .lease_jobs(LeaseRequest {
                owner: "bench",
                limit: 1,
                lease: LEASE,
                kinds: None,
                lane: Some(kedai::store::JobLane::Fast),
            })
            .await
            .unwrap();
        let job = jobs.first().expect("a job is due");
        assert!(self.store.complete_job(job.id, "bench").await.unwrap());
    }

    /// Leases one job, renews it `iters` times, completes it.
    async fn renewals(&self, iters: u64) -> Duration {
        let job = self
            .store
            .lease_jobs(LeaseRequest {
                owner: "bench",
                limit: 1,
                lease: LEASE,
                kinds: None,
                lane: Some(kedai::store::JobLane::Fast),
            })
            .await
            .unwrap()
            .remove(0);
        let started = Instant::now();
        for _ in 0..iters {
            assert!(self
                .store
                .renew_lease(job.id, "bench", LEASE)
                .await
                .unwrap());
        }
        let elapsed = started.elapsed();
        self.store.complete_job(job.id, "bench").await.unwrap();
        elapsed
    }

    /// Tops the backlog up to `backlog + extra` queued jobs.
    async fn fill(&mut self, backlog: usize, extra: usize) {
        let waiting = self.waiting().await;
        if waiting < backlog + extra {
            self.queue(backlog + extra - waiting).await;
        }
    }
}

fn bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, backlogs: &[usize]) {
    let mut group = c.benchmark_group("queue_lease_round_trip");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (name, mut backend) in backends(rt) {
        for &backlog in backlogs {
            group.bench_with_input(BenchmarkId::new(&name, backlog), &backlog, |b, &backlog| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        // The backlog is topped up outside the timing and
                        // drops by `iters` while measured.
                        backend.fill(backlog, iters as usize).await;
                        let started = Instant::now();
                        for _ in 0..iters {
                            backend.round_trip().await;
                        }
                        started.elapsed()
                    })
                })
            });
        }
        group.bench_function(BenchmarkId::new(format!("{name}-renewal"), 1), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    backend.fill(1, 0).await;
                    backend.renewals(iters).await
                })
            })
        });
    }
    group.finish();
}

fn percentiles(rt: &tokio::runtime::Runtime, backlogs: &[usize]) {
    println!("\nsingle lease + complete round trips:");
    println!(
        "{:>14} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "store", "backlog", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (name, mut backend) in backends(rt) {
        for &backlog in backlogs {
            let mut ms: Vec<f64> = rt.block_on(async {
                backend.fill(backlog, 2_000).await;
                let mut ms = Vec::with_capacity(2_000);
                for _ in 0..2_000 {
                    let started = Instant::now();
                    backend.round_trip().await;
                    ms.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                ms
            });
            ms.sort_by(f64::total_cmp);
            let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
            println!(
                "{:>14} {:>8} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
                name,
                backlog,
                at(0.5),
                at(0.9),
                at(0.99),
                ms[ms.len() - 1]
            );
        }
    }
}

/// Workers leasing at once in [`concurrent`].
const WORKERS: usize = 8;

/// Round trips per second with [`WORKERS`] workers leasing and completing
/// at once, as the workers of several replicas do: what the store's
/// locking lets through, not one round trip's latency.
fn concurrent(rt: &tokio::runtime::Runtime, backlogs: &[usize]) {
    const ROUND_TRIPS: usize = 2_000;
    println!("\n{WORKERS} workers leasing and completing at once:");
    println!(
        "{:>14} {:>8} {:>12} {:>14}",
        "store", "backlog", "jobs/s", "empty leases"
    );
    for (name, mut backend) in backends(rt) {
        for &backlog in backlogs {
            let (per_sec, empty) = rt.block_on(async {
                backend.fill(backlog, ROUND_TRIPS).await;
                let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let empty = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let started = Instant::now();
                let workers: Vec<_> = (0..WORKERS)
                    .map(|w| {
                        let store = backend.store.clone();
                        let (done, empty) = (done.clone(), empty.clone());
                        tokio::spawn(async move {
                            let owner = format!("bench-{w}");
                            while done.load(std::sync::atomic::Ordering::SeqCst) < ROUND_TRIPS {
                                let jobs = store
                                    .lease_jobs(LeaseRequest {
                                        owner: &owner,
                                        limit: 1,
                                        lease: LEASE,
                                        kinds: None,
                                        lane: None,
                                    })
                                    .await
                                    .unwrap();
                                let Some(job) = jobs.first() else {
                                    empty.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                    continue;
                                };
                                assert!(store.complete_job(job.id, &owner).await.unwrap());
                                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                        })
                    })
                    .collect();
                for worker in workers {
                    worker.await.unwrap();
                }
                let n = done.load(std::sync::atomic::Ordering::SeqCst);
                (
                    n as f64 / started.elapsed().as_secs_f64(),
                    empty.load(std::sync::atomic::Ordering::SeqCst),
                )
            });
            println!("{name:>14} {backlog:>8} {per_sec:>12.0} {empty:>14}");
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let only: Option<usize> = std::env::var("QUEUE_BENCH_BACKLOG")
        .ok()
        .and_then(|s| s.parse().ok());
    let backlogs: Vec<usize> = BACKLOGS
        .into_iter()
        .filter(|n| only.is_none_or(|o| o == *n))
        .collect();
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &rt, &backlogs);
    criterion.final_summary();
    percentiles(&rt, &backlogs);
    concurrent(&rt, &backlogs);
}
