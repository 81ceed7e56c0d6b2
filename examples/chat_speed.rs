//! Prefill and decode speed of a bundled chat model on this machine.
//!
//! ```text
//! cargo run --release --example chat_speed -- smollm2-135m-instruct 64,256,512 128
//! cargo run --release --example chat_speed -- qwen2.5-coder-0.5b-instruct 64,256,512 128 f16 3
//! ```
//!
//! Arguments: a bundle artifact (pulled into the model cache if missing),
//! comma-separated prompt sizes in tokens, the most tokens to decode, then
//! optionally the weight format (`auto`, `quantized`, `f16`, `f32`; default
//! `auto`) and how many runs to take the median of (default 3). Every run
//! prints its figures; the last line per prompt size holds the medians.
//! Threads: `RAYON_NUM_THREADS` (default: one per core).

use std::ops::ControlFlow;
use std::time::Instant;

use anyhow::{bail, Context};
use candle_core::Device;
use kedai::config::Settings;
use kedai::inference::chat::{
    ChatLoadOptions, ChatMessage, ChatModel, ChatRole, GenerationParams, WeightFormat,
};
use kedai::models::{self, FetchPolicy, PrepareMode, Progress};

const FILLER: &str = "The shop sells batik shirts, sarongs and handmade bags, ships from \
    Yogyakarta every weekday, and answers buyers in Indonesian and English. ";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (artifact, sizes, decode_tokens, format, runs) = match args.as_slice() {
        [a, s, d] => (a, s, d, "auto", "3"),
        [a, s, d, f] => (a, s, d, f.as_str(), "3"),
        [a, s, d, f, r] => (a, s, d, f.as_str(), r.as_str()),
        _ => bail!(
            "usage: chat_speed ARTIFACT PROMPT_TOKENS[,PROMPT_TOKENS..] DECODE_TOKENS \
             [auto|quantized|f16|f32] [RUNS]"
        ),
    };
    let weights = match format {
        "auto" => WeightFormat::Auto,
        "quantized" => WeightFormat::Quantized,
        "f16" => WeightFormat::F16,
        "f32" => WeightFormat::F32,
        other => bail!("weight format `{other}` is not one of auto, quantized, f16, f32"),
    };
    let runs: usize = runs.parse().context("runs")?;
    if runs == 0 {
        bail!("runs must be at least 1");
    }
    let sizes: Vec<usize> = sizes
        .split(',')
        .map(|s| s.parse().with_context(|| format!("prompt size `{s}`")))
        .collect::<anyhow::Result<_>>()?;
    let decode_tokens: usize = decode_tokens.parse().context("decode tokens")?;

    let mode = PrepareMode {
        fetch: FetchPolicy::FetchMissing,
        progress: Progress::Lines,
    };
    let resolved = models::resolve(
        &Settings::defaults().models,
        &format!("bundle:{artifact}"),
        mode,
    )?;

    let started = Instant::now();
    let mut model = ChatModel::load_with(&resolved, &Device::Cpu, &ChatLoadOptions { weights })?;
    let load_s = started.elapsed().as_secs_f64();
    println!(
        "model={artifact} weights={format} threads={} load_s={load_s:.2} rss_after_load_mb={} \
         loadavg={}",
        rayon::current_num_threads(),
        rss_mb("VmRSS"),
        load_average(),
    );

    let warm_up = [ChatMessage::new(ChatRole::User, "Hi")];
    let params = GenerationParams {
        max_tokens: 4,
        ..GenerationParams::default()
    };
    model.generate(&warm_up, &params, &mut |_| ControlFlow::Continue(()))?;

    for size in sizes {
        let messages = prompt_of(&model, size)?;
        let params = GenerationParams {
            max_tokens: decode_tokens,
            ..GenerationParams::default()
        };
        let (mut prefill, mut decode) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            model.clear_cache();
            let out = model.generate(&messages, &params, &mut |_| ControlFlow::Continue(()))?;
            let prefill_s = out.prefill.as_secs_f64();
            let decode_s = out.decode.as_secs_f64();
            prefill.push(out.prompt_tokens as f64 / prefill_s);
            decode.push(out.completion_tokens as f64 / decode_s);
            println!(
                "run={run} prompt_tokens={} prefill_s={prefill_s:.3} prefill_tok_s={:.1} \
                 completion_tokens={} decode_s={decode_s:.3} decode_tok_s={:.1} finish={:?} \
                 rss_mb={} peak_rss_mb={}",
                out.prompt_tokens,
                prefill[run - 1],
                out.completion_tokens,
                decode[run - 1],
                out.finish_reason,
                rss_mb("VmRSS"),
                rss_mb("VmHWM"),
            );
        }
        println!(
            "median prompt_tokens={size} prefill_tok_s={:.1} decode_tok_s={:.1} loadavg={}",
            median(&mut prefill),
            median(&mut decode),
            load_average(),
        );
    }
    println!("loadavg={}", load_average());
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A request for a long answer, padded with shop facts to about `tokens`
/// prompt tokens.
fn prompt_of(model: &ChatModel, tokens: usize) -> anyhow::Result<Vec<ChatMessage>> {
    let question = "Write a long, detailed story about this shop and its buyers.";
    let mut facts = String::new();
    loop {
        let messages = vec![
            ChatMessage::new(ChatRole::System, facts.trim_end()),
            ChatMessage::new(ChatRole::User, question),
        ];
        let len = model.render_prompt(&messages)?.len();
        if len >= tokens {
            return Ok(messages);
        }
        let words: Vec<&str> = FILLER.split_inclusive(' ').collect();
        let missing = (tokens - len).min(words.len());
        facts.extend(words.iter().take(missing.max(1)).copied());
    }
}

/// A line of `/proc/self/status` in megabytes; 0 where there is none.
fn rss_mb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// Other work on the machine skews every figure; print it beside them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}
