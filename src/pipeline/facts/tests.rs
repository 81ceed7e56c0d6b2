use super::*;
use FactKind::*;

/// (language or case, text, the facts expected).
type Table<'a> = &'a [(&'a str, &'a str, &'a [(FactKind, &'a str)])];

fn facts(text: &str) -> Vec<(FactKind, String)> {
    extract(text)
        .into_iter()
        .map(|f| (f.kind, f.value))
        .collect()
}

fn fact(kind: FactKind, value: &str) -> (FactKind, String) {
    (kind, value.to_string())
}

#[test]
fn facts_in_every_language() {
    let table: Table<'_> = &[
        (
            "en",
            "Shipping is USD 2.50, free on orders over $20; 5-9 days, 37 Wh.",
            &[
                (Amount, "USD 2.5"),
                (Amount, "USD 20"),
                (Duration, "5-9 day"),
                (Quantity, "37 wh"),
            ],
        ),
        (
            "en",
            "Order SPE-2611-00123 via JT0123456789ID, see https://kedai-demo.shop/returns or help@kedai-demo.shop, call +62 811 2222 3333",
            &[
                (Code, "SPE261100123"),
                (Code, "JT0123456789ID"),
                (Link, "kedai-demo.shop/returns"),
                (Email, "help@kedai-demo.shop"),
                (Phone, "122223333"),
            ],
        ),
        (
            "id",
            "Ongkir Rp 15.000, sampai dalam 2-3 hari kerja. Diskon 10% pakai kode KEDAI10.",
            &[
                (Amount, "IDR 15000"),
                (Duration, "2-3 day"),
                (Percentage, "10"),
                (Code, "KEDAI10"),
            ],
        ),
        (
            "ms",
            "Harga RM10 sahaja, sampai dalam 5-8 hari, berat 2kg.",
            &[(Amount, "MYR 10"), (Duration, "5-8 day"), (Quantity, "2 kg")],
        ),
        (
            "th",
            "ราคา ฿199 ลด 20% จัดส่ง ๓-๕ วัน ภายใน 24 ชั่วโมง",
            &[
                (Amount, "THB 199"),
                (Percentage, "20"),
                (Duration, "3-5 day"),
                (Duration, "24 hour"),
            ],
        ),
        (
            "th",
            "คาดว่าจะถึง 21 พ.ย. 2569 ค่ะ",
            &[(Date, "2026-11-21")],
        ),
        (
            "vi",
            "Giá 50.000đ, giao trong 7 ngày, giảm 15%, đơn ngày 21 tháng 11",
            &[
                (Amount, "VND 50000"),
                (Duration, "7 day"),
                (Percentage, "15"),
                (Date, "11-21"),
            ],
        ),
        (
            "vi",
            "Phí ship 30k, đơn LZD-2611-33420",
            &[(Amount, "XXX 30000"), (Code, "LZD261133420")],
        ),
        (
            "tl",
            "₱250 lang po, darating sa loob ng 7-12 araw, 2 pcs",
            &[(Amount, "PHP 250"), (Duration, "7-12 day"), (Quantity, "2 pcs")],
        ),
        (
            "pt",
            "Frete de R$ 24,90, chega em 15 a 30 dias úteis, 20% para compras até US$ 50,01",
            &[
                (Amount, "BRL 24.9"),
                (Duration, "15-30 day"),
                (Percentage, "20"),
                (Amount, "USD 50.01"),
            ],
        ),
        (
            "es",
            "Rebaja del 20% hasta el 21 de noviembre de 2026, envío 3 a 5 días",
            &[
                (Percentage, "20"),
                (Date, "2026-11-21"),
                (Duration, "3-5 day"),
            ],
        ),
        (
            "zh",
            "我们给您打八折，三天内发货，11月21日到，运费10元",
            &[
                (Percentage, "20"),
                (Duration, "3 day"),
                (Date, "11-21"),
                (Amount, "CNY 10"),
            ],
        ),
        (
            "zh-Hant",
            "八五折優惠，兩週內到貨",
            &[(Percentage, "15"), (Duration, "2 week")],
        ),
        (
            "fullwidth",
            "ＲＭ１０ ｏｆｆ，４８ｈ",
            &[(Amount, "MYR 10"), (Duration, "48 hour")],
        ),
        (
            "dates and times",
            "2026-11-21 20:00, or 21/11/2026, or Nov 21",
            &[
                (Date, "2026-11-21"),
                (Number, "20:00"),
                (Date, "2026-11-21"),
                (Date, "11-21"),
            ],
        ),
        ("plain numbers", "size 42, 3 colours", &[(Number, "42"), (Number, "3")]),
        ("nothing", "Thank you, have a nice day!", &[]),
    ];
    for (lang, text, want) in table {
        let want: Vec<(FactKind, String)> = want.iter().map(|(k, v)| fact(*k, v)).collect();
        assert_eq!(facts(text), want, "{lang}: {text}");
    }
}

#[test]
fn the_same_fact_written_two_ways_compares_equal() {
    let pairs: &[(&str, &str)] = &[
        ("Rp 50.000", "Rp50000"),
        ("Rp 50.000", "50.000 rupiah"),
        ("USD 2.50", "2,50 USD"),
        ("USD 2.50", "$2.5"),
        ("RM10", "RM 10.00"),
        ("฿199", "199 บาท"),
        ("๓-๕ วัน", "3-5 days"),
        ("3-5 days", "3 - 5 hari"),
        ("20%", "20 percent"),
        ("２０％", "20%"),
        ("SPE-2611-00123", "spe-2611-00123"),
        ("SPE-2611-00123", "SPE2611-00123"),
        ("+62 811 2222 3333", "0811-2222-3333"),
        ("21/11/2026", "2026-11-21"),
        ("21 Nov 2026", "21 de novembro de 2026"),
        ("10k", "10.000"),
        ("打八折", "8折"),
        (
            "https://www.kedai-demo.shop/returns/",
            "kedai-demo.shop/returns",
        ),
    ];
    for (a, b) in pairs {
        assert!(missing(a, b).is_empty(), "{a} -> {b}: {:?}", missing(a, b));
        assert!(unsupported(b, &[a]).is_empty(), "{b} <- {a}");
    }
}

#[test]
fn a_draft_may_only_state_facts_of_its_sources() {
    let sources = [
        "Shipping to Thailand takes 5-9 days and costs USD 2.50, free on orders over USD 25.",
        "Order SPE-2611-00123, J&T Express JT0123456789ID.",
    ];
    let supported = "Your order SPE-2611-00123 (JT0123456789ID) arrives in 5-9 days; shipping is free above USD 25.";
    assert!(unsupported(supported, &sources).is_empty());
    // One end of a range, and a bare number of the sources, are theirs.
    assert!(unsupported("It usually takes 9 days.", &sources).is_empty());
    let invented =
        "Use code SAVE10 for 10% off, refund of USD 5 in 3 days, see evil.example.com, call 0812 9999 8888";
    let found: Vec<(FactKind, String)> = unsupported(invented, &sources)
        .into_iter()
        .map(|f| (f.kind, f.value))
        .collect();
    assert_eq!(
        found,
        vec![
            fact(Code, "SAVE10"),
            fact(Percentage, "10"),
            fact(Amount, "USD 5"),
            fact(Duration, "3 day"),
            fact(Link, "evil.example.com"),
            fact(Phone, "299998888"),
        ]
    );
    // The wrong currency is a different amount.
    assert_eq!(unsupported("It costs THB 2.50", &sources).len(), 1);
}

#[test]
fn a_translation_must_carry_every_fact_of_its_source() {
    let source = "Refunds reach ShopeePay within 24 hours, cards 7-14 business days; code KEDAI10 gives 10% off orders of USD 30 or more.";
    let table: Table<'_> = &[
        (
            "id",
            "Refund masuk ShopeePay maksimal 24 jam, kartu 7-14 hari kerja; kode KEDAI10 diskon 10% untuk belanja minimal USD 30.",
            &[],
        ),
        (
            "th",
            "เงินคืนเข้า ShopeePay ภายใน 24 ชั่วโมง บัตร 7-14 วันทำการ โค้ด KEDAI10 ลด 10% เมื่อซื้อครบ 30 USD",
            &[],
        ),
        (
            "vi",
            "Hoàn tiền về ShopeePay trong 24 giờ, thẻ 7-14 ngày làm việc; mã KEDAI10 giảm 10% cho đơn từ 30 USD.",
            &[],
        ),
        (
            "zh",
            "退款24小时内到ShopeePay，银行卡7-14个工作日；KEDAI10 优惠码满30 USD打九折。",
            &[],
        ),
        (
            "pt, a number lost and one changed",
            "Reembolso na ShopeePay em até 24 horas, cartões em 7-14 dias úteis; o código KEDAI10 dá 20% de desconto.",
            &[(Percentage, "10"), (Amount, "USD 30")],
        ),
        (
            "es, a code dropped",
            "Reembolso a ShopeePay en 24 horas, tarjetas 7-14 días hábiles; 10% de descuento desde USD 30.",
            &[(Code, "KEDAI10")],
        ),
    ];
    for (lang, translation, want) in table {
        let want: Vec<(FactKind, String)> = want.iter().map(|(k, v)| fact(*k, v)).collect();
        let found: Vec<(FactKind, String)> = missing(source, translation)
            .into_iter()
            .map(|f| (f.kind, f.value))
            .collect();
        assert_eq!(found, want, "{lang}: {translation}");
    }
}

#[test]
fn numbers_are_read_as_their_writers_mean_them() {
    for (written, want) in [
        ("50.000", "50000"),
        ("1.500.000", "1500000"),
        ("1,500", "1500"),
        ("2.50", "2.5"),
        ("2,5", "2.5"),
        ("1,234.56", "1234.56"),
        ("1.234,56", "1234.56"),
        ("0.500", "0.5"),
        ("007", "7"),
        ("10", "10"),
    ] {
        assert_eq!(parse::number(written).as_deref(), Some(want), "{written}");
    }
}

#[test]
fn hostile_input_never_panics() {
    let long = "9".repeat(5000);
    for text in [
        long.as_str(),
        "1.2.3.4.5.6.7.8.9.0.1.2.3",
        "99999999999999999999999999k",
        "十十十十十十十十天",
        "一二三四五六七八九一二三四五六七八九天",
        "九百九十九百九十九百九十九百九十九百九十九百九十九百九十九百九十九百九十九百九十九天",
        "32/13/2026 0/0",
        "$$$ %%% 折折",
        "\u{0}\u{200B}",
    ] {
        let _ = extract(text);
        let _ = missing(text, text);
    }
}
