//! Entities in a buyer message: order numbers, parcel tracking numbers,
//! SKUs, email addresses and phone numbers, found by patterns of the
//! marketplaces and couriers kedai's sellers use (Shopee, Lazada, TikTok
//! Shop, Tokopedia; SPX, J&T, Ninja Van, Flash, Kerry, LEX, postal S10
//! numbers) and by the words buyers put before them in every supported
//! language. Pure functions: no model, no I/O.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Email,
    TrackingNumber,
    OrderNumber,
    Sku,
    Phone,
}

/// One entity: its kind, the value as normalised for lookups (spaces and
/// dashes removed from phone numbers, case kept elsewhere), and where it
/// sits in the message (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    pub kind: EntityKind,
    pub value: String,
    pub start: usize,
    pub end: usize,
}

struct Patterns {
    email: Regex,
    tracking: Regex,
    tracking_keyword: Regex,
    order: Regex,
    order_keyword: Regex,
    sku: Regex,
    sku_keyword: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |p: &str| Regex::new(p).expect("entity pattern compiles");
        Patterns {
            email: re(r"(?i)\b[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b"),
            // SPX, LEX, Ninja Van, J&T, Kerry, Flash, postal S10.
            tracking: re(concat!(
                r"\b(?:SPX[A-Z]{2}\d{9,14}|LEX[A-Z]{2,4}\d{7,12}|NV[A-Z]{2}[A-Z0-9]{8,14}",
                r"|J[PXDT]\d{10,12}|KE[A-Z]{2}\d{9,12}|TH\d{11,13}[A-Z]?",
                r"|[A-Z]{2}\d{9}[A-Z]{2})\b"
            )),
            tracking_keyword: re(concat!(
                r"(?i)(?:tracking(?:\s*(?:no\.?|number|#|id|code))?|no\.?\s*resi|resi|awb",
                r"|mã\s*vận\s*đơn|số\s*vận\s*đơn|เลข(?:พัสดุ|แทร็ก|ติดตาม)|运单号|快递单号",
                r"|número\s+de\s+(?:rastreo|rastreio|seguimiento)|código\s+de\s+rastreio)",
                r"\s*[:#]?\s*([A-Z0-9][A-Z0-9-]{7,24})\b"
            )),
            // Shopee order SNs (yymmdd + 8 characters), TikTok Shop (18
            // digits from 57), Tokopedia invoices.
            order: re(r"\b(?:\d{6}[A-Z0-9]{8}|57\d{16}|INV/\d{8}/[A-Z]{2,5}/[A-Z0-9]+)\b"),
            order_keyword: re(concat!(
                r"(?i)(?:order(?:\s*(?:no\.?|number|id|#))?|pesanan(?:\s*(?:no\.?|nombor|nomor))?",
                r"|no\.?\s*pesanan|nomor\s+pesanan|nombor\s+pesanan|invoice|คำสั่งซื้อ|ออเดอร์",
                r"|đơn(?:\s*hàng)?(?:\s*số)?|mã\s*đơn(?:\s*hàng)?|pedido(?:\s*(?:n[ºo°.]?|número))?",
                r"|orden|订单号?|encomenda)",
                r"\s*[:#]?\s*(#?[A-Z0-9][A-Z0-9-]{5,24})\b"
            )),
            sku: re(r"\b[A-Z]{2,5}-\d{2,6}(?:-[A-Z0-9]{1,6}){0,3}\b"),
            sku_keyword: re(concat!(
                r"(?i)(?:sku|item\s+code|product\s+code|kode\s+(?:produk|barang)",
                r"|mã\s*(?:sản\s*phẩm|sp)|รหัสสินค้า|código(?:\s+do)?\s+produto|商品编号|货号)",
                r"\s*[:#]?\s*([A-Z0-9][A-Z0-9_-]{2,30})\b"
            )),
            phone: re(r"(?:\+\d{1,3}[\s.-]?)?\(?0?\d{1,4}\)?(?:[\s.-]?\d{2,5}){2,4}"),
        }
    })
}

/// Every entity in `text`, in order of position. Where two overlap, the
/// more specific kind wins (email, tracking, order, SKU, phone).
pub fn extract(text: &str) -> Vec<Entity> {
    let p = patterns();
    let mut found: Vec<Entity> = Vec::new();
    let mut push = |kind: EntityKind, start: usize, end: usize, value: String| {
        let overlaps = found.iter().any(|e| start < e.end && e.start < end);
        if !overlaps {
            found.push(Entity {
                kind,
                value,
                start,
                end,
            });
        }
    };
    for m in p.email.find_iter(text) {
        push(EntityKind::Email, m.start(), m.end(), m.as_str().to_owned());
    }
    for m in p.tracking.find_iter(text) {
        push(
            EntityKind::TrackingNumber,
            m.start(),
            m.end(),
            m.as_str().to_owned(),
        );
    }
    for c in p.tracking_keyword.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        if m.as_str().chars().any(|c| c.is_ascii_digit()) {
            push(
                EntityKind::TrackingNumber,
                m.start(),
                m.end(),
                m.as_str().to_owned(),
            );
        }
    }
    for m in p.order.find_iter(text) {
        push(
            EntityKind::OrderNumber,
            m.start(),
            m.end(),
            m.as_str().to_owned(),
        );
    }
    for c in p.order_keyword.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        let value = m.as_str().trim_start_matches('#');
        if value.chars().filter(char::is_ascii_digit).count() >= 4 {
            push(
                EntityKind::OrderNumber,
                m.start(),
                m.end(),
                value.to_owned(),
            );
        }
    }
    for c in p.sku_keyword.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        if m.as_str().chars().any(|c| c.is_ascii_digit()) {
            push(EntityKind::Sku, m.start(), m.end(), m.as_str().to_owned());
        }
    }
    for m in p.sku.find_iter(text) {
        push(EntityKind::Sku, m.start(), m.end(), m.as_str().to_owned());
    }
    for m in p.phone.find_iter(text) {
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        let international = m.as_str().starts_with('+');
        let local = digits.starts_with('0');
        // Bounded by non-alphanumerics so that parts of longer codes or
        // amounts ("Rp150.000") are not taken for numbers.
        let before = text[..m.start()].chars().next_back();
        let after = text[m.end()..].chars().next();
        let isolated = !before.is_some_and(|c| c.is_alphanumeric() || c == '.' || c == ',')
            && !after.is_some_and(char::is_alphanumeric);
        if isolated && (international || local) && (9..=15).contains(&digits.len()) {
            let value = if international {
                format!("+{digits}")
            } else {
                digits
            };
            push(EntityKind::Phone, m.start(), m.end(), value);
        }
    }
    found.sort_by_key(|e| e.start);
    found
}

/// The order and tracking numbers of `text`, as normalised values.
pub fn order_references(text: &str) -> Vec<String> {
    references_among(&extract(text))
}

/// The order and tracking numbers among entities already extracted.
pub fn references_among(entities: &[Entity]) -> Vec<String> {
    entities
        .iter()
        .filter(|e| matches!(e.kind, EntityKind::OrderNumber | EntityKind::TrackingNumber))
        .map(|e| e.value.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use EntityKind::*;

    fn kinds(text: &str) -> Vec<(EntityKind, String)> {
        extract(text)
            .into_iter()
            .map(|e| (e.kind, e.value))
            .collect()
    }

    #[test]
    fn entity_table() {
        let table: &[(&str, &[(EntityKind, &str)])] = &[
            (
                "my order 240815ABCD1234 hasn't arrived",
                &[(OrderNumber, "240815ABCD1234")],
            ),
            ("Order #558812 still pending", &[(OrderNumber, "558812")]),
            (
                "no pesanan: 2408150QWERTY9 belum sampai",
                &[(OrderNumber, "2408150QWERTY9")],
            ),
            (
                "pedido nº 88123456 chegou quebrado",
                &[(OrderNumber, "88123456")],
            ),
            (
                "đơn hàng 1234567890 của tôi đâu",
                &[(OrderNumber, "1234567890")],
            ),
            ("订单号 7788991122 还没发货", &[(OrderNumber, "7788991122")]),
            ("คำสั่งซื้อ 9988776655 ยังไม่ได้รับ", &[(OrderNumber, "9988776655")]),
            (
                "tiktok order 576123456789012345",
                &[(OrderNumber, "576123456789012345")],
            ),
            (
                "INV/20240101/MPL/3456789012 mana?",
                &[(OrderNumber, "INV/20240101/MPL/3456789012")],
            ),
            (
                "resi SPXID012345678901 belum update",
                &[(TrackingNumber, "SPXID012345678901")],
            ),
            (
                "tracking JP1234567890 stuck",
                &[(TrackingNumber, "JP1234567890")],
            ),
            (
                "parcel EE123456789TH where",
                &[(TrackingNumber, "EE123456789TH")],
            ),
            (
                "no resi: 004400123987 ya kak",
                &[(TrackingNumber, "004400123987")],
            ),
            (
                "mã vận đơn GHN12345678 chưa giao",
                &[(TrackingNumber, "GHN12345678")],
            ),
            (
                "do you have SKU: TSH-001-BLK-XL in stock",
                &[(Sku, "TSH-001-BLK-XL")],
            ),
            ("is AB-1234 waterproof?", &[(Sku, "AB-1234")]),
            (
                "email me at siti.rahma@example.co.id please",
                &[(Email, "siti.rahma@example.co.id")],
            ),
            ("call me 0812-3456-7890", &[(Phone, "081234567890")]),
            ("WA +62 812 3456 7890 ya", &[(Phone, "+6281234567890")]),
            ("โทร 081-234-5678 ครับ", &[(Phone, "0812345678")]),
            (
                "order 240815ABCD1234, call +84 912 345 678 or a@b.vn",
                &[
                    (OrderNumber, "240815ABCD1234"),
                    (Phone, "+84912345678"),
                    (Email, "a@b.vn"),
                ],
            ),
        ];
        for (text, want) in table {
            let want: Vec<(EntityKind, String)> =
                want.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
            assert_eq!(kinds(text), want, "{text}");
        }
    }

    #[test]
    fn prices_dates_and_quantities_are_not_entities() {
        for text in [
            "Harga Rp150.000 sudah termasuk ongkir?",
            "can I get 2 pcs for 25.50 each",
            "delivered on 2024-08-15 at 10:30",
            "size 42 or 43?",
            "I paid 1,250,000 VND",
            "",
            "👍👍",
        ] {
            assert_eq!(kinds(text), vec![], "{text}");
        }
    }

    #[test]
    fn offsets_point_at_the_entity() {
        let text = "hi, order 240815ABCD1234 please";
        let e = &extract(text)[0];
        assert_eq!(&text[e.start..e.end], "240815ABCD1234");
    }

    #[test]
    fn order_references_are_order_and_tracking_numbers_only() {
        assert_eq!(
            order_references("order 240815ABCD1234, resi SPXID012345678901, sku TSH-001-BLK"),
            vec!["240815ABCD1234".to_owned(), "SPXID012345678901".to_owned()]
        );
        assert!(order_references("call me on +62 812 3456 7890").is_empty());
    }
}
