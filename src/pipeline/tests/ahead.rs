//! Translations prepared ahead: every FAQ answer a buyer gets is counted,
//! and the most-asked entries are translated first.

use super::*;
use crate::store::{KbChange, KbDocument, KbKind, KbStore};

#[tokio::test]
async fn an_faq_answer_counts_its_entry_in_the_buyers_language() {
    let f = fixture().await;
    let message = f.say("m-1", "budi", "how long does shipping take?").await;
    let trace = f.run(&f.pipeline(None), message).await;
    assert_eq!(trace["answer_kind"], "faq", "{trace:#}");
    let asked = f.store.faq_asked(f.shop.tenant_id).await.unwrap();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(
        (
            asked[0].entry_id.as_str(),
            asked[0].lang.as_str(),
            asked[0].asked
        ),
        ("shipping-time", "en", 1)
    );
    let message = f.say("m-2", "citra", "how long does shipping take?").await;
    f.run(&f.pipeline(None), message).await;
    let asked = f.store.faq_asked(f.shop.tenant_id).await.unwrap();
    assert_eq!(asked[0].asked, 2, "one upsert per answered message");
}

#[tokio::test]
async fn the_most_asked_entry_is_translated_ahead_first() {
    let f = fixture().await;
    let tenant = f.shop.tenant_id;
    // Its buyers write Indonesian; the entries are in English.
    f.store
        .update_shop(
            tenant,
            &f.shop.key,
            crate::store::ShopUpdate {
                market: Some(crate::domain::Market {
                    language: Some(crate::domain::LanguageCode::parse("id").unwrap()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            "test",
        )
        .await
        .unwrap();
    let faq = |id: &str, answer: &str| {
        KbChange::Put(KbDocument {
            kind: KbKind::Faq,
            id: id.into(),
            lang: "en".into(),
            body: serde_json::json!({"questions": [format!("About {id}?")], "answer": answer}),
        })
    };
    f.store
        .kb_apply(
            tenant,
            &[
                faq("a-returns", "Returns are free within 7 days."),
                faq("b-cod", "Cash on delivery is available."),
                faq("c-warranty", "Every gadget has a warranty."),
            ],
            "test",
        )
        .await
        .unwrap();
    for (entry, times) in [("c-warranty", 3), ("b-cod", 1)] {
        for _ in 0..times {
            f.store.record_faq_asked(tenant, entry, "id").await.unwrap();
        }
    }
    let pipeline = f.pipeline(Some("Terjemahan jawaban penjual."));
    let mut ahead = crate::pipeline::prepare::TenantAhead::default();
    let mut order = Vec::new();
    for _ in 0..3 {
        let pass = pipeline
            .prepare_translations(f.store.as_ref(), tenant, 1, &mut ahead)
            .await
            .unwrap();
        assert_eq!(pass.written(), 1, "{pass:?}");
        let stored = f.store.list_translations(tenant, None, 10).await.unwrap();
        let new = stored
            .into_iter()
            .map(|t| (t.key.entry_id, t.key.lang))
            .find(|(id, _)| !order.iter().any(|(o, _): &(String, String)| o == id))
            .unwrap();
        order.push(new);
    }
    let ids: Vec<&str> = order.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["c-warranty", "b-cod", "a-returns"],
        "most asked first, then by id"
    );
    assert!(order.iter().all(|(_, lang)| lang == "id"));
    let pass = pipeline
        .prepare_translations(f.store.as_ref(), tenant, 1, &mut ahead)
        .await
        .unwrap();
    assert!(pass.complete && pass.written() == 0, "{pass:?}");
}
