//! Plumbing tests of the pipeline with fake understand, knowledge and chat
//! stages and a real store, split by what they cover; this file holds the
//! fakes and the fixture. The real-model pipeline is tested in tests/it.

mod ahead;
mod answers;
mod handoffs;
mod lanes;
mod replayed;
mod translations;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;

use super::answer::whole_sentences;
use super::ports::{Knowledge, KnowledgeHit, StageError, Understand, Understood, Writer, Written};
use super::{templates, Pipeline, PipelineConfig, PipelineParts};
use crate::config::Settings;
use crate::domain::{
    BuyerRef, Custody, ExternalMessageId, InboundMessage, MessageId, MessageText, Platform,
    PlatformBuyerId, ShopKey, TenantId, TenantName, TextLimits,
};
use crate::inference::chat::ChatMessage;
use crate::queue::JobHandler;
use crate::store::{
    BuyerProfile, ConversationStore, DecisionStore, Job, NewShop, OrderItem, OrderRecord,
    OrderStore, Shop, SqliteStore, TenantStore, TrackingEvent, TranslationStore,
    JOB_INBOUND_MESSAGE,
};

struct FakeUnderstand;

#[async_trait]
impl Understand for FakeUnderstand {
    async fn understand(&self, text: &str, history: &[String]) -> Result<Understood, StageError> {
        let lower = text.to_lowercase();
        let indonesian = lower.contains("paket") || lower.contains("pengiriman");
        let (intent, confidence) = if lower.contains("paket") || lower.contains("parcel") {
            ("order_status", 0.95)
        } else if lower.contains("ship") || lower.contains("pengiriman") {
            ("shipping_time_cost", 0.9)
        } else if lower.contains("thank") {
            ("thanks", 0.97)
        } else if lower.contains("broken") {
            ("model_failure", 0.0)
        } else if lower.contains("soft") {
            ("product_specs", 0.97)
        } else {
            ("product_specs", 0.9)
        };
        if intent == "model_failure" {
            return Err(StageError {
                stage: "understand",
                message: "the classifier could not run".into(),
                retryable: false,
            });
        }
        Ok(Understood {
            language: Some(if indonesian { "id" } else { "en" }.into()),
            intent: intent.into(),
            confidence,
            out_of_scope: false,
            sentiment: "neutral".into(),
            anger: if lower.contains("!!!") { 2 } else { 0 },
            anger_probability: if lower.contains("!!!") { 0.9 } else { 0.1 },
            urgent: false,
            human_requested: false,
            repeated: history.iter().any(|h| h == text),
            binding_request: lower.contains("discount").then(|| "discount".into()),
            // Order numbers shaped like the demo shop's.
            entities: text
                .split(|c: char| c.is_whitespace() || c == '?' || c == ',')
                .filter(|w| w.starts_with("SPE-2611-"))
                .map(|w| ("order_number".to_string(), w.to_string()))
                .collect(),
            models: vec!["fake-understand".into()],
            learned_route: None,
        })
    }
}

struct FakeKnowledge;

#[async_trait]
impl Knowledge for FakeKnowledge {
    async fn search(
        &self,
        _tenant: TenantId,
        query: &str,
        _limit: usize,
    ) -> Result<Vec<KnowledgeHit>, StageError> {
        let faq = KnowledgeHit {
            id: "faq:shipping-time".into(),
            kind: "faq".into(),
            title: "How long does shipping take?".into(),
            text: "How long does shipping take? Thailand 3-6 days.".into(),
            answer: Some("Parcels to Thailand take 3-6 days from Guangzhou.".into()),
            language: Some("en".into()),
            score: 0.03,
            similarity: Some(if query.contains("ship") || query.contains("pengiriman") {
                0.93
            } else {
                0.84
            }),
            fields: serde_json::Value::Null,
            matched_variants: Vec::new(),
        };
        let tee = KnowledgeHit {
            id: "product:TEE-1".into(),
            kind: "product".into(),
            title: "Oversized Cotton Tee".into(),
            text: "Oversized Cotton Tee. 100% combed cotton, 240 gsm.".into(),
            answer: None,
            language: Some("en".into()),
            score: 0.02,
            similarity: Some(0.83),
            fields: serde_json::json!({"sku": "TEE-1", "name": "Oversized Cotton Tee",
                                       "tags": ["tee", "t-shirt"]}),
            matched_variants: Vec::new(),
        };
        Ok(if query.contains("tee") {
            vec![faq, tee]
        } else {
            vec![faq]
        })
    }
}

struct FakeWriter(&'static str);

#[async_trait]
impl Writer for FakeWriter {
    fn model_id(&self) -> String {
        "fake-writer".into()
    }
    async fn write(
        &self,
        _messages: Vec<ChatMessage>,
        _max_tokens: usize,
    ) -> Result<Written, StageError> {
        Ok(Written::text(self.0))
    }
}

struct Fixture {
    store: Arc<SqliteStore>,
    shop: Shop,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::TempDir::new().unwrap();
    let mut settings = Settings::defaults().store;
    settings.data_dir = dir.path().to_path_buf();
    let store = Arc::new(
        SqliteStore::open(&settings, crate::store::Schema::Migrate)
            .await
            .unwrap(),
    );
    let tenant = store
        .create_tenant(&TenantName::parse("t").unwrap())
        .await
        .unwrap();
    let shop = store
        .add_shop(NewShop {
            tenant_id: tenant.id,
            platform: Platform::Shopee,
            key: ShopKey::parse("shop-1").unwrap(),
            name: "Shop".into(),
            market: crate::domain::Market::default(),
            credentials: secrecy::SecretString::from("{}"),
        })
        .await
        .unwrap();
    let now = Utc::now();
    let order = OrderRecord {
        order_number: "SPE-1".into(),
        buyer: Some(PlatformBuyerId::parse("nadia").unwrap()),
        status: "in_transit".into(),
        currency: "USD".into(),
        total_cents: 2580,
        items: vec![OrderItem {
            sku: "TEE-1".into(),
            name: "Tee".into(),
            quantity: 2,
            unit_price_cents: 1290,
        }],
        carrier: Some("J&T Express".into()),
        tracking_number: Some("JT0123456789ID".into()),
        tracking_events: vec![TrackingEvent {
            at: now - chrono::Duration::days(1),
            status: "in_transit".into(),
            location: Some("Jakarta".into()),
            description: None,
        }],
        placed_at: now - chrono::Duration::days(3),
        destination: Some("ID".into()),
        expected_delivery: Some(now + chrono::Duration::days(2)),
    };
    let profile = BuyerProfile {
        platform_buyer_id: PlatformBuyerId::parse("nadia").unwrap(),
        display_name: Some("Nadia".into()),
        language: Some("id".into()),
        member_level: Some("gold".into()),
        is_vip: Some(false),
        lifetime_value_cents: Some(9000),
        currency: Some("USD".into()),
    };
    store
        .upsert_order(&shop, &order, Some(&profile))
        .await
        .unwrap();
    Fixture {
        store,
        shop,
        _dir: dir,
    }
}

impl Fixture {
    fn pipeline(&self, writer: Option<&'static str>) -> Pipeline {
        self.pipeline_with(writer, Arc::new(crate::kb::embed::HashingEmbedder::new(64)))
    }

    fn pipeline_with(
        &self,
        writer: Option<&'static str>,
        meaning: Arc<dyn crate::kb::Embedder>,
    ) -> Pipeline {
        Pipeline::new(PipelineParts {
            meaning: Some(meaning),
            ..self.parts(writer)
        })
    }

    /// The parts of [`Fixture::pipeline`], for a test that swaps one.
    fn parts(&self, writer: Option<&'static str>) -> PipelineParts {
        PipelineParts {
            store: self.store.clone(),
            understand: Arc::new(FakeUnderstand),
            knowledge: Some(Arc::new(FakeKnowledge)),
            writer: writer.map(|w| Arc::new(FakeWriter(w)) as Arc<dyn Writer>),
            meaning: Some(Arc::new(crate::kb::embed::HashingEmbedder::new(64))),
            policy: Settings::defaults().policy,
            config: PipelineConfig::default(),
        }
    }

    async fn run(&self, pipeline: &Pipeline, message: MessageId) -> serde_json::Value {
        pipeline
            .process(self.shop.tenant_id, message, Utc::now())
            .await
            .unwrap()
    }

    async fn say(&self, external: &str, buyer: &str, text: &str) -> MessageId {
        self.store
            .ingest(
                &self.shop,
                &InboundMessage {
                    shop: self.shop.key.clone(),
                    external_id: ExternalMessageId::parse(external).unwrap(),
                    buyer: BuyerRef {
                        id: PlatformBuyerId::parse(buyer).unwrap(),
                        name: None,
                    },
                    text: MessageText::parse(text, TextLimits { max_chars: 5000 }).unwrap(),
                    sent_at: Utc::now(),
                    sender: crate::domain::Sender::Buyer,
                    attachment: None,
                },
                3,
            )
            .await
            .unwrap()
            .message_id
    }

    /// Ingests `text` as `buyer`'s first message and runs the pipeline
    /// on it, with `writer` as the chat model.
    async fn first_message(
        &self,
        buyer: &str,
        text: &str,
        writer: Option<&'static str>,
    ) -> serde_json::Value {
        let message = self.say("m-1", buyer, text).await;
        self.pipeline(writer)
            .process(self.shop.tenant_id, message, Utc::now())
            .await
            .unwrap()
    }
}
