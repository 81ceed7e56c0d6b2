//! Channels: where buyers write and where replies go. One adapter per
//! platform behind [`adapter::ChannelAdapter`] (Shopee, Lazada, TikTok Shop,
//! the web-chat widget), the webhook receivers and widget endpoints
//! (`webhooks`, `widget`), the durable outbox that delivers replies and
//! signed event webhooks (`outbox`, `events`), reconciliation of pushes
//! missed while kedai was down (`reconcile`), response deadlines
//! (`deadlines`), order fetching and import (`orders`), pre-send checks
//! (`rules`), the marketplace simulator (`simulator`) and their commands
//! (`cli`).
//!
//! Everything platform-specific lives here and nowhere else: the rest of
//! kedai sees domain messages stored through `ConversationStore::ingest`
//! and outbound messages that the store puts in the outbox. A webhook is
//! acknowledged only after its messages are committed.

pub mod adapter;
pub mod api;
pub mod cli;
pub mod credentials;
pub mod deadlines;
pub mod events;
pub mod history;
pub mod ingest;
pub mod jobs;
pub mod lazada;
pub mod orders;
pub mod outbox;
pub mod ratelimit;
pub mod reconcile;
pub mod rules;
pub mod settings;
pub mod shopee;
pub mod signature;
pub mod simulator;
pub mod tiktok;
pub mod web;
pub mod webhooks;
pub mod widget;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, RwLock, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use adapter::ChannelAdapter;
use credentials::Credentials;
pub use settings::ChannelSettings;

use crate::domain::{Platform, ShopId, TextLimits, ValidationError};
use crate::store::{ChannelShop, Shop, Store, StoreError};

/// Everything that can go wrong at the channels' boundary.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid credentials: {0}")]
    Credentials(String),
    #[error("missing `Authorization` header with the push signature")]
    MissingSignature,
    #[error("the push signature does not verify")]
    BadSignature,
    #[error("stale push: sent {age_secs} s ago, outside the replay window")]
    Replay { age_secs: i64 },
    #[error("malformed push: {0}")]
    MalformedPush(String),
    #[error("unknown {platform} shop {account:?} (connect it with `kedai shop set`)")]
    UnknownShop { platform: Platform, account: String },
    #[error("conversation {thread:?} is not known yet; it will be read through the API")]
    UnknownThread { thread: String },
    #[error("the shop is not connected to its platform (no credentials)")]
    NotConnected,
    #[error("platform API: {0}")]
    Api(String),
    /// An outgoing text the platform's chat rules do not allow.
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A shop with a working adapter.
#[derive(Clone)]
pub struct Connected {
    pub shop: Shop,
    pub account: Option<String>,
    pub adapter: Arc<dyn ChannelAdapter>,
}

/// How long the connected shops are trusted before they are read again
/// (credentials change from another process, `kedai shop set`).
const REGISTRY_TTL: Duration = Duration::from_secs(30);
/// The fastest the registry reloads on a miss, so floods of bad pushes
/// cannot turn into floods of store reads.
const REGISTRY_MIN_RELOAD: Duration = Duration::from_millis(500);

/// Follow-up tasks of pushes running at once.
const BACKGROUND_TASKS: usize = 8;

struct Registry {
    shops: HashMap<ShopId, Connected>,
    loaded_at: Option<Instant>,
}

/// The channels' shared state: the store, settings, one HTTP client, the
/// widget hub, rate limits, and the connected shops.
pub struct Channels {
    pub store: Arc<dyn Store>,
    pub settings: ChannelSettings,
    pub text: TextLimits,
    /// Attempts for the processing job of each inbound message.
    pub max_attempts: u32,
    pub http: reqwest::Client,
    pub hub: web::WidgetHub,
    pub limits: ratelimit::SendLimits,
    /// Woken when an outbound message may be waiting.
    pub outbox_wake: Arc<Notify>,
    /// Woken when an inbound message was stored (the job queue).
    pub inbound_wake: Arc<dyn Fn() + Send + Sync>,
    /// Follow-up work started by pushes (reading a conversation, fetching
    /// an order), a few at a time; more is left to reconciliation.
    pub background: Arc<Semaphore>,
    policy: crate::pipeline::policy::PolicySettings,
    registry: RwLock<Registry>,
}

/// What [`Channels::new`] needs.
pub struct ChannelsConfig {
    pub store: Arc<dyn Store>,
    pub settings: ChannelSettings,
    /// The longest message text accepted.
    pub text: TextLimits,
    /// Attempts for the processing job of each inbound message.
    pub max_attempts: u32,
    /// Called when an inbound message was stored (wakes the job queue).
    pub inbound_wake: Arc<dyn Fn() + Send + Sync>,
    /// The shops' policies: their allowed link hosts apply to replies.
    pub policy: crate::pipeline::policy::PolicySettings,
}

impl Channels {
    pub fn new(config: ChannelsConfig) -> Arc<Channels> {
        let ChannelsConfig {
            store,
            settings,
            text,
            max_attempts,
            inbound_wake,
            policy,
        } = config;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(settings.send_timeout_secs))
            .connect_timeout(Duration::from_secs(settings.send_timeout_secs.min(5)))
            // Platforms do not follow redirects on pushes; kedai does not
            // follow them on API calls either, so a call goes where it says.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Arc::new(Channels {
            limits: ratelimit::SendLimits::new(&settings),
            store,
            settings,
            text,
            max_attempts,
            http,
            hub: web::WidgetHub::default(),
            outbox_wake: Arc::new(Notify::new()),
            inbound_wake,
            background: Arc::new(Semaphore::new(BACKGROUND_TASKS)),
            policy,
            registry: RwLock::new(Registry {
                shops: HashMap::new(),
                loaded_at: None,
            }),
        })
    }

    /// Hosts a shop's replies may link to (its policy's
    /// `allowed_link_hosts`), besides the platform's own.
    pub fn allowed_hosts(&self, shop: &Shop) -> Vec<String> {
        self.policy.for_shop(&shop.policy).0.allowed_link_hosts
    }

    /// Channels for a command that only calls the platforms' APIs
    /// (`kedai shop history`, the simulator's checks): nothing it stores
    /// wakes a queue.
    pub fn for_command(store: Arc<dyn Store>, settings: &crate::config::Settings) -> Arc<Channels> {
        Channels::new(ChannelsConfig {
            store,
            settings: settings.channels.clone(),
            text: TextLimits {
                max_chars: settings.server.max_text_chars,
            },
            max_attempts: settings.queue.max_attempts,
            inbound_wake: Arc::new(|| {}),
            policy: settings.policy.clone(),
        })
    }

    /// The adapter for one shop and its credentials.
    pub fn connect(&self, shop: &ChannelShop) -> Result<Connected, ChannelError> {
        let credentials = Credentials::parse(shop.shop.platform, &shop.credentials)?;
        let base = |platform: Platform| {
            credentials
                .api_base()
                .map(str::to_owned)
                .or_else(|| self.settings.platform(platform).map(|p| p.api_base.clone()))
                .unwrap_or_default()
        };
        let api = adapter::Api {
            client: self.http.clone(),
            base: base(shop.shop.platform),
        };
        let adapter: Arc<dyn ChannelAdapter> = match credentials {
            Credentials::Shopee(credentials) => Arc::new(shopee::Shopee { credentials, api }),
            Credentials::Lazada(credentials) => Arc::new(lazada::Lazada { credentials, api }),
            Credentials::Tiktok(credentials) => Arc::new(tiktok::Tiktok { credentials, api }),
            Credentials::Web(_) => Arc::new(web::Web {
                shop: shop.shop.id,
                hub: self.hub.clone(),
            }),
            Credentials::NotConnected => return Err(ChannelError::NotConnected),
        };
        Ok(Connected {
            shop: shop.shop.clone(),
            account: shop.account_id.clone(),
            adapter,
        })
    }

    /// Reads every shop again; shops whose credentials do not parse are
    /// logged and left out.
    pub async fn reload(&self) -> Result<(), ChannelError> {
        let shops = self.store.channel_shops(None).await?;
        let mut connected = HashMap::new();
        for shop in &shops {
            if !shop.shop.platform.has_channel() {
                continue;
            }
            match self.connect(shop) {
                Ok(c) => {
                    connected.insert(shop.shop.id, c);
                }
                Err(ChannelError::NotConnected) => {}
                Err(err) => tracing::warn!(
                    shop = %shop.shop.key, platform = %shop.shop.platform, error = %err,
                    "shop credentials do not parse; the shop is not connected"
                ),
            }
        }
        let mut registry = self.registry.write().await;
        registry.shops = connected;
        registry.loaded_at = Some(Instant::now());
        Ok(())
    }

    async fn fresh(&self, max_age: Duration) -> Result<(), ChannelError> {
        let stale = {
            let registry = self.registry.read().await;
            registry.loaded_at.is_none_or(|at| at.elapsed() >= max_age)
        };
        if stale {
            self.reload().await?;
        }
        Ok(())
    }

    /// The connected shops of a platform.
    pub async fn connected(&self, platform: Platform) -> Result<Vec<Connected>, ChannelError> {
        self.fresh(REGISTRY_TTL).await?;
        let registry = self.registry.read().await;
        Ok(registry
            .shops
            .values()
            .filter(|c| c.shop.platform == platform)
            .cloned()
            .collect())
    }

    /// Reads the shops again unless that happened in the last seconds; for
    /// a push that names a shop kedai does not know yet.
    pub async fn reload_soon(&self) -> Result<(), ChannelError> {
        self.fresh(REGISTRY_MIN_RELOAD).await
    }

    /// One shop's connection; `NotConnected` without credentials.
    pub async fn connected_shop(&self, shop: ShopId) -> Result<Connected, ChannelError> {
        self.fresh(REGISTRY_TTL).await?;
        if let Some(c) = self.registry.read().await.shops.get(&shop) {
            return Ok(c.clone());
        }
        // Maybe connected since the last read.
        self.reload_soon().await?;
        self.registry
            .read()
            .await
            .shops
            .get(&shop)
            .cloned()
            .ok_or(ChannelError::NotConnected)
    }

    /// Checks a reply a person is about to send to `conversation` against
    /// its platform's chat rules; the error names what is not allowed.
    pub async fn check_reply(
        &self,
        tenant: crate::domain::TenantId,
        conversation: crate::domain::ConversationId,
        text: &str,
    ) -> Result<(), ChannelError> {
        let Some(shop) = self.store.conversation_shop(tenant, conversation).await? else {
            // Not found is the store's to report when the reply is added.
            return Ok(());
        };
        let findings = rules::check(shop.platform, text, &self.allowed_hosts(&shop));
        if findings.is_empty() {
            Ok(())
        } else {
            Err(ChannelError::NotAllowed(rules::explain(&findings)))
        }
    }

    /// Starts the background work: outbox delivery, event dispatch,
    /// reconciliation and the deadline timer.
    pub fn spawn(self: &Arc<Self>, cancel: CancellationToken) -> JoinSet<()> {
        let mut set = JoinSet::new();
        set.spawn(outbox::run(self.clone(), cancel.clone()));
        set.spawn(events::run(self.clone(), cancel.clone()));
        set.spawn(reconcile::run(self.clone(), cancel.clone()));
        set.spawn(deadlines::run(self.clone(), cancel));
        set
    }
}
