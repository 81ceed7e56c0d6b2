//! Synthetic buyer traffic for the ingest benchmark: short, multilingual
//! marketplace messages spread over a fixed pool of buyers, with an optional
//! share of redeliveries.
//!
//! A redelivery repeats an earlier request byte for byte, as a marketplace
//! webhook retry does, so the server's idempotency on `external_id` is what
//! gets exercised. Each buyer writes in one language, and buyer ids carry a
//! per-invocation tag so repeated benchmarks against one server start fresh
//! conversations instead of growing the same ones.

use std::collections::VecDeque;

use chrono::SecondsFormat;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How many recent deliveries a redelivery may pick from: recent enough to
/// race the original's commit now and then, as real retries do.
const REDELIVERY_WINDOW: usize = 1024;

struct Language {
    buyers: &'static [&'static str],
    /// `{order}` is replaced by a random order number.
    lines: &'static [&'static str],
}

const LANGUAGES: [Language; 5] = [
    Language {
        buyers: &["John Tan", "Emily Wong", "Mark Reyes"],
        lines: &[
            "where is my order #{order}?",
            "hi, is the black one still in stock?",
            "can I change the delivery address for order #{order}?",
            "the package arrived damaged, how do I return it?",
        ],
    },
    Language {
        buyers: &["Budi Santoso", "Siti Rahma", "Dewi Lestari"],
        lines: &[
            "apakah ukuran XL masih ada?",
            "kak, pesanan #{order} kok belum dikirim ya?",
            "bisa COD ke Surabaya?",
            "barangnya ori kan kak?",
        ],
    },
    Language {
        buyers: &["Somchai Jaidee", "Ploy Chaiyaporn", "Nattapong K."],
        lines: &[
            "สินค้ายังมีอยู่ไหมคะ",
            "คำสั่งซื้อ #{order} จะส่งเมื่อไหร่ครับ",
            "มีไซส์ M ไหมคะ",
        ],
    },
    Language {
        buyers: &["Nguyễn Thị Lan", "Trần Minh Đức", "Phạm Hoa"],
        lines: &[
            "shop ơi, đơn #{order} của mình giao chưa ạ?",
            "áo này còn màu trắng không shop?",
            "có đổi size được không ạ?",
        ],
    },
    Language {
        buyers: &["Ana Souza", "João Pereira", "Mariana Costa"],
        lines: &[
            "meu pedido #{order} ainda não chegou, podem verificar?",
            "vocês entregam em Recife?",
            "tem no tamanho G?",
        ],
    },
];

pub(crate) struct GeneratorParams {
    pub shop: String,
    /// Distinct buyers, hence conversations, the messages are spread over.
    pub conversations: u32,
    /// Probability that a delivery repeats an earlier one.
    pub duplicates: f64,
    pub seed: u64,
}

/// One request body, ready to send.
pub(crate) struct Delivery {
    pub body: Vec<u8>,
    pub redelivery: Redelivery,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Redelivery {
    First,
    Repeat,
}

pub(crate) struct MessageGenerator {
    rng: StdRng,
    shop: String,
    buyer_tag: String,
    conversations: u32,
    duplicates: f64,
    recent: VecDeque<Vec<u8>>,
}

impl MessageGenerator {
    pub fn new(params: GeneratorParams) -> MessageGenerator {
        assert!(params.conversations > 0, "conversations must be > 0");
        assert!(
            (0.0..=1.0).contains(&params.duplicates),
            "duplicates must be within 0..=1, got {}",
            params.duplicates
        );
        let mut rng = StdRng::seed_from_u64(params.seed);
        let buyer_tag = format!("bench-{:08x}", rng.random::<u32>());
        MessageGenerator {
            rng,
            shop: params.shop,
            buyer_tag,
            conversations: params.conversations,
            duplicates: params.duplicates,
            recent: VecDeque::with_capacity(REDELIVERY_WINDOW),
        }
    }

    pub fn next_delivery(&mut self) -> Delivery {
        if !self.recent.is_empty() && self.rng.random_bool(self.duplicates) {
            let pick = self.rng.random_range(0..self.recent.len());
            return Delivery {
                body: self.recent[pick].clone(),
                redelivery: Redelivery::Repeat,
            };
        }
        let body = self.fresh_body();
        if self.recent.len() == REDELIVERY_WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(body.clone());
        Delivery {
            body,
            redelivery: Redelivery::First,
        }
    }

    fn fresh_body(&mut self) -> Vec<u8> {
        let buyer = self.rng.random_range(0..self.conversations) as usize;
        let language = &LANGUAGES[buyer % LANGUAGES.len()];
        let name = language.buyers[(buyer / LANGUAGES.len()) % language.buyers.len()];
        let line = language.lines[self.rng.random_range(0..language.lines.len())];
        let order: u32 = self.rng.random_range(100_000..1_000_000);
        let text = line.replace("{order}", &order.to_string());
        let external_id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        let body = serde_json::json!({
            "shop": self.shop,
            "external_id": external_id.to_string(),
            "buyer": {"id": format!("{}-{buyer}", self.buyer_tag), "name": name},
            "text": text,
            "sent_at": chrono::Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        serde_json::to_vec(&body).expect("a JSON value always serializes")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn generator(conversations: u32, duplicates: f64) -> MessageGenerator {
        MessageGenerator::new(GeneratorParams {
            shop: "bench-web".into(),
            conversations,
            duplicates,
            seed: 7,
        })
    }

    fn parse(delivery: &Delivery) -> serde_json::Value {
        serde_json::from_slice(&delivery.body).expect("body is valid JSON")
    }

    #[test]
    fn bodies_are_valid_ingest_requests() {
        let mut generator = generator(50, 0.0);
        for _ in 0..200 {
            let body = parse(&generator.next_delivery());
            assert_eq!(body["shop"], "bench-web");
            uuid::Uuid::parse_str(body["external_id"].as_str().unwrap()).unwrap();
            assert!(!body["buyer"]["id"].as_str().unwrap().is_empty());
            assert!(!body["buyer"]["name"].as_str().unwrap().is_empty());
            let text = body["text"].as_str().unwrap();
            assert!(!text.is_empty() && !text.contains("{order}"), "{text}");
            chrono::DateTime::parse_from_rfc3339(body["sent_at"].as_str().unwrap()).unwrap();
        }
    }

    #[test]
    fn buyers_come_from_the_conversation_pool() {
        let mut generator = generator(3, 0.0);
        let buyers: HashSet<String> = (0..300)
            .map(|_| parse(&generator.next_delivery())["buyer"]["id"].to_string())
            .collect();
        assert_eq!(buyers.len(), 3, "{buyers:?}");
    }

    #[test]
    fn without_duplicates_every_external_id_is_new() {
        let mut generator = generator(500, 0.0);
        let ids: HashSet<String> = (0..1000)
            .map(|_| parse(&generator.next_delivery())["external_id"].to_string())
            .collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn duplicates_repeat_an_earlier_body_verbatim() {
        let mut generator = generator(500, 1.0);
        let first = generator.next_delivery();
        assert_eq!(first.redelivery, Redelivery::First);
        for _ in 0..10 {
            let again = generator.next_delivery();
            assert_eq!(again.redelivery, Redelivery::Repeat);
            assert_eq!(again.body, first.body);
        }
    }

    #[test]
    fn duplicate_share_is_roughly_the_fraction_asked_for() {
        let mut generator = generator(500, 0.25);
        let repeats = (0..4000)
            .filter(|_| generator.next_delivery().redelivery == Redelivery::Repeat)
            .count();
        assert!((800..1200).contains(&repeats), "{repeats}");
    }
}
