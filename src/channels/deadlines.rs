//! Response deadlines: each unanswered buyer message has a deadline (the
//! platform's reply window, `channels.<platform>.response_deadline_hours`,
//! or a shop's override). Ahead of it the conversation is flagged at risk
//! (an audit event, an event webhook, `GET /api/v1/deadlines`), and, when a
//! shop asks for it, a short acknowledgement in the buyer's language is
//! sent before the deadline passes. Only a person's or the AI's answer
//! clears the flag; kedai's own holding messages do not.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::Channels;
use crate::domain::{MessageText, TextLimits};
use crate::store::{DeadlineAction, Unanswered};

/// The acknowledgement, per language: it promises an answer and nothing
/// else (no refund, no date), so it is safe to send without a human.
pub fn acknowledgement(language: Option<&str>) -> &'static str {
    match language.unwrap_or("en") {
        "id" => "Terima kasih atas pesannya, kak! Tim kami sudah menerima pertanyaan Anda dan akan segera membalas.",
        "ms" => "Terima kasih atas mesej anda! Pasukan kami telah menerima soalan anda dan akan membalas secepat mungkin.",
        "th" => "ขอบคุณสำหรับข้อความค่ะ ทีมงานได้รับคำถามของคุณแล้ว และจะรีบตอบกลับโดยเร็วที่สุดค่ะ",
        "vi" => "Cảm ơn bạn đã nhắn tin! Shop đã nhận được câu hỏi và sẽ trả lời bạn sớm nhất có thể.",
        "tl" => "Salamat po sa inyong mensahe! Natanggap na po ng aming team ang inyong tanong at sasagot kami sa lalong madaling panahon.",
        "pt" => "Obrigado pela mensagem! Nossa equipe recebeu sua pergunta e vai responder o mais rápido possível.",
        "es" => "¡Gracias por tu mensaje! Nuestro equipo recibió tu pregunta y te responderá lo antes posible.",
        "zh" => "感谢您的留言！我们已收到您的问题，会尽快回复您。",
        _ => "Thank you for your message! Our team has received your question and will reply as soon as possible.",
    }
}

/// What the timer does now for one message, if anything.
pub fn action_for(
    channels: &Channels,
    message: &Unanswered,
    now: DateTime<Utc>,
) -> Option<DeadlineAction> {
    let s = &channels.settings;
    let hours = s.deadline_hours(message.platform, &message.shop_key)?;
    let started = message.sent_at.min(message.received_at);
    let due_at = started + chrono::Duration::seconds((hours * 3600.0).round() as i64);
    let minutes = |m: u64| chrono::Duration::minutes(i64::try_from(m).unwrap_or(0));
    if !message.flagged && now >= due_at - minutes(s.at_risk_before_mins) {
        return Some(DeadlineAction::Flag { due_at });
    }
    let ack_before = s.auto_ack_before_mins(&message.shop_key);
    if ack_before > 0 && !message.acknowledged && now >= due_at - minutes(ack_before) {
        let text = MessageText::parse(
            acknowledgement(message.language.as_deref()),
            TextLimits { max_chars: 1000 },
        )
        .ok()?;
        return Some(DeadlineAction::Acknowledge { due_at, text });
    }
    None
}

/// One pass over the unanswered messages; returns how many actions it took.
pub async fn scan_once(channels: &Channels) -> Result<usize, crate::store::StoreError> {
    let now = Utc::now();
    // Nothing older than a week is still within any platform's window.
    let horizon = now - chrono::Duration::days(8);
    let mut done = 0;
    for message in channels.store.unanswered(horizon, 5000).await? {
        // Flag, then acknowledge, in the same pass when both are due.
        for _ in 0..2 {
            let Some(action) = action_for(channels, &message, now) else {
                break;
            };
            let acknowledged = matches!(action, DeadlineAction::Acknowledge { .. });
            if !channels.store.deadline_action(&message, &action).await? {
                break;
            }
            done += 1;
            if acknowledged {
                channels.outbox_wake.notify_one();
                break;
            }
            let mut flagged = message.clone();
            flagged.flagged = true;
            if action_for(channels, &flagged, now).is_none() {
                break;
            }
        }
    }
    Ok(done)
}

/// Runs until `cancel`.
pub async fn run(channels: Arc<Channels>, cancel: CancellationToken) {
    let every = Duration::from_secs(channels.settings.deadline_scan_secs);
    loop {
        // Once per period across every replica of the database.
        match channels.store.claim_timer("deadlines", every).await {
            Ok(true) => {
                if let Err(err) = scan_once(&channels).await {
                    tracing::warn!(error = %err, "deadline scan failed");
                }
            }
            Ok(false) => {}
            Err(err) => tracing::warn!(error = %err, "deadline timer not claimed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_served_language_has_an_acknowledgement_without_promises() {
        for lang in ["en", "id", "ms", "th", "vi", "tl", "pt", "es", "zh", "xx"] {
            let text = acknowledgement(Some(lang));
            assert!(!text.is_empty());
            let violations = crate::pipeline::guard::check(
                text,
                &crate::pipeline::guard::GuardConfig {
                    max_chars: 600,
                    allowed_link_hosts: vec![],
                },
                &crate::pipeline::guard::GuardContext::default(),
            );
            assert!(violations.is_empty(), "{lang}: {violations:?}");
        }
    }
}
