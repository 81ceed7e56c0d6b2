//! The seller's answers in the buyer's language: machine translations
//! waiting for a person, verified ones sent and reused, and ones that lose
//! a number.

use super::*;

/// An embedder that finds every text to mean the same: lets plumbing tests
/// reach a verified translation.
struct SameMeaning;

impl crate::kb::Embedder for SameMeaning {
    fn model_id(&self) -> &str {
        "same-meaning"
    }
    fn dim(&self) -> usize {
        2
    }
    fn embed(
        &self,
        texts: &[&str],
        _role: crate::inference::EmbedRole,
    ) -> Result<Vec<Vec<f32>>, crate::kb::KbError> {
        Ok(texts.iter().map(|_| vec![1.0, 0.0]).collect())
    }
}

#[tokio::test]
async fn h1_m1_an_unverified_translation_waits_for_a_person_and_an_approved_one_is_sent() {
    let f = fixture().await;
    let pipeline = f.pipeline(Some(
        "Pengiriman ke Thailand butuh 3-6 hari dari Guangzhou.",
    ));
    let first = f.say("m-1", "budi", "berapa lama pengiriman?").await;
    let trace = f.run(&pipeline, first).await;
    assert_eq!(trace["answer_kind"], "faq_translated", "{trace:#}");
    assert_eq!(trace["answer"]["verification"]["passed"], false);
    assert_eq!(trace["layer"], 2);
    assert_eq!(trace["action"], "draft");
    assert_eq!(trace["reasons"][0]["reason"], "unverified");
    let waiting = f
        .store
        .list_translations(
            f.shop.tenant_id,
            Some(crate::store::TranslationStatus::Unverified),
            10,
        )
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    f.store
        .review_translation(
            f.shop.tenant_id,
            &waiting[0].key,
            &crate::store::TranslationReview::Approve {
                text: Some("Pengiriman ke Thailand 3-6 hari dari Guangzhou.".into()),
            },
            "agent:ana",
        )
        .await
        .unwrap();
    let second = f.say("m-2", "citra", "berapa lama pengiriman?").await;
    let trace = f.run(&f.pipeline(None), second).await;
    assert_eq!(trace["answer_kind"], "faq_approved", "{trace:#}");
    assert_eq!(trace["layer"], 1);
    assert_eq!(
        trace["reply"],
        "Pengiriman ke Thailand 3-6 hari dari Guangzhou."
    );

    // Another tenant's buyer never gets this tenant's translation.
    let other = f
        .store
        .create_tenant(&TenantName::parse("u").unwrap())
        .await
        .unwrap();
    let other_shop = f
        .store
        .add_shop(NewShop {
            tenant_id: other.id,
            platform: Platform::Shopee,
            key: ShopKey::parse("shop-1").unwrap(),
            name: "Other".into(),
            market: crate::domain::Market::default(),
            credentials: secrecy::SecretString::from("{}"),
        })
        .await
        .unwrap();
    let theirs = f
        .store
        .ingest(
            &other_shop,
            &InboundMessage {
                shop: other_shop.key.clone(),
                external_id: ExternalMessageId::parse("m-1").unwrap(),
                buyer: BuyerRef {
                    id: PlatformBuyerId::parse("dewi").unwrap(),
                    name: None,
                },
                text: MessageText::parse("berapa lama pengiriman?", TextLimits { max_chars: 100 })
                    .unwrap(),
                sent_at: Utc::now(),
                sender: crate::domain::Sender::Buyer,
                attachment: None,
            },
            3,
        )
        .await
        .unwrap();
    let trace = f
        .pipeline(None)
        .process(other.id, theirs.message_id, Utc::now())
        .await
        .unwrap();
    assert_ne!(trace["answer_kind"], "faq_approved", "{trace:#}");
    assert!(trace["reply"].is_null());
}

#[tokio::test]
async fn a_verified_translation_is_sent_and_reused() {
    let f = fixture().await;
    let pipeline = f.pipeline_with(
        Some("Pengiriman ke Thailand butuh 3-6 hari dari Guangzhou."),
        Arc::new(SameMeaning),
    );
    let first = f.say("m-1", "budi", "berapa lama pengiriman?").await;
    let trace = f.run(&pipeline, first).await;
    assert_eq!(trace["answer"]["verification"]["passed"], true, "{trace:#}");
    assert_eq!(trace["layer"], 1);
    assert_eq!(trace["action"], "send");
    let second = f.say("m-2", "citra", "berapa lama pengiriman?").await;
    let trace = f.run(&f.pipeline(None), second).await;
    assert_eq!(trace["answer_kind"], "faq_translated", "{trace:#}");
    assert_eq!(
        trace["layer"], 1,
        "the stored, verified text needs no model"
    );
}

#[tokio::test]
async fn a_translation_that_drops_a_number_is_not_sent() {
    let f = fixture().await;
    let pipeline = f.pipeline_with(
        Some("Pengiriman ke Thailand butuh beberapa hari dari Guangzhou."),
        Arc::new(SameMeaning),
    );
    let message = f.say("m-1", "budi", "berapa lama pengiriman?").await;
    let trace = f.run(&pipeline, message).await;
    assert_eq!(trace["layer"], 2, "{trace:#}");
    let checks = trace["answer"]["verification"]["checks"]
        .as_array()
        .unwrap();
    let facts = checks.iter().find(|c| c["check"] == "facts").unwrap();
    assert_eq!(facts["passed"], false);
    assert_eq!(facts["problems"][0], "missing 3");
}
