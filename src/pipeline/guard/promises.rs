//! Binding actions in a reply, recognised by their words: refunds and money
//! back, discounts and amounts or percentages off, vouchers and codes,
//! store credit, compensation, things given free, price changes and
//! cancellations, in every language kedai serves (English, Indonesian,
//! Malay, Thai, Vietnamese, Tagalog, Portuguese, Spanish, Chinese in both
//! scripts).
//!
//! Patterns are regular expressions over the folded text (`text::fold`:
//! lower case, Latin diacritics removed, fullwidth and zero-width tricks
//! undone) and its squeezed view, written with stems and inflections
//! ("reembols" covers reembolso, reembolsaremos, reembolsado) and with the
//! phrases a language uses instead of one word ("kembalikan uang", "trả
//! lại tiền", "ibabalik ang pera", "打八折"). A term that also has an
//! everyday meaning is matched only in its binding sense: Vietnamese "trả
//! lại" only with money, Thai "ลด" only with a price or an amount, Chinese
//! "折" only as a discount, "free" only with what is given free.
//!
//! Pure: no I/O, no models.

use std::sync::LazyLock;

use serde::Serialize;

use crate::text::{Folded, Patterns};

/// The kinds of binding action a reply may not raise on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingKind {
    /// Money back, in full or in part.
    Refund,
    /// A lower price: a discount, an amount or percentage off, half price.
    Discount,
    /// A voucher, coupon or promotion code.
    Voucher,
    /// Credit, coins or points with the shop or marketplace.
    StoreCredit,
    /// Money or goods to make up for a problem.
    Compensation,
    /// Something given or replaced at no cost.
    FreeOfCharge,
    /// A changed or matched price.
    PriceChange,
    /// Cancelling an order.
    Cancellation,
}

impl BindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingKind::Refund => "refund",
            BindingKind::Discount => "discount",
            BindingKind::Voucher => "voucher",
            BindingKind::StoreCredit => "store_credit",
            BindingKind::Compensation => "compensation",
            BindingKind::FreeOfCharge => "free_of_charge",
            BindingKind::PriceChange => "price_change",
            BindingKind::Cancellation => "cancellation",
        }
    }
}

/// One binding term found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingTerm {
    pub kind: BindingKind,
    /// Whose vocabulary matched: `en`, `id/ms`, `th`, `vi`, `tl`, `pt/es`,
    /// `zh`, or `any` for amounts and percentages off.
    pub language: &'static str,
    /// The words as they read in the folded text.
    pub term: String,
}

use BindingKind::*;

/// Currency words and signs before or after an amount.
const CURRENCY_BEFORE: &str =
    r"(?:\b(?:rm|rp|php|thb|usd|us\$|sgd|s\$|myr|idr|vnd|brl|r\$|eur|p)|[$₱฿€¥£₫])";
const CURRENCY_AFTER: &str = r"(?:k|rb|ribu|jt|baht|บาท|pesos?|dollars?|bucks|usd|ringgit|rupiah|dong|đồng|reais|real|euros?|元|块|塊)";

/// An amount of money or a percentage, as folded text writes it.
fn amount() -> String {
    format!(
        r"(?:{CURRENCY_BEFORE}\s?\d[\d.,]*\s?{CURRENCY_AFTER}?|\d[\d.,]*\s?(?:%|percent|per cent|pct|{CURRENCY_AFTER}))"
    )
}

/// The vocabulary, per language and kind. Patterns are folded before they
/// are compiled, so they are written as people type them.
fn vocabulary() -> Vec<(&'static str, BindingKind, Vec<String>)> {
    let amount = amount();
    let own = |patterns: &[&str]| patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    vec![
        // Amounts and percentages off read the same in most languages.
        (
            "any",
            Discount,
            vec![
                format!(
                    r"{amount}\s?(?:off|de desconto|de descuento|discount|diskon|diskaun|potongan)\b"
                ),
                format!(
                    r"(?:\boff|\bdiskon|\bdiskaun|\bpotongan|\bdescuento de|\bdesconto de|\bgiảm|ลด(?:ราคา|ให้|อีก)?|减|減|立减|立減)\s?{amount}"
                ),
                format!(r"{amount}\s?(?:折扣|优惠|優惠)"),
            ],
        ),
        (
            "en",
            Refund,
            own(&[
                r"\brefund",
                r"\breimburs",
                r"\bmoney[- ]back\b",
                r"\bcash ?back\b",
                r"\bcharge ?back\b",
                r"\b(?:return|give|send|pay|transfer|wire)(?:s|ed|ing)? (?:you )?(?:back )?(?:all )?(?:of )?(?:your|the|this|that) (?:full )?(?:money|payment|funds?|amount|purchase price|cash)\b",
                r"\b(?:pay|paid|paying) (?:you |u )?back\b",
                r"\byour (?:money|funds?|payment) (?:back|returned)\b",
                r"\bget (?:all )?(?:of )?(?:your )?money back\b",
            ]),
        ),
        (
            "en",
            Discount,
            own(&[
                r"\bdiscount",
                r"\bhalf[- ](?:price|off)\b",
                r"\bhalf the price\b",
                r"\bprice cut\b",
                r"\bmark(?:ed)? down\b",
                r"\b(?:cheaper|lower|reduced|special|better|best|discounted) price (?:for|to) (?:you|u)\b",
                r"\bbuy (?:one|1|two|2),? get (?:one|1|two|2)\b",
            ]),
        ),
        (
            "en",
            Voucher,
            own(&[
                r"\bvouchers?\b",
                r"\bcoupons?\b",
                r"\bpromo(?:tion(?:al)?)? ?codes?\b",
                r"\bdiscount ?codes?\b",
                r"\bgift ?(?:card|certificate)s?\b",
                r"\b(?:use|apply|enter|redeem|type) (?:the |this |our |my )?(?:promo |discount |voucher )?code\b",
            ]),
        ),
        (
            "en",
            StoreCredit,
            own(&[
                r"\b(?:store|shop|account|wallet|in-app) credits?\b",
                r"\bcredit(?:s|ed|ing)? (?:it |them |that )?(?:back )?(?:to )?(?:you|your (?:account|wallet|balance))\b",
                r"\b(?:shopee|lazada|tiktok) coins\b",
                r"\bbonus points\b",
            ]),
        ),
        (
            "en",
            Compensation,
            own(&[
                r"\bcompensat",
                r"\bindemni",
                r"\bgoodwill (?:gesture|payment|credit)\b",
                r"\bmake (?:it|this|that) up to you\b",
            ]),
        ),
        (
            "en",
            FreeOfCharge,
            own(&[
                r"\bfree of charge\b",
                r"\b(?:for|at) (?:no (?:extra |additional )?(?:cost|charge)|free)\b",
                r"\bno (?:extra |additional )?charge\b",
                r"\bon the house\b",
                r"\bfree (?:replacement|exchange|gift|item|unit|upgrade|of cost)s?\b",
                r"\b(?:send|give|replace|ship|add)(?:s|ing)? (?:you |it |one )?(?:a |an |another |the )?(?:new |second |extra )?(?:one |item |unit |pair )?(?:for )?free\b",
                r"\bwon'?t (?:be )?charge",
                r"\bwaive",
            ]),
        ),
        (
            "en",
            PriceChange,
            own(&[
                r"\bprice (?:match|matching|adjust|adjustment|change|reduction|drop|difference)",
                r"\b(?:lower|reduce|drop|cut|change|adjust|match|beat)(?:s|ed|ing)? (?:the |your |its |our |their |that )?price",
                r"\b(?:cheaper|discounted) for you\b",
            ]),
        ),
        (
            "en",
            Cancellation,
            own(&[
                r"\bcancel(?:s|led|ed|lation|ation|lations|ations)?\b",
                r"\bcancel(?:l)?ing (?:it|the|this|that|your|an|a|orders?|you)\b",
            ]),
        ),
        (
            "id/ms",
            Refund,
            own(&[
                r"\bpengembalian (?:dana|uang|wang|bayaran)\b",
                r"\b(?:uang|dana|duit|wang|bayaran)\b(?:\s\S+){0,3}?\s(?:akan\s)?(?:kami\s)?(?:di)?(?:kembali(?:kan|in)?|pulangkan|refund)\b",
                r"\b(?:di|ter|me|ng)?(?:kembali(?:kan|in)?|pulangkan)\b(?:\s\S+){0,3}?\s(?:uang|dana|duit|wang|bayaran)\b",
                r"\b(?:uang|dana|duit|wang) kembali\b",
                r"\bbayaran balik\b",
                r"\bpulangan (?:wang|bayaran|dana|duit)\b",
                r"\bwang (?:dipulangkan|balik)\b",
            ]),
        ),
        (
            "id/ms",
            Discount,
            own(&[
                r"\bdiskon",
                r"\bdiskaun",
                r"\bpotongan(?: harga)?\b",
                r"\bpotong harga\b",
                r"\bharga (?:khusus|spesial|special|istimewa|teman|murah|diskon)\b",
                r"\b(?:turun|kurang|potong)(?:kan|in|i)? (?:sedikit |sikit )?harga",
                r"\bsetengah harga\b",
                r"\bcashback\b",
            ]),
        ),
        (
            "id/ms",
            Voucher,
            own(&[
                r"\bvoucher",
                r"\bvocer\b",
                r"\bbaucar",
                r"\bkupon",
                r"\bkod(?:e)? (?:promo|voucher|vocer|baucar|diskon|diskaun|kupon)\b",
                r"\b(?:pakai|guna(?:kan)?|masukkan|masukan) kod(?:e)?\b",
            ]),
        ),
        (
            "id/ms",
            StoreCredit,
            own(&[
                r"\bkoin (?:shopee|lazada|tiktok)\b",
                r"\bkredit (?:toko|kedai)\b",
                r"\bsaldo (?:toko|kedai)\b",
            ]),
        ),
        (
            "id/ms",
            Compensation,
            own(&[
                r"\bganti ?rugi\b",
                r"\bganti kerugian\b",
                r"\bkompensasi\b",
                r"\bpampasan\b",
            ]),
        ),
        (
            "id/ms",
            FreeOfCharge,
            own(&[
                r"\b(?:ganti|tukar|kirim|hantar|beri|kasih|bagi)\w*\b(?:\s\S+){0,4}?\s(?:gratis|percuma|free)\b",
                r"\bgratis (?:ganti|penggantian|barang|tukar|produk)\b",
                r"\btanpa (?:biaya|bayaran|caj|dikenakan biaya)\b",
                r"\btidak (?:dikenakan|dikenai) (?:biaya|bayaran|caj)\b",
                r"\bpercuma\b(?:\s\S+){0,2}?\s(?:untuk|buat|kepada) (?:anda|awak|kakak|kak|kamu|cik|tuan)\b",
            ]),
        ),
        (
            "id/ms",
            PriceChange,
            own(&[
                r"\b(?:ubah|ganti|sesuaikan|samakan)(?:kan)? harga",
                r"\bharga (?:kami )?(?:turunkan|kurangkan|sesuaikan)\b",
            ]),
        ),
        (
            "id/ms",
            Cancellation,
            own(&[
                r"\bbatal",
                r"\bpembatalan\b",
                r"\bmembatalkan\b",
                r"\bdibatalkan\b",
            ]),
        ),
        (
            "th",
            Refund,
            own(&[
                r"คืนเงิน",
                r"เงินคืน",
                r"โอน(?:เงิน)?คืน",
                r"คืนค่า(?:สินค้า|ส่ง|ใช้จ่าย)",
                r"รีฟันด์",
            ]),
        ),
        (
            "th",
            Discount,
            own(&[
                r"ส่วนลด",
                r"ลดราคา",
                r"ลด(?:ให้|อีก|เหลือ|พิเศษ)",
                r"ราคาพิเศษ",
                r"ครึ่งราคา",
                r"ลดครึ่ง",
            ]),
        ),
        (
            "th",
            Voucher,
            own(&[r"คูปอง", r"โค้ด", r"โค๊ด", r"บัตรกำนัล", r"วอเชอร์", r"เวาเชอร์"]),
        ),
        (
            "th",
            StoreCredit,
            own(&[r"เครดิต(?:ร้าน|ในร้าน|เงินคืน)", r"เหรียญ(?:ช้อปปี้|shopee|ลาซาด้า)"]),
        ),
        (
            "th",
            Compensation,
            own(&[r"ชดเชย", r"ชดใช้", r"ค่าเสียหาย", r"ค่าทำขวัญ"]),
        ),
        (
            "th",
            FreeOfCharge,
            own(&[
                r"(?:ส่ง|เปลี่ยน|ให้|แถม|เคลม)(?:สินค้า|ของ)?(?:ชิ้น)?(?:ใหม่)?(?:ให้)?(?:ฟรี)",
                r"ไม่(?:มี|เสีย|คิด)ค่าใช้จ่าย",
                r"ไม่คิดเงิน",
                r"ฟรีๆ",
                r"ให้ฟรี",
                r"แถมฟรี",
            ]),
        ),
        (
            "th",
            PriceChange,
            own(&[r"ปรับราคา", r"เปลี่ยนราคา", r"แก้ราคา", r"ลดราคาให้"]),
        ),
        ("th", Cancellation, own(&[r"ยกเลิก"])),
        (
            "vi",
            Refund,
            own(&[
                r"\bhoàn (?:lại )?(?:tiền|\d|toàn bộ|đủ)",
                r"\bhoàn trả (?:lại )?(?:tiền|\d|toàn bộ|đủ|phí)",
                r"\btrả lại (?:tiền|\d|toàn bộ|đủ)",
                r"\bgửi lại tiền\b",
                r"\btiền\b(?:\s\S+){0,3}?\s(?:sẽ )?(?:được )?(?:hoàn|trả lại)\b",
                r"\brefund",
                r"\bbồi hoàn\b",
            ]),
        ),
        (
            "vi",
            Discount,
            own(&[
                r"\bgiảm giá\b",
                r"\bgiảm (?:thêm |ngay )?\d",
                r"\bgiảm (?:cho|thêm cho|giá cho) (?:bạn|anh|chị|em|mình|quý khách)\b",
                r"\bchiết khấu\b",
                r"\bkhuyến mãi\b",
                r"\bkhuyến mại\b",
                r"\bưu đãi\b",
                r"\bnửa giá\b",
                r"\bgiá (?:đặc biệt|ưu đãi|rẻ hơn) cho\b",
            ]),
        ),
        (
            "vi",
            Voucher,
            own(&[
                r"\bmã (?:giảm|khuyến|ưu đãi|km|voucher|coupon|code|freeship)",
                r"\bvoucher",
                r"\bcoupon",
                r"\bphiếu (?:giảm giá|mua hàng|quà tặng)\b",
            ]),
        ),
        (
            "vi",
            StoreCredit,
            own(&[r"\bxu (?:shopee|lazada|tiktok)\b", r"\bđiểm thưởng\b"]),
        ),
        (
            "vi",
            Compensation,
            own(&[r"\bbồi thường\b", r"\bđền bù\b", r"\bđền tiền\b"]),
        ),
        (
            "vi",
            FreeOfCharge,
            own(&[
                r"\b(?:gửi|đổi|tặng|giao|thay|bù)\b(?:\s\S+){0,4}?\s(?:miễn phí|free)\b",
                r"\bmiễn phí (?:đổi|cho bạn|cho anh|cho chị|cho em|cho quý khách)\b",
                r"\bkhông (?:mất|tính|thu) (?:phí|tiền)\b",
                r"\btặng (?:bạn|anh|chị|em|kèm|thêm)\b",
            ]),
        ),
        (
            "vi",
            PriceChange,
            own(&[r"\b(?:điều chỉnh|đổi|hạ|giảm|sửa) giá\b"]),
        ),
        (
            "vi",
            Cancellation,
            own(&[
                r"\bhủy (?:đơn|đặt|bỏ|giao dịch|giúp|cho)\b",
                r"\bhuỷ (?:đơn|đặt|bỏ|giao dịch|giúp|cho)\b",
                r"\b(?:đã|sẽ|được|bị|tự|không) (?:hủy|huỷ)\b",
                r"\b(?:hủy|huỷ) được\b",
            ]),
        ),
        (
            "tl",
            Refund,
            own(&[
                r"\b(?:i-?)?refund",
                r"\b(?:ibabalik|ibalik|ibinalik|maibabalik|maibalik|babalik|isasauli|isauli|ibabalik)\w*\b(?:\s\S+){0,3}?\s(?:pera|bayad)\b",
                r"\bbalik[- ]?(?:pera|bayad)\b",
            ]),
        ),
        (
            "tl",
            Discount,
            own(&[
                r"\bdiskwento\b",
                r"\b(?:bawasan|babaan|ibaba)\b(?:\s\S+){0,3}?\s(?:presyo|halaga)\b",
                r"\bless (?:na )?(?:po )?\d",
                r"\bkalahati (?:ng|sa) presyo\b",
            ]),
        ),
        (
            "tl",
            Compensation,
            own(&[r"\bbayad[- ]?pinsala\b", r"\bkabayaran\b", r"\bdanyos\b"]),
        ),
        (
            "tl",
            FreeOfCharge,
            own(&[r"\blibre\b", r"\bwalang (?:bayad|babayaran|singil)\b"]),
        ),
        (
            "tl",
            Cancellation,
            own(&[
                r"\bkanselahin\b",
                r"\bkinansela\b",
                r"\bkakanselahin\b",
                r"\bi-?cancel\b",
                r"\bicancel\b",
            ]),
        ),
        (
            "pt/es",
            Refund,
            own(&[
                r"\breembols",
                r"\bestorn",
                r"\bressarc",
                r"\bresarc",
                r"\bdevol\w*\b(?:\s\S+){0,3}?\s(?:o |el |seu |sua |su |tu |todo o |todo el )?(?:seu |su |tu )?(?:dinheiro|dinero|valor|importe|pagamento|pago|monto|quantia)\b",
                r"\b(?:dinheiro|dinero|valor|importe|pagamento|pago)\b(?:\s\S+){0,3}?\s(?:devolvid|devuelt|reembolsad|estornad)",
                r"\bdinheiro de volta\b",
                r"\bdinero de vuelta\b",
                r"\bdevolução do dinheiro\b",
                r"\bdevolución del dinero\b",
            ]),
        ),
        (
            "pt/es",
            Discount,
            own(&[
                r"\bdesconto",
                r"\bdescuento",
                r"\babatimento\b",
                r"\brebaja",
                r"\bpreço (?:especial|menor|melhor|reduzido|camarada)\b",
                r"\bprecio (?:especial|menor|mejor|rebajado|reducido)\b",
                r"\bmetade do preço\b",
                r"\bpela metade\b",
                r"\bmitad de precio\b",
                r"\bmitad del precio\b",
            ]),
        ),
        (
            "pt/es",
            Voucher,
            own(&[
                r"\bcupom\b",
                r"\bcupons\b",
                r"\bcupón\b",
                r"\bcupones\b",
                r"\bvoucher",
                r"\bvale[- ](?:compra|presente|desconto)\b",
                r"\bvale de (?:compra|descuento|regalo|desconto)\b",
                r"\bcódigo (?:promocional|de desconto|de descuento|do cupom|del cupón)\b",
            ]),
        ),
        (
            "pt/es",
            StoreCredit,
            own(&[
                r"\bcrédito (?:na loja|em loja|na (?:sua )?conta|en (?:la )?tienda|en (?:su |tu )?cuenta)\b",
                r"\bcreditar",
                r"\bacreditar",
                r"\bsaldo a (?:su|tu) favor\b",
            ]),
        ),
        (
            "pt/es",
            Compensation,
            own(&[
                r"\bcompensa(?:ção|ções|ción|ciones|r|remos|mos|re)\b",
                r"\bindeniza",
                r"\bindemniza",
            ]),
        ),
        (
            "pt/es",
            FreeOfCharge,
            own(&[
                r"\b(?:enviar|mandar|trocar|repor|substituir|cambiar|reponer|reemplazar|enviaremos|mandaremos|trocaremos|cambiaremos|vamos enviar|vamos trocar|le enviamos|te enviamos|enviamos)\b(?:\s\S+){0,4}?\s(?:grátis|gratis|gratuitamente|sem custo|sin costo|sin cargo)\b",
                r"\bsem (?:nenhum )?(?:custo|cobrança) (?:para|pra) (?:você|voce)\b",
                r"\bsin (?:ningún )?(?:costo|coste|cargo) (?:para|alguno para) (?:usted|ti)\b",
                r"\bde graça\b",
                r"\b(?:grátis|gratuito|gratuita) (?:para|pra) (?:você|vc|usted|ti)\b",
                r"\b(?:troca|substituição|reposição|cambio|reemplazo|reposición) (?:grátis|gratuita|gratis)\b",
            ]),
        ),
        (
            "pt/es",
            PriceChange,
            own(&[
                r"\b(?:baixar|reduzir|abaixar|ajustar|mudar|alterar|bajar|ajustaremos|reducir|cambiar|igualar|cubrir)(?:emos)? (?:o |el |seu |su )?(?:preço|precio)\b",
                r"\bajuste de (?:preço|precio)\b",
            ]),
        ),
        ("pt/es", Cancellation, own(&[r"\bcancel", r"\banul[aeo]"])),
        (
            "zh",
            Refund,
            own(&[
                r"退款",
                r"退钱",
                r"退錢",
                r"退还",
                r"退還",
                r"退(?:您|你|給您|给您|给你|給你)",
                r"全额退",
                r"全額退",
                r"返现",
                r"返現",
                r"返还(?:货款|金额|款)",
                r"把钱退",
                r"把錢退",
                r"钱退",
                r"錢退",
            ]),
        ),
        (
            "zh",
            Discount,
            own(&[
                r"折扣",
                r"打(?:个|個)?\s?(?:[一二三四五六七八九\d](?:\.\d)?|半)\s?折",
                r"(?:[一二三四五六七八九]|\d)\s?折(?:优惠|優惠|出售|价|價)",
                r"打折",
                r"优惠",
                r"優惠",
                r"减价",
                r"減價",
                r"降价",
                r"降價",
                r"半价",
                r"半價",
                r"让利",
                r"讓利",
                r"(?:给|給)(?:您|你)(?:便宜|减|減|少算)",
                r"便宜(?:一点|一點|点|點|些)(?:给|給)",
            ]),
        ),
        (
            "zh",
            Voucher,
            own(&[
                r"优惠券",
                r"優惠券",
                r"代金券",
                r"折扣码",
                r"折扣碼",
                r"优惠码",
                r"優惠碼",
                r"兑换码",
                r"兌換碼",
                r"礼券",
                r"禮券",
                r"红包",
                r"紅包",
                r"券",
            ]),
        ),
        (
            "zh",
            StoreCredit,
            own(&[r"积分", r"積分", r"店铺余额", r"店鋪餘額", r"金币", r"金幣"]),
        ),
        (
            "zh",
            Compensation,
            own(&[
                r"赔偿", r"賠償", r"补偿", r"補償", r"赔付", r"賠付", r"赔钱", r"賠錢",
            ]),
        ),
        (
            "zh",
            FreeOfCharge,
            own(&[
                r"免费",
                r"免費",
                r"不收(?:费|費|钱|錢|取任何费用)",
                r"白送",
                r"赠送",
                r"贈送",
                r"送(?:您|你)(?:一|个|個)",
            ]),
        ),
        (
            "zh",
            PriceChange,
            own(&[
                r"改价",
                r"改價",
                r"调价",
                r"調價",
                r"改(?:一下)?价格",
                r"改價格",
                r"调整价格",
                r"調整價格",
            ]),
        ),
        (
            "zh",
            Cancellation,
            own(&[r"取消", r"撤销订单", r"撤銷訂單"]),
        ),
    ]
}

/// Phrases that hold a binding-looking word in another sense; they are
/// blanked out before the vocabulary is matched.
static NOT_BINDING: LazyLock<Patterns> = LazyLock::new(|| {
    Patterns::new([
        r"\bnoise[- ]?cancel\w*",
        r"\bcancel(?:l)?ing (?:noise|headphones|earbuds)\b",
        r"\b(?:credit|debit)(?: or (?:credit|debit))? cards?\b",
        r"\b(?:tracking|return|postage|qr|otp|zip|postal|verification|country|area) codes?\b",
        r"\bcancelamento (?:ativo )?de ruído\b",
        r"\bcancelación (?:activa )?de ruido\b",
        r"\bcódigo (?:de|do) (?:rastreio|rastreamento|postagem|seguimiento|rastreo|envío|envio|barras)\b",
        r"\bcartão de crédito\b",
        r"\btarjeta de crédito\b",
        r"\bkode (?:resi|pos|otp|booking|pembayaran|bayar)\b",
        r"\bkod (?:pos|otp)\b",
        r"\bkartu kredit\b",
        r"\bkad kredit\b",
        r"บัตรเครดิต",
        r"(?:โค้ด|รหัส)(?:ติดตาม|พัสดุ|ไปรษณีย์)",
        r"取消关注",
        r"取消關注",
    ])
});

struct Group {
    language: &'static str,
    kind: BindingKind,
    patterns: Patterns,
}

static GROUPS: LazyLock<Vec<Group>> = LazyLock::new(|| {
    vocabulary()
        .into_iter()
        .map(|(language, kind, patterns)| Group {
            language,
            kind,
            patterns: Patterns::new(patterns.iter().map(String::as_str)),
        })
        .collect()
});

/// The binding terms of `text`, at most one per kind, in the order of the
/// kinds.
pub fn binding_terms(text: &Folded) -> Vec<BindingTerm> {
    let views: Vec<String> = text.views().map(|v| NOT_BINDING.blank_out(v)).collect();
    let mut found: Vec<BindingTerm> = Vec::new();
    for group in GROUPS.iter() {
        if found.iter().any(|f| f.kind == group.kind) {
            continue;
        }
        if let Some(term) = views.iter().find_map(|v| group.patterns.find_in(v)) {
            found.push(BindingTerm {
                kind: group.kind,
                language: group.language,
                term: term.trim().to_string(),
            });
        }
    }
    found.sort_by_key(|f| f.kind);
    found
}

/// The languages whose vocabulary is listed, for the tests.
#[cfg(test)]
pub(super) fn languages() -> Vec<&'static str> {
    let mut languages: Vec<&'static str> = GROUPS.iter().map(|g| g.language).collect();
    languages.dedup();
    languages
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<BindingKind> {
        binding_terms(&Folded::new(text))
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn every_pattern_compiles() {
        assert!(GROUPS.len() > 40);
        assert_eq!(
            languages(),
            ["any", "en", "id/ms", "th", "vi", "tl", "pt/es", "zh"]
        );
    }

    #[test]
    fn h2_every_phrase_the_review_found_missed_is_caught() {
        let table: &[(&str, BindingKind)] = &[
            ("We will return your money today", Refund),
            ("We'll pay you back in full", Refund),
            ("You can have it at half price", Discount),
            ("Use code SAVE10 for 10 percent off", Discount),
            ("RM10 off for you", Discount),
            ("We'll send a new one free of charge", FreeOfCharge),
            ("store credit", StoreCredit),
            ("Kami akan kembalikan uang kakak", Refund),
            ("Dana kakak akan dikembalikan", Refund),
            ("kami kasih potongan 20%", Discount),
            ("Kami beri diskaun 20%", Discount),
            ("baucar RM5", Voucher),
            ("Pulangan wang akan diproses", Refund),
            ("我们给您打八折", Discount),
            ("給您優惠，退錢沒問題", Refund),
            ("可以给你优惠一点", Discount),
            ("Chúng tôi sẽ trả lại tiền cho bạn", Refund),
            ("mã khuyến mãi", Voucher),
            ("Le devolveremos el dinero", Refund),
            ("rebaja del 20%", Discount),
            ("Vamos devolver o dinheiro", Refund),
            ("Ibabalik namin ang pera mo", Refund),
            ("ลด 20% ให้เลยค่ะ", Discount),
            ("r e f u n d", Refund),
            ("re\u{200B}fund", Refund),
            ("ｒｅｆｕｎｄ", Refund),
            (
                "Chu\u{301}ng to\u{302}i se\u{303} hoa\u{300}n tie\u{302}\u{300}n",
                Refund,
            ),
        ];
        for (text, kind) in table {
            assert!(kinds(text).contains(kind), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn everyday_words_are_not_binding() {
        for text in [
            "Your parcel left our Jakarta warehouse yesterday and should arrive in 2-4 days.",
            "Please drop off the parcel at the counter.",
            "Turn off the power bank before you fly.",
            "Đơn hàng đã giao, bạn trả lại hàng trong 15 ngày nhé", // return goods, not money
            "Anh Huy ơi, hàng đã tới kho rồi ạ",
            "พัดลมช่วยลดความร้อนได้ดีค่ะ",
            "这款充电宝可以折叠，很方便",
            "骨折了吗？",
            "Barang akan kembali ke gudang kami",
            "Kakak bisa kembali lagi besok",
            "Usamos o código de rastreio da Correios",
            "The tracking code is SPXID0123",
            "Pay with your credit card at checkout",
            "บัตรเครดิตใช้ได้ค่ะ",
            "Lo siento, el paquete está en camino",
            "We ship from Guangzhou, 5-9 days.",
            "",
        ] {
            assert!(
                kinds(text).is_empty(),
                "{text}: {:?}",
                binding_terms(&Folded::new(text))
            );
        }
    }
}
