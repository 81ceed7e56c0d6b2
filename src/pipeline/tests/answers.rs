//! Messages the pipeline answers itself: from order records, the
//! seller's FAQ and templates, and the clarifying questions it asks first.

use super::*;

#[tokio::test]
async fn order_status_is_answered_from_the_record_in_the_buyers_language() {
    let f = fixture().await;
    let message = f.say("m-1", "nadia", "paket saya di mana kak?").await;
    let pipeline = f.pipeline(None);
    let trace = pipeline
        .process(f.shop.tenant_id, message, Utc::now())
        .await
        .unwrap();
    assert_eq!(trace["layer"], 1, "{trace:#}");
    assert_eq!(trace["action"], "send");
    assert_eq!(trace["answer_kind"], "order_status");
    let reply = trace["reply"].as_str().unwrap();
    assert!(reply.contains("dalam perjalanan"), "{reply}");
    assert!(reply.contains("JT0123456789ID"), "{reply}");
    assert_eq!(trace["sources"][0]["id"], "order:SPE-1");

    let conversation = f
        .store
        .message_conversation(f.shop.tenant_id, message)
        .await
        .unwrap()
        .unwrap();
    let detail = f
        .store
        .conversation(f.shop.tenant_id, conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.messages.len(), 2);
    assert_eq!(detail.messages[1].text.as_str(), reply);
    assert_eq!(detail.summary.layer.map(|l| l.get()), Some(1));

    // The job runs again (at-least-once delivery): nothing new.
    let again = pipeline
        .process(f.shop.tenant_id, message, Utc::now())
        .await
        .unwrap();
    assert_eq!(again["reply"], trace["reply"]);
    let detail = f
        .store
        .conversation(f.shop.tenant_id, conversation)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.messages.len(), 2);
}

#[tokio::test]
async fn a_close_faq_match_answers_with_the_sellers_words() {
    let f = fixture().await;
    let trace = f
        .first_message("somchai", "how long to ship to thailand?", None)
        .await;
    assert_eq!(trace["answer_kind"], "faq");
    assert_eq!(
        trace["reply"],
        "Parcels to Thailand take 3-6 days from Guangzhou."
    );
    assert_eq!(trace["layer"], 1);
}

#[test]
fn a_reply_cut_by_the_token_budget_ends_with_its_last_whole_sentence() {
    assert_eq!(
        whole_sentences("Yes, it fits. The blue one ships today and the"),
        "Yes, it fits."
    );
    assert_eq!(
        whole_sentences("It weighs 1.5 kg. The box is 30.5 cm and"),
        "It weighs 1.5 kg."
    );
    assert_eq!(
        whole_sentences("Ya kak, ready. Dikirim hari"),
        "Ya kak, ready."
    );
    assert_eq!(whole_sentences("有货。今天发"), "有货。");
    assert_eq!(
        whole_sentences("no sentence ends here at all"),
        "no sentence ends here at all",
        "nothing to cut back to"
    );
    assert_eq!(
        whole_sentences("Ok. and then a very long unfinished sentence that goes on"),
        "Ok. and then a very long unfinished sentence that goes on",
        "too little would be left"
    );
}

#[tokio::test]
async fn thanks_get_a_courteous_template_without_generation() {
    let f = fixture().await;
    let trace = f
        .first_message("nadia", "thank you so much", Some("a generated reply"))
        .await;
    assert_eq!(trace["layer"], 1, "{trace}");
    assert_eq!(trace["answer_kind"], "pleasantry");
    assert_eq!(
        trace["reply"],
        templates::pleasantry_reply(templates::Pleasantry::Thanks, "en").text
    );
    assert!(trace["timings_ms"].get("draft").is_none());
    assert!(trace.get("generation").is_none());
}

#[tokio::test]
async fn an_order_question_without_an_order_asks_for_the_order_number() {
    let f = fixture().await;
    let trace = f.first_message("budi", "paket saya di mana?", None).await;
    assert_eq!(trace["answer_kind"], "clarify", "{trace:#}");
    assert_eq!(trace["clarification"], "which_order");
    assert_eq!(trace["layer"], 1);
    assert_eq!(
        trace["reply"],
        crate::pipeline::clarify::question(
            crate::pipeline::clarify::Clarification::WhichOrder,
            "id"
        )
    );
}

#[tokio::test]
async fn an_order_number_not_among_the_buyers_orders_is_never_answered_with_a_guess() {
    let f = fixture().await;
    // Nadia has an order on its way, but asks about another number: no
    // status of any order is told, and the chat model writes nothing.
    let guess = Some("Pesanan SPE-2611-00999 sudah sampai hari ini, kak.");
    let first = f
        .say(
            "m-1",
            "nadia",
            "Kak, paket pesanan SPE-2611-00999 sudah sampai mana ya?",
        )
        .await;
    let trace = f.run(&f.pipeline(guess), first).await;
    assert_eq!(trace["answer_kind"], "clarify", "{trace:#}");
    assert_eq!(trace["clarification"], "unknown_order");
    assert_eq!(trace["layer"], 1);
    assert_eq!(
        trace["reply"],
        crate::pipeline::clarify::question(
            crate::pipeline::clarify::Clarification::UnknownOrder,
            "id"
        )
    );
    assert!(!trace["reply"].as_str().unwrap().contains("JT0123456789ID"));
    // Asked once; a second unknown number goes to a person, with no
    // written guess, not even as a draft.
    let second = f.say("m-2", "nadia", "paket SPE-2611-00998 kak").await;
    let trace = f.run(&f.pipeline(guess), second).await;
    assert_eq!(trace["layer"], 2, "{trace:#}");
    assert_ne!(trace["action"], "send");
    assert!(trace["reply"].is_null(), "{trace:#}");
    assert!(trace["draft"].is_null(), "{trace:#}");
    assert!(trace["answer"].is_null(), "{trace:#}");
}

#[tokio::test]
async fn a_product_question_naming_no_product_is_asked_about_once() {
    let f = fixture().await;
    let first = f.say("m-1", "budi", "is XL still available?").await;
    let trace = f
        .run(&f.pipeline(Some("Yes, XL is available.")), first)
        .await;
    assert_eq!(trace["answer_kind"], "clarify", "{trace:#}");
    assert_eq!(trace["clarification"], "which_product");
    assert_eq!(trace["action"], "send");
    // The buyer's answer is read with their question; no second question.
    let second = f.say("m-2", "budi", "the black one").await;
    let trace = f
        .run(&f.pipeline(Some("Which product do you mean?")), second)
        .await;
    assert_ne!(trace["answer_kind"], "clarify", "{trace:#}");
    assert_eq!(trace["layer"], 2, "asked once, then a person: {trace:#}");
    // Naming the product after being asked gets an answer.
    let third = f.say("m-3", "citra", "is it soft?").await;
    let trace = f.run(&f.pipeline(None), third).await;
    assert_eq!(trace["answer_kind"], "clarify", "{trace:#}");
    let fourth = f.say("m-4", "citra", "the oversized tee").await;
    let trace = f
        .run(&f.pipeline(Some("Yes, it is 100% combed cotton.")), fourth)
        .await;
    assert_eq!(trace["answer_kind"], "draft", "{trace:#}");
    assert!(
        trace["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == "product:TEE-1"),
        "{trace:#}"
    );
}
