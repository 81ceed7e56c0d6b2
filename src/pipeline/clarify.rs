//! Ask, don't guess: recognise a question the shop cannot answer without
//! one more fact from the buyer (which product, which order, which
//! country), and the one short question to ask them, in their language.
//!
//! Also where the parcel is going, from what the buyer wrote (a country or
//! a city), their orders, and the shop's market, so shipping knowledge is
//! ranked and filtered to that country rather than answered for another.
//!
//! Pure functions; the caller passes the knowledge hits and records.

use std::sync::LazyLock;

use serde::Serialize;

use super::ports::KnowledgeHit;
use crate::domain::Market;
use crate::store::Order;

/// Why the buyer is asked a question instead of answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Clarification {
    /// A product question that names no product.
    WhichProduct,
    /// An order question with no order on record and none named.
    WhichOrder,
    /// An order question naming an order or tracking number that is not
    /// among this buyer's orders: a typo, another account, or an order the
    /// shop never had. Nothing is said about any order until it is checked.
    UnknownOrder,
    /// A shipping question whose answer depends on a country nobody named.
    WhichCountry,
}

/// Intents whose answer depends on which product is meant.
pub const PRODUCT_INTENTS: &[&str] = &[
    "product_specs",
    "size_fit",
    "colour_options",
    "stock_availability",
];

/// Lowest similarity of the best product hit at which the message counts
/// as naming that product even when no word of the product's name or tags
/// appears in it (a name in another language). Measured on the product
/// questions of `kb/eval/replies.jsonl` against our own unnamed probes: see
/// docs/quality.md, "Ask, don't guess".
pub const PRODUCT_NAMED_SIMILARITY: f32 = 0.86;

/// Words of product names and tags that name no product by themselves.
const GENERIC: &[&str] = &[
    "men", "women", "unisex", "kids", "size", "colour", "color", "black", "white", "red", "blue",
    "green", "navy", "pink", "grey", "gray", "shirt", "bag", "shoes", "case", "cable", "charger",
    "with", "and", "for", "the", "new", "premium", "basic", "lite", "slim", "mini", "pro", "kd",
];

fn folded_words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_string)
        .collect()
}

/// Equal, or one a prefix of the other when both are long enough to be
/// the same stem ("oversize" and "oversized").
fn same_word(a: &str, b: &str) -> bool {
    a == b
        || (a.chars().count() >= 5
            && b.chars().count() >= 5
            && (a.starts_with(b) || b.starts_with(a)))
}

/// Whether `text` names one of the products among `hits`: by its SKU, by a
/// distinctive word of its name or tags, or by a close dense match.
pub fn names_a_product(text: &str, hits: &[KnowledgeHit]) -> bool {
    let lower = text.to_lowercase();
    let words = folded_words(text);
    hits.iter().filter(|h| h.kind == "product").any(|hit| {
        let sku = hit.fields["sku"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase();
        if !sku.is_empty() && lower.contains(&sku) {
            return true;
        }
        let mut terms: Vec<String> = folded_words(hit.fields["name"].as_str().unwrap_or(""));
        if let Some(tags) = hit.fields["tags"].as_array() {
            for tag in tags.iter().filter_map(|t| t.as_str()) {
                let tag = tag.to_lowercase();
                if tag.contains(' ') {
                    // A multi-word tag ("power bank") names the product as a
                    // phrase.
                    if lower.contains(&tag) {
                        return true;
                    }
                } else {
                    terms.push(tag);
                }
            }
        }
        let lexical = terms
            .iter()
            .filter(|t| t.chars().count() >= 3 && !GENERIC.contains(&t.as_str()))
            .any(|t| words.iter().any(|w| same_word(w, t)));
        lexical
            || hit
                .similarity
                .is_some_and(|s| s >= PRODUCT_NAMED_SIMILARITY)
    })
}

/// Places buyers write, and the country each is in. Matched as whole words
/// of the lower-cased text (diacritics as written and without).
static PLACES: LazyLock<Vec<(&'static str, &'static str)>> = LazyLock::new(|| {
    let table: &[(&str, &[&str])] = &[
        (
            "TH",
            &[
                "thailand",
                "thai lan",
                "thái lan",
                "tailandia",
                "tailândia",
                "bangkok",
                "chiang mai",
                "phuket",
                "pattaya",
                "ประเทศไทย",
                "กรุงเทพ",
                "เชียงใหม่",
                "泰国",
                "曼谷",
            ],
        ),
        (
            "ID",
            &[
                "indonesia",
                "jakarta",
                "surabaya",
                "bandung",
                "medan",
                "bali",
                "yogyakarta",
                "jogja",
                "semarang",
                "makassar",
                "印尼",
                "印度尼西亚",
                "雅加达",
            ],
        ),
        (
            "VN",
            &[
                "vietnam",
                "viet nam",
                "việt nam",
                "hanoi",
                "ha noi",
                "hà nội",
                "ho chi minh",
                "hồ chí minh",
                "saigon",
                "sai gon",
                "sài gòn",
                "da nang",
                "đà nẵng",
                "越南",
            ],
        ),
        (
            "MY",
            &[
                "malaysia",
                "kuala lumpur",
                "penang",
                "johor",
                "sabah",
                "sarawak",
                "selangor",
                "马来西亚",
                "吉隆坡",
            ],
        ),
        (
            "PH",
            &[
                "philippines",
                "pilipinas",
                "filipinas",
                "manila",
                "cebu",
                "davao",
                "quezon",
                "luzon",
                "visayas",
                "mindanao",
                "makati",
                "菲律宾",
                "马尼拉",
            ],
        ),
        (
            "BR",
            &[
                "brazil",
                "brasil",
                "são paulo",
                "sao paulo",
                "rio de janeiro",
                "brasília",
                "brasilia",
                "belo horizonte",
                "巴西",
            ],
        ),
        ("SG", &["singapore", "singapura", "新加坡"]),
    ];
    table
        .iter()
        .flat_map(|(code, names)| names.iter().map(move |n| (*n, *code)))
        .collect()
});

/// Every country `text` names (a country or a city in it), in the order of
/// the place table, without repeats.
pub fn mentioned_countries(text: &str) -> Vec<&'static str> {
    let lower = text.to_lowercase();
    let mut found: Vec<&'static str> = Vec::new();
    for (name, code) in PLACES.iter() {
        if found.contains(code) {
            continue;
        }
        let named = lower.match_indices(name).any(|(i, m)| {
            let before = lower[..i].chars().next_back();
            let after = lower[i + m.len()..].chars().next();
            // CJK names stand without spaces around them.
            let cjk = name.chars().any(|c| c as u32 >= 0x3000);
            cjk || (!before.is_some_and(char::is_alphanumeric)
                && !after.is_some_and(char::is_alphanumeric))
        });
        if named {
            found.push(code);
        }
    }
    found
}

fn mentioned_country(text: &str) -> Option<&'static str> {
    mentioned_countries(text).first().copied()
}

/// The English name of a country kedai knows places of, to add to a search
/// for shipping there (the embedding knows "Philippines" better than
/// "Cebu").
pub fn country_name(code: &str) -> Option<&'static str> {
    Some(match code {
        "TH" => "Thailand",
        "ID" => "Indonesia",
        "VN" => "Vietnam",
        "MY" => "Malaysia",
        "PH" => "Philippines",
        "BR" => "Brazil",
        "SG" => "Singapore",
        _ => return None,
    })
}

/// Where the buyer's parcel is going, and how kedai knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Destination {
    pub country: String,
    /// `message`, `order` or `shop`.
    pub from: &'static str,
}

/// The destination of a shipping question: a place the buyer names (in this
/// message or their earlier ones), else their latest order's destination,
/// else the shop's own country.
pub fn destination(
    text: &str,
    history: &[String],
    orders: &[Order],
    market: &Market,
) -> Option<Destination> {
    let named = std::iter::once(text)
        .chain(history.iter().rev().map(String::as_str))
        .find_map(mentioned_country);
    if let Some(country) = named {
        return Some(Destination {
            country: country.into(),
            from: "message",
        });
    }
    if let Some(country) = orders.iter().find_map(|o| o.record.destination.clone()) {
        return Some(Destination {
            country: country.to_ascii_uppercase(),
            from: "order",
        });
    }
    market.country.as_ref().map(|c| Destination {
        country: c.as_str().to_string(),
        from: "shop",
    })
}

/// The countries a knowledge hit is about: a shipping rule's destination,
/// or the countries its title and text name ("To Thailand we ship ...").
pub fn hit_countries(hit: &KnowledgeHit) -> Vec<String> {
    if hit.kind == "shipping" {
        if let Some(country) = hit.fields["destination"].as_str() {
            return vec![country.to_ascii_uppercase()];
        }
    }
    let text = format!(
        "{}\n{}",
        hit.title,
        hit.answer.as_deref().unwrap_or(&hit.text)
    );
    mentioned_countries(&text)
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// Drops hits about other countries only (a shipping rule or an FAQ answer
/// for Thailand when the parcel goes to the Philippines); hits about no
/// country or several including `country` stay, in their order.
pub fn for_destination(hits: Vec<KnowledgeHit>, country: &str) -> Vec<KnowledgeHit> {
    hits.into_iter()
        .filter(|h| {
            let countries = hit_countries(h);
            countries.is_empty() || countries.iter().any(|c| c == country)
        })
        .collect()
}

/// The best hits answer for different single countries: which one the
/// buyer means decides the answer.
pub fn countries_disagree(hits: &[KnowledgeHit]) -> bool {
    let mut countries: Vec<String> = hits
        .iter()
        .take(3)
        .map(hit_countries)
        .filter(|c| c.len() == 1)
        .flatten()
        .collect();
    countries.sort();
    countries.dedup();
    countries.len() > 1
}

/// The questions a message asks, when it asks more than one ("Does the red
/// tee come in XL? And how long to Manila?"): each runs its own search, and
/// no single template or FAQ answer is taken for the whole message.
pub fn questions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        current.push(c);
        if matches!(c, '?' | '？') {
            let q = current.trim().to_string();
            if q.chars().filter(|c| c.is_alphanumeric()).count() >= 3 {
                out.push(q);
            }
            current.clear();
        }
    }
    out
}

/// The FAQ entry or shipping rule that is the best hit for each of a
/// message's questions alone and for the whole message, when there is one:
/// then the message asks one thing in several sentences ("What can I pay
/// with? Do you take COD?") and that entry answers it whole. Products are
/// left out: "Does it come in XL? Is it cotton?" names one product but asks
/// two things its stock answer would not both cover.
pub fn one_entry_answers_all(
    questions: &[String],
    per_question: &[Vec<KnowledgeHit>],
    whole: &[KnowledgeHit],
) -> Option<String> {
    let top = whole
        .first()
        .filter(|h| matches!(h.kind.as_str(), "faq" | "shipping"))?;
    let all_searched = per_question.len() == questions.len();
    let same = per_question
        .iter()
        .all(|hits| hits.first().is_some_and(|h| h.id == top.id));
    (all_searched && same).then(|| top.id.clone())
}

/// Hits for several questions, merged: each question's best hits in turn,
/// without repeats.
pub fn merge_hits(per_question: Vec<Vec<KnowledgeHit>>, limit: usize) -> Vec<KnowledgeHit> {
    let mut merged: Vec<KnowledgeHit> = Vec::new();
    let longest = per_question.iter().map(Vec::len).max().unwrap_or(0);
    for rank in 0..longest {
        for hits in &per_question {
            if let Some(hit) = hits.get(rank) {
                if !merged.iter().any(|h| h.id == hit.id) {
                    merged.push(hit.clone());
                }
            }
        }
    }
    merged.truncate(limit);
    merged
}

/// The clarifying question for `why`, in `lang` (English when there is no
/// template).
pub fn question(why: Clarification, lang: &str) -> &'static str {
    let lang = lang.split(['-', '_']).next().unwrap_or("en");
    match why {
        Clarification::WhichProduct => match lang {
            "id" => "Produk yang mana ya, kak? Boleh kirim nama produknya (atau kirim produknya langsung dari toko kami), nanti kami cek.",
            "ms" => "Produk yang mana ya? Boleh beritahu nama produk (atau hantar produk terus dari kedai kami), kami akan semak.",
            "th" => "ลูกค้าหมายถึงสินค้าชิ้นไหนคะ รบกวนแจ้งชื่อสินค้า (หรือส่งสินค้าจากหน้าร้านมา) แล้วทางร้านจะเช็กให้ค่ะ",
            "vi" => "Bạn đang hỏi sản phẩm nào ạ? Bạn gửi giúp shop tên sản phẩm (hoặc gửi sản phẩm từ shop) để shop kiểm tra nhé.",
            "tl" => "Aling produkto po ang tinutukoy ninyo? Pakisabi po ang pangalan (o i-send ang produkto mula sa shop namin) at titingnan namin.",
            "pt" => "Qual produto você quer dizer? Envie o nome (ou o produto direto da nossa loja) e verificamos para você.",
            "es" => "¿A qué producto te refieres? Envíanos el nombre (o el producto desde nuestra tienda) y lo revisamos.",
            "zh" => "请问您指的是哪一款商品？请告诉我们商品名称（或直接从店铺发送该商品），我们马上为您查询。",
            _ => "Which product do you mean? Please send its name (or share the product from our shop) and we'll check for you.",
        },
        Clarification::WhichOrder => match lang {
            "id" => "Boleh kirim nomor pesanannya, kak? Nanti kami cek statusnya.",
            "ms" => "Boleh berikan nombor pesanan anda? Kami akan semak statusnya.",
            "th" => "รบกวนแจ้งหมายเลขคำสั่งซื้อด้วยค่ะ ทางร้านจะเช็กสถานะให้ค่ะ",
            "vi" => "Bạn gửi giúp shop mã đơn hàng nhé, shop sẽ kiểm tra tình trạng đơn ngay ạ.",
            "tl" => "Pakisend po ang order number ninyo para ma-check namin ang status.",
            "pt" => "Pode nos enviar o número do pedido? Vamos verificar o status para você.",
            "es" => "¿Nos envías el número de pedido? Revisamos su estado enseguida.",
            "zh" => "请提供您的订单号，我们马上为您查询订单状态。",
            _ => "Could you send us your order number? We'll check its status for you.",
        },
        Clarification::UnknownOrder => match lang {
            "id" => "Maaf kak, nomor pesanan itu tidak kami temukan di pesanan kakak. Boleh dicek lagi dan dikirim ulang nomornya (ada di Pesanan Saya)?",
            "ms" => "Maaf, kami tidak jumpa nombor pesanan itu dalam pesanan anda. Boleh semak dan hantar semula nombornya (ada di Pesanan Saya)?",
            "th" => "ขออภัยค่ะ ไม่พบหมายเลขคำสั่งซื้อนี้ในคำสั่งซื้อของลูกค้า รบกวนตรวจสอบแล้วส่งหมายเลขอีกครั้งนะคะ (ดูได้ที่การซื้อของฉัน)",
            "vi" => "Xin lỗi, shop không tìm thấy mã đơn này trong các đơn của bạn. Bạn kiểm tra lại và gửi giúp shop mã đơn (trong mục Đơn mua) nhé.",
            "tl" => "Pasensya po, hindi namin makita ang order number na iyan sa mga order ninyo. Pakicheck po at i-send ulit (nasa My Purchases).",
            "pt" => "Desculpe, não encontramos esse número entre os seus pedidos. Pode conferir e enviar o número de novo (está em Meus Pedidos)?",
            "es" => "Lo sentimos, no encontramos ese número entre tus pedidos. ¿Puedes revisarlo y enviarlo de nuevo (está en Mis compras)?",
            "zh" => "抱歉，我们在您的订单中没有找到这个订单号。请核对后重新发送订单号（可在“我的订单”中查看）。",
            _ => "Sorry, we couldn't find that order number among your orders. Could you check it and send it again (it's under My Purchases / My Orders)?",
        },
        Clarification::WhichCountry => match lang {
            "id" => "Paketnya mau dikirim ke negara mana, kak? Lama dan ongkos kirim tergantung tujuannya.",
            "ms" => "Bungkusan akan dihantar ke negara mana? Tempoh dan kos penghantaran bergantung pada destinasi.",
            "th" => "ต้องการส่งไปประเทศไหนคะ ระยะเวลาและค่าส่งขึ้นอยู่กับปลายทางค่ะ",
            "vi" => "Bạn muốn giao hàng đến nước nào ạ? Thời gian và phí giao hàng tùy theo nơi nhận.",
            "tl" => "Saang bansa po ipapadala ang parcel? Nakadepende sa destinasyon ang tagal at bayad sa shipping.",
            "pt" => "Para qual país vai o pacote? O prazo e o frete dependem do destino.",
            "es" => "¿A qué país va el paquete? El plazo y el costo de envío dependen del destino.",
            "zh" => "请问包裹要寄到哪个国家？运送时间和运费取决于目的地。",
            _ => "Which country is the parcel going to? Delivery time and cost depend on it.",
        },
    }
}

/// Whether `text` is one of our clarifying questions (in any language), so
/// a buyer is never asked the same thing twice in a row.
pub fn is_clarifying_question(text: &str) -> bool {
    const LANGS: [&str; 9] = ["en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh"];
    let text = text.trim();
    [
        Clarification::WhichProduct,
        Clarification::WhichOrder,
        Clarification::UnknownOrder,
        Clarification::WhichCountry,
    ]
    .iter()
    .any(|why| LANGS.iter().any(|lang| question(*why, lang) == text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, name: &str, tags: &[&str], similarity: f32) -> KnowledgeHit {
        KnowledgeHit {
            id: format!("product:{sku}"),
            kind: "product".into(),
            title: name.into(),
            text: name.into(),
            answer: None,
            language: Some("en".into()),
            score: 0.1,
            similarity: Some(similarity),
            fields: serde_json::json!({"sku": sku, "name": name, "tags": tags}),
            matched_variants: vec![],
        }
    }

    fn shipping(country: &str) -> KnowledgeHit {
        KnowledgeHit {
            id: format!("shipping:{country}"),
            kind: "shipping".into(),
            title: format!("Shipping to {country}"),
            text: String::new(),
            answer: None,
            language: Some("en".into()),
            score: 0.1,
            similarity: Some(0.85),
            fields: serde_json::json!({"destination": country}),
            matched_variants: vec![],
        }
    }

    #[test]
    fn a_product_is_named_by_sku_word_phrase_or_a_close_match() {
        let hits = vec![
            product(
                "TEE-OVS-01",
                "Oversized Cotton Tee",
                &["tee", "t-shirt", "oversized"],
                0.82,
            ),
            product(
                "PWR-10K-01",
                "Slim Power Bank",
                &["power bank", "battery"],
                0.80,
            ),
        ];
        for text in [
            "is the oversized tee available in XL?",
            "TEE-OVS-01 còn size L không?",
            "does your power bank have usb-c?",
            "kaos oversize ada XL?",
        ] {
            assert!(names_a_product(text, &hits), "{text}");
        }
        assert!(!names_a_product("Apakah ukuran XL masih ada?", &hits));
        assert!(!names_a_product(
            "is size M still available in black?",
            &hits
        ));
        let close = vec![product("AUD-ANC-01", "KD Audio Pods", &["earbuds"], 0.9)];
        assert!(names_a_product("你们的蓝牙耳机防水吗？", &close));
    }

    #[test]
    fn the_destination_comes_from_the_message_then_orders_then_the_shop() {
        let market = Market {
            country: Some(crate::domain::CountryCode::parse("TH").unwrap()),
            ..Market::default()
        };
        let manila = destination("how long does shipping to Manila take?", &[], &[], &market);
        assert_eq!(manila.unwrap().country, "PH");
        let earlier = destination("how long?", &["I'm in Cebu".into()], &[], &market);
        assert_eq!(earlier.unwrap().country, "PH");
        assert_eq!(
            destination("ship ke sini berapa hari?", &[], &[], &market),
            Some(Destination {
                country: "TH".into(),
                from: "shop"
            })
        );
        assert_eq!(
            destination("寄到马尼拉要多久？", &[], &[], &Market::default())
                .unwrap()
                .country,
            "PH"
        );
        assert!(
            destination("kirim ke Bali berapa lama?", &[], &[], &Market::default())
                .is_some_and(|d| d.country == "ID")
        );
        assert!(
            destination("is this vintage?", &[], &[], &Market::default()).is_none(),
            "no word inside another word counts"
        );
    }

    #[test]
    fn shipping_hits_are_filtered_to_the_destination() {
        let hits = vec![
            shipping("TH"),
            shipping("PH"),
            product("X-1", "Tee", &[], 0.5),
        ];
        assert!(countries_disagree(&hits));
        let kept = for_destination(hits, "PH");
        assert_eq!(kept.len(), 2);
        assert!(!countries_disagree(&kept));
    }

    #[test]
    fn several_questions_are_told_apart_and_their_hits_interleaved() {
        let text =
            "Hi, does the red oversized tee come in XL? And how long does shipping to Manila take?";
        assert_eq!(questions(text).len(), 2);
        assert_eq!(questions("còn size L không shop?").len(), 1);
        assert_eq!(questions("有货吗？多少钱？").len(), 2);
        assert!(questions("ok?? ?").is_empty(), "too short to be a question");
        let merged = merge_hits(
            vec![
                vec![shipping("TH"), shipping("VN")],
                vec![shipping("PH"), shipping("TH")],
            ],
            3,
        );
        let ids: Vec<&str> = merged.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["shipping:TH", "shipping:PH", "shipping:VN"]);
    }

    #[test]
    fn several_questions_one_entry_answers_are_one_question() {
        let faq = |id: &str| KnowledgeHit {
            id: format!("faq:{id}"),
            kind: "faq".into(),
            ..shipping("MY")
        };
        let asked = questions("可以用什么方式付款？支持货到付款吗？");
        assert_eq!(asked.len(), 2);
        let payment = vec![faq("payment-methods"), faq("cod-refuse")];
        let both = [payment.clone(), payment.clone()];
        assert_eq!(
            one_entry_answers_all(&asked, &both, &payment).as_deref(),
            Some("faq:payment-methods")
        );
        // Two topics: each question keeps its own search.
        let apart = [payment.clone(), vec![shipping("MY")]];
        assert_eq!(one_entry_answers_all(&asked, &apart, &payment), None);
        // The whole message must find the same entry first.
        assert_eq!(
            one_entry_answers_all(&asked, &both, &[faq("cod-refuse")]),
            None
        );
        // A product's stock answer would not cover "is it cotton?" too.
        let tee = vec![product("TEE-OVS-01", "Oversized Cotton Tee", &["tee"], 0.9)];
        let asked = questions("Does the oversized tee come in XL? Is it cotton?");
        assert_eq!(
            one_entry_answers_all(&asked, &[tee.clone(), tee.clone()], &tee),
            None
        );
        // More questions than were searched.
        let asked = questions("Pay by card? COD? PayPal? Instalments?");
        assert_eq!(asked.len(), 4);
        let three = [payment.clone(), payment.clone(), payment.clone()];
        assert_eq!(one_entry_answers_all(&asked, &three, &payment), None);
    }

    #[test]
    fn every_question_exists_in_every_language_and_is_recognised() {
        for why in [
            Clarification::WhichProduct,
            Clarification::WhichOrder,
            Clarification::WhichCountry,
        ] {
            let mut seen = std::collections::BTreeSet::new();
            for lang in ["en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh"] {
                let q = question(why, lang);
                assert!(seen.insert(q), "{why:?} {lang} repeats another language");
                assert!(is_clarifying_question(q));
            }
        }
        assert!(!is_clarifying_question("Which product do you mean?"));
    }
}
