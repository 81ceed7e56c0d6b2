//! Fast-path answers that need no generation: an order's status told from
//! its record, in the buyer's language.
//!
//! Templates are written by us, for every supported language, and fill in
//! only facts from the record (status, carrier, tracking number, the last
//! tracking event, expected delivery), so they cannot promise anything the
//! record does not say. Pure functions; the caller passes the time.

use chrono::{DateTime, Utc};

use crate::store::OrderRecord;

/// Languages with templates; anything else is answered in English.
pub const LANGUAGES: &[&str] = &["en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh"];

struct Phrases {
    order: &'static str,
    is: &'static str,
    end: &'static str,
    carrier: &'static str,
    tracking: &'static str,
    latest: &'static str,
    expected: &'static str,
    late: &'static str,
    statuses: [&'static str; 10],
}

const STATUS_KEYS: [&str; 10] = [
    "unpaid",
    "paid",
    "packed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "delivered",
    "cancelled",
    "return_requested",
    "returned",
];

fn phrases(lang: &str) -> &'static Phrases {
    match lang {
        "id" => &Phrases {
            order: "Pesanan",
            is: "",
            end: ".",
            carrier: "Kurir",
            tracking: "nomor resi",
            latest: "Update terakhir",
            expected: "Perkiraan tiba",
            late: "Paket ini lebih lambat dari perkiraan; kami sedang mengeceknya dengan kurir.",
            statuses: [
                "menunggu pembayaran",
                "sudah dibayar dan sedang disiapkan",
                "sudah dikemas dan menunggu kurir",
                "sudah dikirim",
                "dalam perjalanan",
                "sedang diantar kurir hari ini",
                "sudah diterima",
                "dibatalkan",
                "dalam pengajuan pengembalian",
                "sudah dikembalikan",
            ],
        },
        "ms" => &Phrases {
            order: "Pesanan",
            is: "",
            end: ".",
            carrier: "Kurier",
            tracking: "nombor penjejakan",
            latest: "Kemas kini terakhir",
            expected: "Jangkaan tiba",
            late: "Bungkusan ini lewat daripada jangkaan; kami sedang menyemak dengan kurier.",
            statuses: [
                "menunggu pembayaran",
                "telah dibayar dan sedang disediakan",
                "telah dibungkus dan menunggu kurier",
                "telah dihantar",
                "dalam perjalanan",
                "sedang dihantar hari ini",
                "telah diterima",
                "dibatalkan",
                "dalam permohonan pemulangan",
                "telah dipulangkan",
            ],
        },
        "th" => &Phrases {
            order: "คำสั่งซื้อ",
            is: "",
            end: "",
            carrier: "ขนส่ง",
            tracking: "เลขพัสดุ",
            latest: "อัปเดตล่าสุด",
            expected: "คาดว่าจะได้รับ",
            late: "พัสดุล่าช้ากว่าที่คาดไว้ ทางร้านกำลังตรวจสอบกับขนส่งให้ค่ะ",
            statuses: [
                "รอชำระเงิน",
                "ชำระเงินแล้ว กำลังเตรียมสินค้า",
                "แพ็คแล้ว รอขนส่งมารับ",
                "จัดส่งแล้ว",
                "อยู่ระหว่างขนส่ง",
                "กำลังนำส่งวันนี้",
                "จัดส่งสำเร็จแล้ว",
                "ถูกยกเลิกแล้ว",
                "อยู่ระหว่างขอคืนสินค้า",
                "คืนสินค้าแล้ว",
            ],
        },
        "vi" => &Phrases {
            order: "Đơn hàng",
            is: "",
            end: ".",
            carrier: "Đơn vị vận chuyển",
            tracking: "mã vận đơn",
            latest: "Cập nhật mới nhất",
            expected: "Dự kiến giao",
            late: "Đơn hàng đang chậm hơn dự kiến; shop đang kiểm tra với đơn vị vận chuyển.",
            statuses: [
                "đang chờ thanh toán",
                "đã thanh toán, đang chuẩn bị hàng",
                "đã đóng gói, chờ đơn vị vận chuyển lấy hàng",
                "đã được gửi đi",
                "đang được vận chuyển",
                "đang được giao hôm nay",
                "đã giao thành công",
                "đã bị hủy",
                "đang trong yêu cầu trả hàng",
                "đã được trả lại",
            ],
        },
        "tl" => &Phrases {
            order: "Ang order",
            is: " ay",
            end: ".",
            carrier: "Courier",
            tracking: "tracking number",
            latest: "Pinakabagong update",
            expected: "Inaasahang dating",
            late: "Mas matagal ito kaysa inaasahan; kinakausap na namin ang courier.",
            statuses: [
                "naghihintay ng bayad",
                "bayad na at inihahanda",
                "naka-pack na at naghihintay sa courier",
                "naipadala na",
                "papunta na sa iyo",
                "ide-deliver ngayong araw",
                "naihatid na",
                "kinansela",
                "may request na ibalik",
                "naibalik na",
            ],
        },
        "pt" => &Phrases {
            order: "O pedido",
            is: " está",
            end: ".",
            carrier: "Transportadora",
            tracking: "código de rastreio",
            latest: "Última atualização",
            expected: "Previsão de entrega",
            late: "O pedido está atrasado em relação à previsão; estamos verificando com a transportadora.",
            statuses: [
                "aguardando pagamento",
                "pago e em preparação",
                "embalado, aguardando a transportadora",
                "enviado",
                "em trânsito",
                "saiu para entrega hoje",
                "entregue",
                "cancelado",
                "com devolução solicitada",
                "devolvido",
            ],
        },
        "es" => &Phrases {
            order: "El pedido",
            is: " está",
            end: ".",
            carrier: "Transportista",
            tracking: "número de seguimiento",
            latest: "Última actualización",
            expected: "Entrega prevista",
            late: "El pedido va más lento de lo previsto; lo estamos revisando con la transportista.",
            statuses: [
                "pendiente de pago",
                "pagado y en preparación",
                "empaquetado, esperando a la transportista",
                "enviado",
                "en camino",
                "en reparto hoy",
                "entregado",
                "cancelado",
                "con devolución solicitada",
                "devuelto",
            ],
        },
        "zh" => &Phrases {
            order: "订单",
            is: "",
            end: "。",
            carrier: "快递",
            tracking: "运单号",
            latest: "最新动态",
            expected: "预计送达",
            late: "包裹比预计的慢，我们正在与快递公司核实。",
            statuses: [
                "待付款",
                "已付款，正在备货",
                "已打包，等待快递揽收",
                "已发货",
                "运输中",
                "今天派送中",
                "已签收",
                "已取消",
                "已申请退货",
                "已退货",
            ],
        },
        _ => &Phrases {
            order: "Your order",
            is: " is",
            end: ".",
            carrier: "Carrier",
            tracking: "tracking number",
            latest: "Latest update",
            expected: "Expected delivery",
            late: "It is running later than expected; we are checking with the courier.",
            statuses: [
                "waiting for payment",
                "paid and being prepared",
                "packed and waiting for the courier",
                "shipped",
                "on its way",
                "out for delivery today",
                "delivered",
                "cancelled",
                "waiting for its return to be processed",
                "returned",
            ],
        },
    }
}

/// A templated answer and the facts it states (for the trace and for
/// checking answers in evaluation).
#[derive(Debug, Clone, PartialEq)]
pub struct TemplatedAnswer {
    pub text: String,
    pub language: &'static str,
    pub facts: Vec<String>,
}

fn supported(lang: &str) -> &'static str {
    let base = lang
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    LANGUAGES
        .iter()
        .copied()
        .find(|l| *l == base)
        .unwrap_or("en")
}

/// Sentences are joined by a space; Chinese ends its sentences with `。`
/// and needs none.
fn join(lang: &str, parts: &[String]) -> String {
    parts.join(if lang == "zh" { "" } else { " " })
}

/// The status of `order`, in `lang` (English when there is no template).
pub fn order_status(order: &OrderRecord, lang: &str, now: DateTime<Utc>) -> TemplatedAnswer {
    let lang = supported(lang);
    let p = phrases(lang);
    let mut facts = vec![order.order_number.clone()];
    let status = STATUS_KEYS
        .iter()
        .position(|k| *k == order.status)
        .map(|i| p.statuses[i].to_string())
        .unwrap_or_else(|| order.status.replace('_', " "));
    let mut parts = vec![format!(
        "{} {}{} {}{}",
        p.order, order.order_number, p.is, status, p.end
    )];
    let colon = if lang == "zh" { "：" } else { ": " };
    match (&order.carrier, &order.tracking_number) {
        (Some(carrier), Some(tracking)) => {
            parts.push(format!(
                "{}{colon}{carrier}, {} {tracking}{}",
                p.carrier, p.tracking, p.end
            ));
            facts.push(carrier.clone());
            facts.push(tracking.clone());
        }
        (Some(carrier), None) => {
            parts.push(format!("{}{colon}{carrier}{}", p.carrier, p.end));
            facts.push(carrier.clone());
        }
        (None, Some(tracking)) => {
            parts.push(format!(
                "{}{colon}{tracking}{}",
                capitalise(p.tracking),
                p.end
            ));
            facts.push(tracking.clone());
        }
        (None, None) => {}
    }
    if let Some(event) = order.tracking_events.iter().max_by_key(|e| e.at) {
        let what = event
            .description
            .clone()
            .unwrap_or_else(|| event.status.replace('_', " "));
        let place = event
            .location
            .as_ref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        parts.push(format!(
            "{} {}{colon}{what}{place}{}",
            p.latest,
            event.at.format("%Y-%m-%d"),
            p.end
        ));
    }
    let open = !matches!(
        order.status.as_str(),
        "delivered" | "cancelled" | "return_requested" | "returned"
    );
    if let (Some(expected), true) = (order.expected_delivery, open) {
        let date = expected.format("%Y-%m-%d").to_string();
        parts.push(format!("{}{colon}{date}{}", p.expected, p.end));
        facts.push(date);
        if expected < now {
            parts.push(p.late.to_string());
        }
    }
    TemplatedAnswer {
        text: join(lang, &parts),
        language: lang,
        facts,
    }
}

/// Whether `order` is past its expected delivery and still not delivered:
/// such a question is a dispute in the making, not a routine answer.
pub fn is_late(order: &OrderRecord, now: DateTime<Utc>) -> bool {
    matches!(
        order.status.as_str(),
        "paid" | "packed" | "shipped" | "in_transit" | "out_for_delivery"
    ) && order.expected_delivery.is_some_and(|t| t < now)
}

#[derive(serde::Deserialize)]
struct ProductFields {
    name: String,
    #[serde(default)]
    price: f64,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    variants: Vec<VariantFields>,
}

#[derive(serde::Deserialize)]
struct VariantFields {
    sku: String,
    #[serde(default)]
    options: std::collections::BTreeMap<String, String>,
    price: Option<f64>,
    stock: u32,
}

fn options_label(options: &std::collections::BTreeMap<String, String>) -> String {
    options.values().cloned().collect::<Vec<_>>().join(", ")
}

/// Stock and price of a product's variant, from the catalogue's fields:
/// the variant the buyer named when there is one, else what is in stock.
/// `None` when the fields are not a product's.
pub fn stock_answer(
    fields: &serde_json::Value,
    matched_variants: &[String],
    lang: &str,
) -> Option<TemplatedAnswer> {
    let product: ProductFields = serde_json::from_value(fields.clone()).ok()?;
    if product.variants.is_empty() {
        return None;
    }
    let lang = supported(lang);
    let available: Vec<String> = product
        .variants
        .iter()
        .filter(|v| v.stock > 0)
        .map(|v| options_label(&v.options))
        .filter(|label| !label.is_empty())
        .collect();
    let list = available.join("; ");
    let named = matched_variants
        .first()
        .and_then(|sku| product.variants.iter().find(|v| &v.sku == sku));
    let name = &product.name;
    let mut facts = Vec::new();
    let text = match named {
        Some(v) if v.stock > 0 => {
            let opts = options_label(&v.options);
            let n = v.stock;
            let price = format!("{:.2}", v.price.unwrap_or(product.price));
            let cur = &product.currency;
            facts.extend([v.sku.clone(), n.to_string(), price.clone()]);
            match lang {
                "id" => format!("{name} ({opts}) ready stok: {n} pcs, harga {price} {cur}."),
                "ms" => format!("{name} ({opts}) ada stok: {n} unit, harga {price} {cur}."),
                "th" => format!("{name} ({opts}) มีสินค้าพร้อมส่ง {n} ชิ้น ราคา {price} {cur}"),
                "vi" => format!("{name} ({opts}) còn hàng: {n} sản phẩm, giá {price} {cur}."),
                "tl" => format!("May stock ang {name} ({opts}): {n} piraso, {price} {cur}."),
                "pt" => format!("{name} ({opts}) está disponível: {n} em estoque, {price} {cur}."),
                "es" => format!("{name} ({opts}) está disponible: {n} en stock, {price} {cur}."),
                "zh" => format!("{name}（{opts}）有现货：{n} 件，价格 {price} {cur}。"),
                _ => format!("{name} ({opts}) is in stock: {n} available at {price} {cur}."),
            }
        }
        Some(v) => {
            let opts = options_label(&v.options);
            facts.push(v.sku.clone());
            let sold_out = match lang {
                "id" => format!("{name} ({opts}) sedang habis."),
                "ms" => format!("{name} ({opts}) sedang habis stok."),
                "th" => format!("{name} ({opts}) สินค้าหมดชั่วคราว"),
                "vi" => format!("{name} ({opts}) hiện đã hết hàng."),
                "tl" => format!("Ubos na ang {name} ({opts}) sa ngayon."),
                "pt" => format!("{name} ({opts}) está esgotado no momento."),
                "es" => format!("{name} ({opts}) está agotado por ahora."),
                "zh" => format!("{name}（{opts}）暂时缺货。"),
                _ => format!("{name} ({opts}) is sold out right now."),
            };
            if list.is_empty() {
                sold_out
            } else {
                format!("{sold_out} {}", available_line(lang, &list))
            }
        }
        None if !list.is_empty() => format!("{name}: {}", available_line(lang, &list)),
        None => match lang {
            "id" => format!("{name} sedang habis."),
            "ms" => format!("{name} sedang habis stok."),
            "th" => format!("{name} สินค้าหมดชั่วคราว"),
            "vi" => format!("{name} hiện đã hết hàng."),
            "tl" => format!("Ubos na ang {name} sa ngayon."),
            "pt" => format!("{name} está esgotado no momento."),
            "es" => format!("{name} está agotado por ahora."),
            "zh" => format!("{name}暂时缺货。"),
            _ => format!("{name} is sold out right now."),
        },
    };
    Some(TemplatedAnswer {
        text,
        language: lang,
        facts,
    })
}

fn available_line(lang: &str, list: &str) -> String {
    match lang {
        "id" => format!("Yang tersedia: {list}."),
        "ms" => format!("Yang ada: {list}."),
        "th" => format!("ที่มีตอนนี้: {list}"),
        "vi" => format!("Còn hàng: {list}."),
        "tl" => format!("Available: {list}."),
        "pt" => format!("Disponíveis: {list}."),
        "es" => format!("Disponibles: {list}."),
        "zh" => format!("有货的款式：{list}。"),
        _ => format!("In stock: {list}."),
    }
}

/// The English name of a supported language, for instructions to the
/// chat model ("reply in Indonesian").
pub fn language_name(lang: &str) -> &'static str {
    match supported(lang) {
        "id" => "Indonesian",
        "ms" => "Malay",
        "th" => "Thai",
        "vi" => "Vietnamese",
        "tl" => "Tagalog",
        "pt" => "Portuguese",
        "es" => "Spanish",
        "zh" => "Chinese",
        _ => "English",
    }
}

/// A short holding reply: the message reached the shop and a colleague
/// will answer. Sent only when the policy asks for one.
pub fn holding_reply(lang: &str) -> TemplatedAnswer {
    let lang = supported(lang);
    let text = match lang {
        "id" => "Terima kasih, pesan Anda sudah kami terima. Tim kami akan membalas secepatnya pada jam kerja.",
        "ms" => "Terima kasih, mesej anda telah diterima. Pasukan kami akan membalas secepat mungkin pada waktu bekerja.",
        "th" => "ขอบคุณค่ะ ร้านได้รับข้อความแล้ว ทีมงานจะตอบกลับโดยเร็วที่สุดในเวลาทำการค่ะ",
        "vi" => "Cảm ơn bạn, shop đã nhận được tin nhắn. Nhân viên sẽ trả lời sớm nhất trong giờ làm việc.",
        "tl" => "Salamat, natanggap namin ang mensahe mo. Sasagot ang aming team sa lalong madaling panahon sa oras ng trabaho.",
        "pt" => "Obrigado, recebemos sua mensagem. Nossa equipe vai responder assim que possível no horário de atendimento.",
        "es" => "Gracias, hemos recibido tu mensaje. Nuestro equipo te responderá lo antes posible en horario de atención.",
        "zh" => "谢谢，我们已收到您的消息。客服同事会在工作时间尽快回复您。",
        _ => "Thank you, we have received your message. A colleague will reply as soon as possible during opening hours.",
    };
    TemplatedAnswer {
        text: text.to_string(),
        language: lang,
        facts: Vec::new(),
    }
}

/// Messages that need a courteous answer and nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pleasantry {
    /// "Hi", "anyone there?"
    Greeting,
    /// "Thank you!"
    Thanks,
    /// "Got it, five stars!"
    GoodReview,
}

/// The shop's answer to a pleasantry, in the buyer's language.
pub fn pleasantry_reply(kind: Pleasantry, lang: &str) -> TemplatedAnswer {
    let lang = supported(lang);
    let text = match (kind, lang) {
        (Pleasantry::Greeting, "id") => {
            "Halo kak, terima kasih sudah menghubungi kami! Ada yang bisa kami bantu?"
        }
        (Pleasantry::Greeting, "ms") => {
            "Hai, terima kasih kerana menghubungi kami! Ada apa-apa yang boleh kami bantu?"
        }
        (Pleasantry::Greeting, "th") => "สวัสดีค่ะ ขอบคุณที่ติดต่อร้านนะคะ มีอะไรให้ช่วยไหมคะ",
        (Pleasantry::Greeting, "vi") => {
            "Chào bạn, cảm ơn bạn đã nhắn tin cho shop! Shop có thể giúp gì cho bạn ạ?"
        }
        (Pleasantry::Greeting, "tl") => {
            "Hello po, salamat sa pag-message! Paano po namin kayo matutulungan?"
        }
        (Pleasantry::Greeting, "pt") => "Olá, obrigado por falar com a gente! Como podemos ajudar?",
        (Pleasantry::Greeting, "es") => "¡Hola, gracias por escribirnos! ¿En qué podemos ayudarte?",
        (Pleasantry::Greeting, "zh") => "您好，感谢联系我们！请问有什么可以帮您？",
        (Pleasantry::Greeting, _) => "Hello, thanks for messaging us! How can we help you today?",
        (Pleasantry::Thanks, "id") => "Sama-sama kak! Kalau ada pertanyaan lain, kabari kami ya.",
        (Pleasantry::Thanks, "ms") => "Sama-sama! Jika ada soalan lain, beritahu kami ya.",
        (Pleasantry::Thanks, "th") => "ยินดีค่ะ หากมีคำถามเพิ่มเติม ทักมาได้เลยนะคะ",
        (Pleasantry::Thanks, "vi") => "Không có gì ạ! Nếu bạn cần gì thêm cứ nhắn shop nhé.",
        (Pleasantry::Thanks, "tl") => {
            "Walang anuman po! Mag-message lang po kung may iba pa kayong tanong."
        }
        (Pleasantry::Thanks, "pt") => "Por nada! Se precisar de mais alguma coisa, é só chamar.",
        (Pleasantry::Thanks, "es") => "¡De nada! Si necesitas algo más, escríbenos.",
        (Pleasantry::Thanks, "zh") => "不客气！如果还有其他问题，随时联系我们。",
        (Pleasantry::Thanks, _) => {
            "You're welcome! Let us know if there's anything else we can help with."
        }
        (Pleasantry::GoodReview, "id") => {
            "Terima kasih banyak atas ulasannya kak! Senang sekali barangnya sesuai harapan."
        }
        (Pleasantry::GoodReview, "ms") => {
            "Terima kasih banyak atas ulasan anda! Gembira barang itu memenuhi harapan anda."
        }
        (Pleasantry::GoodReview, "th") => "ขอบคุณมากสำหรับรีวิวค่ะ ดีใจที่ถูกใจสินค้านะคะ",
        (Pleasantry::GoodReview, "vi") => {
            "Cảm ơn bạn rất nhiều vì đã đánh giá! Shop rất vui vì bạn hài lòng với sản phẩm."
        }
        (Pleasantry::GoodReview, "tl") => {
            "Maraming salamat po sa review! Natutuwa kami na nagustuhan ninyo."
        }
        (Pleasantry::GoodReview, "pt") => {
            "Muito obrigado pela avaliação! Ficamos felizes que você gostou."
        }
        (Pleasantry::GoodReview, "es") => {
            "¡Muchas gracias por tu reseña! Nos alegra que te haya gustado."
        }
        (Pleasantry::GoodReview, "zh") => "非常感谢您的评价！很高兴您喜欢我们的商品。",
        (Pleasantry::GoodReview, _) => "Thank you so much for your review! We're glad you like it.",
    };
    TemplatedAnswer {
        text: text.to_string(),
        language: lang,
        facts: Vec::new(),
    }
}

fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PlatformBuyerId;
    use crate::store::{OrderItem, TrackingEvent};

    #[test]
    fn pleasantries_are_answered_in_every_supported_language() {
        for kind in [
            Pleasantry::Greeting,
            Pleasantry::Thanks,
            Pleasantry::GoodReview,
        ] {
            let english = pleasantry_reply(kind, "en").text;
            for lang in ["id", "ms", "th", "vi", "tl", "pt", "es", "zh"] {
                let answer = pleasantry_reply(kind, lang);
                assert_eq!(answer.language, lang);
                assert_ne!(answer.text, english, "{kind:?} in {lang}");
            }
            assert_eq!(pleasantry_reply(kind, "de").text, english, "fallback");
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn order(status: &str) -> OrderRecord {
        OrderRecord {
            order_number: "SPE-2611-00123".into(),
            buyer: Some(PlatformBuyerId::parse("shopee:nadia").unwrap()),
            status: status.into(),
            currency: "USD".into(),
            total_cents: 2580,
            items: vec![OrderItem {
                sku: "TEE-OVS-01-RED-XL".into(),
                name: "Tee".into(),
                quantity: 2,
                unit_price_cents: 1290,
            }],
            carrier: Some("J&T Express".into()),
            tracking_number: Some("JT0123456789ID".into()),
            tracking_events: vec![
                TrackingEvent {
                    at: at("2026-11-18T10:00:00Z"),
                    status: "in_transit".into(),
                    location: Some("Jakarta, ID".into()),
                    description: Some("Arrived at sorting centre".into()),
                },
                TrackingEvent {
                    at: at("2026-11-17T10:00:00Z"),
                    status: "picked_up".into(),
                    location: None,
                    description: None,
                },
            ],
            placed_at: at("2026-11-16T10:00:00Z"),
            destination: Some("ID".into()),
            expected_delivery: Some(at("2026-11-23T10:00:00Z")),
        }
    }

    #[test]
    fn every_language_states_the_same_facts() {
        let now = at("2026-11-21T10:00:00Z");
        for lang in LANGUAGES {
            let answer = order_status(&order("in_transit"), lang, now);
            assert_eq!(answer.language, *lang);
            for fact in [
                "SPE-2611-00123",
                "J&T Express",
                "JT0123456789ID",
                "2026-11-23",
                "2026-11-18",
                "Arrived at sorting centre",
                "Jakarta, ID",
            ] {
                assert!(
                    answer.text.contains(fact),
                    "{lang}: {} lacks {fact}",
                    answer.text
                );
            }
            assert_eq!(
                answer.facts,
                [
                    "SPE-2611-00123",
                    "J&T Express",
                    "JT0123456789ID",
                    "2026-11-23"
                ]
            );
        }
    }

    #[test]
    fn english_reads_naturally() {
        let answer = order_status(&order("in_transit"), "en", at("2026-11-21T10:00:00Z"));
        assert_eq!(
            answer.text,
            "Your order SPE-2611-00123 is on its way. Carrier: J&T Express, tracking number \
             JT0123456789ID. Latest update 2026-11-18: Arrived at sorting centre (Jakarta, ID). \
             Expected delivery: 2026-11-23."
        );
    }

    #[test]
    fn late_orders_say_so_and_delivered_ones_have_no_expected_date() {
        let late_now = at("2026-11-25T10:00:00Z");
        let answer = order_status(&order("in_transit"), "id", late_now);
        assert!(answer.text.contains("lebih lambat"), "{}", answer.text);
        assert!(is_late(&order("in_transit"), late_now));
        let delivered = order_status(&order("delivered"), "en", late_now);
        assert!(!delivered.text.contains("Expected"), "{}", delivered.text);
        assert!(delivered.text.contains("delivered"));
        assert!(!is_late(&order("delivered"), late_now));
    }

    #[test]
    fn unknown_languages_and_statuses_fall_back_gracefully() {
        let mut record = order("lost_in_space");
        record.carrier = None;
        record.tracking_number = None;
        record.tracking_events.clear();
        record.expected_delivery = None;
        let answer = order_status(&record, "de-DE", at("2026-11-21T10:00:00Z"));
        assert_eq!(answer.language, "en");
        assert_eq!(answer.text, "Your order SPE-2611-00123 is lost in space.");
        let regional = order_status(&order("paid"), "pt-BR", at("2026-11-21T10:00:00Z"));
        assert_eq!(regional.language, "pt");
    }

    fn tee() -> serde_json::Value {
        serde_json::json!({
            "sku": "TEE-OVS-01", "name": "Oversized Cotton Tee", "price": 12.9, "currency": "USD",
            "variants": [
                {"sku": "TEE-OVS-01-RED-XL", "options": {"colour": "red", "size": "XL"}, "stock": 14},
                {"sku": "TEE-OVS-01-RED-M", "options": {"colour": "red", "size": "M"}, "stock": 0},
                {"sku": "TEE-OVS-01-BLK-L", "options": {"colour": "black", "size": "L"}, "price": 13.5, "stock": 3}
            ]
        })
    }

    #[test]
    fn stock_answers_come_from_the_catalogue_fields() {
        let named = stock_answer(&tee(), &["TEE-OVS-01-RED-XL".into()], "en").unwrap();
        assert_eq!(
            named.text,
            "Oversized Cotton Tee (red, XL) is in stock: 14 available at 12.90 USD."
        );
        let sold_out = stock_answer(&tee(), &["TEE-OVS-01-RED-M".into()], "id").unwrap();
        assert_eq!(
            sold_out.text,
            "Oversized Cotton Tee (red, M) sedang habis. Yang tersedia: red, XL; black, L."
        );
        let general = stock_answer(&tee(), &[], "pt").unwrap();
        assert_eq!(
            general.text,
            "Oversized Cotton Tee: Disponíveis: red, XL; black, L."
        );
        for lang in LANGUAGES {
            let answer = stock_answer(&tee(), &["TEE-OVS-01-BLK-L".into()], lang).unwrap();
            assert!(answer.text.contains("13.50"), "{lang}: {}", answer.text);
            assert!(answer.text.contains('3'), "{lang}: {}", answer.text);
        }
        assert!(stock_answer(&serde_json::json!({"answer": "x"}), &[], "en").is_none());
    }
}
