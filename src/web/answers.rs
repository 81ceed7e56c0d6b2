//! The buyer's answer to a binding request, in their language: one
//! template per language and outcome, filled with the approved amount and
//! the order, and nothing else. No model writes these words; the AI never
//! approves anything, it only carries what a person decided.

use crate::store::desk::{ApprovalOutcome, BindingKind};

struct Phrases {
    order: &'static str,
    your_order: &'static str,
    refund: &'static str,
    partial_refund: &'static str,
    discount: &'static str,
    cancellation: &'static str,
    compensation: &'static str,
    declined: &'static str,
}

const EN: Phrases = Phrases {
    order: "order {n}",
    your_order: "your order",
    refund: "Good news: your refund of {amount} for {order} has been approved. It goes back to your original payment method.",
    partial_refund: "Good news: a partial refund of {amount} for {order} has been approved. It goes back to your original payment method.",
    discount: "Good news: we have approved a discount of {amount} for {order}.",
    cancellation: "The cancellation of {order} has been approved.",
    compensation: "Good news: we have approved compensation of {amount} for {order}.",
    declined: "We are sorry, but we cannot approve this request for {order}. We are still here to help with anything else.",
};

const ID: Phrases = Phrases {
    order: "pesanan {n}",
    your_order: "pesanan Anda",
    refund: "Kabar baik: pengembalian dana sebesar {amount} untuk {order} telah disetujui. Dana akan kembali ke metode pembayaran awal Anda.",
    partial_refund: "Kabar baik: pengembalian dana sebagian sebesar {amount} untuk {order} telah disetujui. Dana akan kembali ke metode pembayaran awal Anda.",
    discount: "Kabar baik: kami menyetujui potongan harga sebesar {amount} untuk {order}.",
    cancellation: "Pembatalan {order} telah disetujui.",
    compensation: "Kabar baik: kami menyetujui kompensasi sebesar {amount} untuk {order}.",
    declined: "Mohon maaf, kami tidak dapat menyetujui permintaan ini untuk {order}. Kami tetap siap membantu untuk hal lainnya.",
};

const MS: Phrases = Phrases {
    order: "pesanan {n}",
    your_order: "pesanan anda",
    refund: "Berita baik: bayaran balik sebanyak {amount} untuk {order} telah diluluskan. Wang akan dikembalikan ke kaedah pembayaran asal anda.",
    partial_refund: "Berita baik: bayaran balik separa sebanyak {amount} untuk {order} telah diluluskan. Wang akan dikembalikan ke kaedah pembayaran asal anda.",
    discount: "Berita baik: kami telah meluluskan diskaun sebanyak {amount} untuk {order}.",
    cancellation: "Pembatalan {order} telah diluluskan.",
    compensation: "Berita baik: kami telah meluluskan pampasan sebanyak {amount} untuk {order}.",
    declined: "Harap maaf, kami tidak dapat meluluskan permintaan ini untuk {order}. Kami masih sedia membantu dalam hal lain.",
};

const TH: Phrases = Phrases {
    order: "คำสั่งซื้อ {n}",
    your_order: "คำสั่งซื้อของคุณ",
    refund: "ข่าวดีค่ะ การคืนเงินจำนวน {amount} สำหรับ{order} ได้รับการอนุมัติแล้ว เงินจะคืนเข้าช่องทางชำระเงินเดิมของคุณ",
    partial_refund: "ข่าวดีค่ะ การคืนเงินบางส่วนจำนวน {amount} สำหรับ{order} ได้รับการอนุมัติแล้ว เงินจะคืนเข้าช่องทางชำระเงินเดิมของคุณ",
    discount: "ข่าวดีค่ะ เราได้อนุมัติส่วนลด {amount} สำหรับ{order}แล้ว",
    cancellation: "การยกเลิก{order} ได้รับการอนุมัติแล้วค่ะ",
    compensation: "ข่าวดีค่ะ เราได้อนุมัติค่าชดเชย {amount} สำหรับ{order}แล้ว",
    declined: "ขออภัยค่ะ เราไม่สามารถอนุมัติคำขอนี้สำหรับ{order}ได้ หากมีเรื่องอื่นให้ช่วย ยินดีดูแลค่ะ",
};

const VI: Phrases = Phrases {
    order: "đơn hàng {n}",
    your_order: "đơn hàng của bạn",
    refund: "Tin vui: khoản hoàn tiền {amount} cho {order} đã được duyệt. Tiền sẽ được hoàn về phương thức thanh toán ban đầu của bạn.",
    partial_refund: "Tin vui: khoản hoàn tiền một phần {amount} cho {order} đã được duyệt. Tiền sẽ được hoàn về phương thức thanh toán ban đầu của bạn.",
    discount: "Tin vui: chúng tôi đã duyệt mức giảm giá {amount} cho {order}.",
    cancellation: "Yêu cầu hủy {order} đã được duyệt.",
    compensation: "Tin vui: chúng tôi đã duyệt khoản bồi thường {amount} cho {order}.",
    declined: "Rất tiếc, chúng tôi không thể duyệt yêu cầu này cho {order}. Chúng tôi vẫn sẵn sàng hỗ trợ bạn những việc khác.",
};

const TL: Phrases = Phrases {
    order: "order {n}",
    your_order: "iyong order",
    refund: "Magandang balita: naaprubahan na ang refund na {amount} para sa {order}. Ibabalik ito sa orihinal mong paraan ng pagbabayad.",
    partial_refund: "Magandang balita: naaprubahan na ang partial refund na {amount} para sa {order}. Ibabalik ito sa orihinal mong paraan ng pagbabayad.",
    discount: "Magandang balita: inaprubahan namin ang diskwento na {amount} para sa {order}.",
    cancellation: "Naaprubahan na ang pagkansela ng {order}.",
    compensation: "Magandang balita: inaprubahan namin ang kompensasyon na {amount} para sa {order}.",
    declined: "Paumanhin po, hindi namin maaaprubahan ang request na ito para sa {order}. Nandito pa rin kami para tumulong sa iba pang bagay.",
};

const PT: Phrases = Phrases {
    order: "o pedido {n}",
    your_order: "o seu pedido",
    refund: "Boa notícia: o reembolso de {amount} para {order} foi aprovado. O valor volta para a sua forma de pagamento original.",
    partial_refund: "Boa notícia: o reembolso parcial de {amount} para {order} foi aprovado. O valor volta para a sua forma de pagamento original.",
    discount: "Boa notícia: aprovamos um desconto de {amount} para {order}.",
    cancellation: "Aprovamos o cancelamento: {order} foi cancelado.",
    compensation: "Boa notícia: aprovamos uma compensação de {amount} para {order}.",
    declined: "Lamentamos, mas não podemos aprovar esta solicitação para {order}. Continuamos à disposição para ajudar no que precisar.",
};

const ES: Phrases = Phrases {
    order: "el pedido {n}",
    your_order: "tu pedido",
    refund: "Buenas noticias: se ha aprobado el reembolso de {amount} para {order}. Se devolverá a tu método de pago original.",
    partial_refund: "Buenas noticias: se ha aprobado un reembolso parcial de {amount} para {order}. Se devolverá a tu método de pago original.",
    discount: "Buenas noticias: hemos aprobado un descuento de {amount} para {order}.",
    cancellation: "Hemos aprobado la cancelación: {order} queda cancelado.",
    compensation: "Buenas noticias: hemos aprobado una compensación de {amount} para {order}.",
    declined: "Lo sentimos, no podemos aprobar esta solicitud para {order}. Seguimos aquí para ayudarte con lo que necesites.",
};

const ZH: Phrases = Phrases {
    order: "订单 {n} ",
    your_order: "您的订单",
    refund: "好消息：{order}的退款 {amount} 已获批准，款项将退回您的原支付方式。",
    partial_refund: "好消息：{order}的部分退款 {amount} 已获批准，款项将退回您的原支付方式。",
    discount: "好消息：我们已为{order}批准 {amount} 的优惠。",
    cancellation: "{order}的取消申请已获批准。",
    compensation: "好消息：我们已为{order}批准 {amount} 的补偿。",
    declined: "很抱歉，我们无法批准{order}的这项申请。如有其他需要，我们随时为您服务。",
};

/// The languages with templates; anything else is answered in English.
pub const LANGUAGES: [&str; 9] = ["en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh"];

fn phrases(language: &str) -> (&'static str, &'static Phrases) {
    let base = language
        .split(['-', '_'])
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match base.as_str() {
        "id" => ("id", &ID),
        "ms" => ("ms", &MS),
        "th" => ("th", &TH),
        "vi" => ("vi", &VI),
        "tl" | "fil" => ("tl", &TL),
        "pt" => ("pt", &PT),
        "es" => ("es", &ES),
        "zh" => ("zh", &ZH),
        _ => ("en", &EN),
    }
}

/// What the buyer is told, and the language it is in.
pub struct Answer {
    pub language: &'static str,
    pub text: String,
}

pub struct AnswerParams<'a> {
    pub language: &'a str,
    pub kind: BindingKind,
    pub outcome: ApprovalOutcome,
    /// Already formatted ("12.50 USD"); required for approvals of kinds
    /// with an amount.
    pub amount: Option<&'a str>,
    pub order_number: Option<&'a str>,
}

pub fn answer(params: &AnswerParams<'_>) -> Answer {
    let (language, p) = phrases(params.language);
    let order = match params.order_number {
        Some(n) => p.order.replace("{n}", n),
        None => p.your_order.to_owned(),
    };
    let template = match (params.outcome, params.kind) {
        (ApprovalOutcome::Declined, _) => p.declined,
        (ApprovalOutcome::Approved, BindingKind::Refund) => p.refund,
        (ApprovalOutcome::Approved, BindingKind::PartialRefund) => p.partial_refund,
        (ApprovalOutcome::Approved, BindingKind::Discount) => p.discount,
        (ApprovalOutcome::Approved, BindingKind::Cancellation) => p.cancellation,
        (ApprovalOutcome::Approved, BindingKind::Compensation) => p.compensation,
    };
    let text = template
        .replace("{order}", order.trim_end())
        .replace("{amount}", params.amount.unwrap_or(""));
    Answer {
        language,
        text: text.replace("  ", " "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_fills_every_template_completely() {
        for language in LANGUAGES {
            for kind in BindingKind::ALL {
                for outcome in [ApprovalOutcome::Approved, ApprovalOutcome::Declined] {
                    for order in [Some("SPE-2611-00123"), None] {
                        let a = answer(&AnswerParams {
                            language,
                            kind,
                            outcome,
                            amount: Some("12.50 USD"),
                            order_number: order,
                        });
                        assert_eq!(a.language, language);
                        assert!(!a.text.contains('{'), "{language} {kind:?}: {}", a.text);
                        if let Some(n) = order {
                            assert!(a.text.contains(n), "{language} {kind:?}: {}", a.text);
                        }
                        let shows_amount =
                            outcome == ApprovalOutcome::Approved && kind.has_amount();
                        assert_eq!(
                            a.text.contains("12.50 USD"),
                            shows_amount,
                            "{language} {kind:?} {outcome:?}: {}",
                            a.text
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_and_regional_languages() {
        let params = |language| AnswerParams {
            language,
            kind: BindingKind::Refund,
            outcome: ApprovalOutcome::Approved,
            amount: Some("5.00 USD"),
            order_number: Some("A1"),
        };
        assert_eq!(answer(&params("pt-BR")).language, "pt");
        assert_eq!(answer(&params("fr")).language, "en");
        assert_eq!(
            answer(&params("en")).text,
            "Good news: your refund of 5.00 USD for order A1 has been approved. It goes back \
             to your original payment method."
        );
    }
}
