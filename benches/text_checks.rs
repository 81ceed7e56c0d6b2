//! What the text checks cost per reply, on CPU, without models: folding,
//! the output guard (binding words in nine languages, identifiers, links,
//! echo), facts for a draft against its sources, injection detection and
//! card redaction, over ordinary replies and promises in several languages
//! and lengths. The guard runs once per generated reply, the others once
//! per message, so each must stay far below a millisecond.
//!
//! `cargo bench --bench text_checks`

use criterion::{BenchmarkId, Criterion};
use kedai::pipeline::guard::{self, GuardConfig, GuardContext};
use kedai::pipeline::{facts, prompt};

const REPLIES: [(&str, &str); 6] = [
    (
        "en",
        "Your order SPE-2611-00123 left our Guangzhou warehouse yesterday with J&T Express \
         (JT0123456789ID) and should reach Manila in 7-12 days; shipping is free above USD 30.",
    ),
    (
        "id",
        "Paket kakak sudah di hub J&T Bandung, estimasi sampai 2 hari lagi ya kak.",
    ),
    (
        "th",
        "พัสดุอยู่ที่ศูนย์คัดแยกลำพูนแล้วค่ะ คาดว่าจะได้รับภายใน 2-3 วัน ค่าส่ง 2.50 USD",
    ),
    (
        "vi",
        "Dạ, đơn của bạn đã thông quan tại Hà Nội, dự kiến giao trong 4-8 ngày ạ.",
    ),
    (
        "zh",
        "您的包裹已到达曼谷分拣中心，预计两三天内送达，运费10元。",
    ),
    (
        "promise",
        "Don't worry, we'll re\u{200B}fund you today and send a ｃｏｕｐｏｎ for 10% off.",
    ),
];

fn bench(c: &mut Criterion) {
    let config = GuardConfig {
        max_chars: 600,
        allowed_link_hosts: vec!["kedai-demo.shop".into()],
    };
    let sources = vec![
        "To the Philippines we ship from Guangzhou: 7-12 days after dispatch, USD 3.00, free above USD 30."
            .to_string(),
        "Order SPE-2611-00123, J&T Express JT0123456789ID.".to_string(),
    ];
    let buyer = vec!["where is my order SPE-2611-00123?".to_string()];
    let context = GuardContext {
        buyer_identifiers: &buyer,
        sources: &sources,
        instructions: &prompt::instructions("Kedai Demo"),
        conversation: "where is my order SPE-2611-00123?",
        seller_text: None,
    };
    let source_refs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("text_checks");
    for (name, reply) in REPLIES {
        group.bench_with_input(BenchmarkId::new("fold", name), reply, |b, r| {
            b.iter(|| kedai::text::Folded::new(r))
        });
        group.bench_with_input(BenchmarkId::new("guard_check", name), reply, |b, r| {
            b.iter(|| guard::check(r, &config, &context))
        });
        group.bench_with_input(
            BenchmarkId::new("facts_unsupported", name),
            reply,
            |b, r| b.iter(|| facts::unsupported(r, &source_refs)),
        );
        group.bench_with_input(
            BenchmarkId::new("injection_attempt", name),
            reply,
            |b, r| b.iter(|| prompt::injection_attempt(r)),
        );
        group.bench_with_input(
            BenchmarkId::new("redact_card_numbers", name),
            reply,
            |b, r| b.iter(|| kedai::domain::redact_card_numbers(r)),
        );
    }
    group.finish();
}

fn main() {
    // The first call compiles every pattern; time the steady state.
    let _ = guard::check(
        "warm up",
        &GuardConfig {
            max_chars: 10,
            allowed_link_hosts: vec![],
        },
        &GuardContext::default(),
    );
    let _ = prompt::injection_attempt("warm up");
    let _ = facts::extract("warm up 1");
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1))
        .configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
