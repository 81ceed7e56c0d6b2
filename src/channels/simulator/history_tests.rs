//! `channels::history` against the simulated marketplaces: each
//! platform's real adapter lists conversations and messages from the fake
//! list APIs (signed, paged), and the pulled lines pair every buyer
//! message with the seller's reply that answered it.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use secrecy::SecretString;

use super::world::{SimMessage, World};
use super::{serve_fakes, shops};
use crate::channels::adapter::{Api, ChannelAdapter};
use crate::channels::credentials::Credentials;
use crate::channels::{history, lazada, shopee, tiktok};
use crate::domain::ShopKey;

fn adapter(credentials: Credentials, base: &str) -> Arc<dyn ChannelAdapter> {
    let api = Api {
        client: reqwest::Client::new(),
        base: base.to_owned(),
    };
    match credentials {
        Credentials::Shopee(credentials) => Arc::new(shopee::Shopee { credentials, api }),
        Credentials::Lazada(credentials) => Arc::new(lazada::Lazada { credentials, api }),
        Credentials::Tiktok(credentials) => Arc::new(tiktok::Tiktok { credentials, api }),
        _ => panic!("not a marketplace"),
    }
}

#[tokio::test]
async fn every_platforms_history_pairs_buyer_messages_with_the_replies_people_gave() {
    let mut world = World {
        shops: shops(1),
        ..World::default()
    };
    let now = Utc::now();
    let mut buyers = Vec::new();
    for shop in 0..world.shops.len() {
        let platform = world.shops[shop].platform;
        let buyer = super::buyer_id(platform, shop, 1);
        let thread = world.thread_for(shop, &buyer, "Siti");
        buyers.push(buyer);
        let said = [
            (true, "kak ready size L?", 50),
            (false, "Ready kak.", 40),
            (false, "Mau warna apa?", 39),
            (true, "hitam ya", 30),
            (true, "kirim hari ini bisa?", 20),
            (false, "Bisa kak, sebelum jam 3.", 10),
        ];
        for (from_buyer, text, minutes_ago) in said {
            let id = world.message_id(platform);
            world.threads[thread].messages.push(SimMessage {
                id,
                from_buyer,
                text: text.into(),
                sent_at: now - Duration::minutes(minutes_ago),
            });
        }
    }
    let sims = world.shops.clone();
    let world = Arc::new(Mutex::new(world));
    let bases = serve_fakes(world).await.unwrap();
    for (sim, buyer) in sims.into_iter().zip(buyers) {
        let base = &bases[&sim.platform];
        let raw = SecretString::from(sim.credentials(base).to_string());
        let adapter = adapter(Credentials::parse(sim.platform, &raw).unwrap(), base);
        let pulled = history::pull(adapter.as_ref(), now - Duration::days(1))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", sim.platform));
        let key = ShopKey::parse(&sim.key).unwrap();
        let lines = history::lines(&key, &pulled);
        let got: Vec<(&str, Option<&str>)> = lines
            .iter()
            .map(|l| (l.text.as_str(), l.human_reply.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("kak ready size L?", Some("Ready kak.\nMau warna apa?")),
                ("hitam ya", None),
                ("kirim hari ini bisa?", Some("Bisa kak, sebelum jam 3.")),
            ],
            "{}",
            sim.platform
        );
        assert!(
            lines
                .iter()
                .all(|l| l.shop == sim.key && l.buyer_id == buyer),
            "{}: {lines:?}",
            sim.platform
        );
    }
}
