//! Explicit requests for a human (an agent, the admin, customer service, a
//! real person) in every language kedai serves, by patterns: a buyer who
//! asks for a person gets one, however confident the intent classifier is
//! about something else. Negations such as "no need for an agent" are not
//! requests. Pure functions: no model, no I/O.

use std::sync::OnceLock;

use regex::Regex;

struct Patterns {
    request: Vec<Regex>,
    negation: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |p: &str| Regex::new(&format!("(?i){p}")).expect("human pattern compiles");
        Patterns {
            request: [
                // English
                r"\b(?:talk|speak|chat)\s+(?:to|with)\s+(?:a\s+|an\s+|the\s+|your\s+|some\s+)?(?:real\s+|live\s+)?(?:human|person|people|agent|someone|somebody|staff|admin|seller|owner|representative|rep|operator|customer\s+service|manager|supervisor)",
                r"\b(?:real|live|actual)\s+(?:human|person|agent)\b",
                r"\b(?:human|live)\s+agent\b",
                r"\b(?:connect|transfer)\s+me\s+(?:to|with)\b",
                r"\bare\s+you\s+(?:a\s+)?(?:bot|robot|human)\b",
                r"\b(?:i\s+want|i\s+need|get\s+me|give\s+me)\s+(?:a\s+|an\s+|the\s+)?(?:human|person|agent|admin|manager|supervisor)\b",
                // Indonesian / Malay
                r"\b(?:mau|ingin|minta|nak|mahu|boleh)\s+(?:bicara|ngobrol|ngomong|bercakap|cakap|berbicara|chat|hubungi|dihubungkan|disambungkan|sambung)?\s*(?:dengan|sama|ke|kat)?\s*(?:admin|cs|agen|ejen|petugas|manusia|orang|staf|staff|operator|penjual|seller|customer\s+service)\b",
                r"\b(?:sambungkan|hubungkan)\s+(?:saya\s+|aku\s+)?(?:dengan|ke|kepada)\s+(?:admin|cs|agen|ejen|petugas|manusia|orang|staf)",
                r"\b(?:admin|cs)\s+(?:asli|beneran|manusia|betul)\b",
                r"\b(?:orang|manusia)\s+(?:asli|beneran|betul|sebenar)\b",
                r"\bbukan\s+(?:bot|robot)\b",
                // Thai
                r"(?:ขอ|อยาก)(?:คุย|สาย|ติดต่อ|พูด)(?:กับ)?(?:แอดมิน|พนักงาน|เจ้าหน้าที่|คน|ผู้ดูแล|เจ้าของร้าน)",
                r"ติดต่อ(?:แอดมิน|พนักงาน|เจ้าหน้าที่)",
                r"คนจริง",
                // Vietnamese
                r"(?:gặp|nói\s+chuyện\s+với|kết\s+nối\s+với|chat\s+với|liên\s+hệ)\s+(?:nhân\s+viên|người\s+thật|tư\s+vấn\s+viên|admin|chủ\s+shop|quản\s+lý|con\s+người)",
                r"người\s+thật",
                // Tagalog / Taglish
                r"\b(?:makausap|kausapin|kausap)\s+(?:ko\s+)?(?:po\s+)?(?:ang|ng|sa|yung|si)?\s*(?:tao|agent|admin|seller|staff|customer\s+service|totoong\s+tao)",
                r"\btotoong\s+tao\b",
                r"\b(?:may|meron)\s+(?:bang\s+)?(?:tao|agent|admin)\s+(?:ba|dyan|diyan)\b",
                // Portuguese / Spanish
                r"\b(?:falar|conversar|hablar)\s+(?:com|con)\s+(?:um\s+|uma\s+|o\s+|a\s+|un\s+|una\s+|el\s+|la\s+|alguien|alguém)?\s*(?:atendente|humano|humana|pessoa|persona|agente|representante|asesor|assessor|operador|vendedor|gerente|encargado)",
                r"\batendimento\s+humano\b",
                r"\b(?:quiero|quero|necesito|preciso\s+de)\s+(?:un\s+|una\s+|um\s+|uma\s+)?(?:humano|agente|atendente|persona\s+real|pessoa\s+real)",
                r"\b(?:persona|pessoa)\s+real\b",
                // A hand-over keyword on its own ("type atendente for a person").
                r"^\s*(?:atendente|humano|agente|human|agent|operator|representative|admin|cs|live\s+chat|แอดมิน|พนักงาน|nhân\s+viên|nhan\s+vien|人工|客服)\s*(?:ค่ะ|คะ|ครับ|คับ|จ้า|หน่อย|po|kak|ka|dong|pls|plz|please|ạ|a)?\s*[!?.。！？]*\s*$",
                // Chinese
                r"人工(?:客服|服务|服務)?",
                r"真人",
                r"(?:找|要|转|轉)(?:客服|人工|真人|店主|老板)",
                r"客服人员",
            ]
            .iter()
            .map(|p| re(p))
            .collect(),
            negation: re(concat!(
                r"\b(?:no\s+need|don'?t\s+need|do\s+not\s+need|not\s+necessary|tidak\s+perlu|gak\s+perlu|ga\s+perlu|tak\s+perlu|hindi\s+na\s+kailangan|no\s+hace\s+falta|não\s+precisa|không\s+cần)\b",
                r"|ไม่ต้อง|不用|不需要"
            )),
        }
    })
}

/// Whether `text` asks to be served by a person.
pub fn requests_human(text: &str) -> bool {
    let p = patterns();
    p.request.iter().any(|r| r.is_match(text)) && !p.negation.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_in_every_language() {
        for text in [
            "can I talk to a real person please",
            "I want to speak with customer service",
            "are you a bot? get me a human",
            "transfer me to an agent now",
            "mau bicara sama admin dong",
            "minta cs manusia ya kak",
            "sambungkan saya dengan petugas",
            "nak cakap dengan ejen boleh?",
            "saya mahu bercakap dengan orang sebenar",
            "ขอคุยกับแอดมินหน่อยครับ",
            "อยากติดต่อเจ้าหน้าที่ค่ะ",
            "cho mình gặp nhân viên tư vấn",
            "tôi muốn nói chuyện với người thật",
            "pwede po ba makausap ang totoong tao?",
            "gusto ko kausapin yung admin",
            "quero falar com um atendente",
            "atendente",
            "Admin??",
            "แอดมินค่ะ",
            "admin po",
            "preciso de atendimento humano",
            "quiero hablar con un agente",
            "¿puedo hablar con una persona real?",
            "转人工",
            "我要找客服人员",
            "请帮我接真人客服",
        ] {
            assert!(requests_human(text), "{text}");
        }
    }

    #[test]
    fn ordinary_questions_and_negations_are_not_requests() {
        for text in [
            "where is my order",
            "is this shirt available in XL",
            "the agent at the post office said it was delivered",
            "thanks, no need for an agent, I found it",
            "tidak perlu admin, sudah beres",
            "barang sudah sampai, terima kasih admin",
            "สินค้ามาถึงแล้วครับ",
            "khi nào giao hàng",
            "salamat po",
            "obrigado, chegou tudo certo",
            "gracias por la ayuda",
            "什么时候发货",
            "",
            "😡😡😡",
        ] {
            assert!(!requests_human(text), "{text}");
        }
    }
}
