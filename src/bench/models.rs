//! `kedai bench models`: what the configured models do on this machine, in
//! the spirit of llama.cpp's `llama-bench`: load time, embeddings per second
//! at batch 1 and 32, chat prefill tokens per second at several prompt
//! lengths, decode tokens per second, and the process's peak RSS, each the
//! median of several repetitions.
//!
//! Unlike the other benchmarks this one runs the models in-process, on the
//! thread count and device the configuration names, with no server and no
//! queue in the way: it measures the forward passes an operator tunes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use candle_core::Device;
use serde::Serialize;

use super::Output;
use crate::config::Settings;
use crate::inference::chat::{ChatMessage, ChatModel, ChatRole, GenerationParams};
use crate::inference::{select_device, EmbedRole, TextEmbedder};
use crate::models::{self, PrepareMode, Progress, ResolvedModel};

/// Short buyer messages in the languages kedai's sellers meet.
const MESSAGES: [&str; 8] = [
    "Where is my order? It has been five days.",
    "Apakah barang ini ready stok ukuran XL?",
    "Pesanan saya belum sampai, tolong dicek ya kak.",
    "สินค้าจะถึงเมื่อไหร่ครับ",
    "Khi nào đơn hàng của tôi được giao?",
    "这个商品什么时候发货？",
    "Can I return these shoes if they do not fit?",
    "Thank you so much!!! 😍🙏",
];

/// Prompt filler: plain shop text, cut to reach an exact token count.
const FILLER: &str = "Our shop sells batik shirts, sarongs and handmade bags from Yogyakarta. \
    Orders placed before two in the afternoon ship the same day by courier, and buyers \
    in Jakarta usually receive them the next morning. Returns are accepted within seven \
    days when the tags are still attached and the item is unused. ";

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// A model to measure (a reference such as `bundle:smollm2-135m-instruct`
    /// or a local path); repeatable. Defaults to the configured embedding and
    /// chat models.
    #[arg(long = "model", value_name = "REF")]
    pub models: Vec<String>,
    /// Repetitions of every measurement; the median is reported.
    #[arg(long, short = 'r', default_value_t = 3)]
    pub repetitions: usize,
    /// Embedding batch sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
    pub batch: Vec<usize>,
    /// Chat prompt lengths for prefill, in tokens.
    #[arg(long, short = 'p', value_delimiter = ',', default_values_t = [64usize, 256, 512])]
    pub prompt: Vec<usize>,
    /// Tokens generated for the decode measurement.
    #[arg(long, short = 'n', default_value_t = 128)]
    pub generate: usize,
    /// How the chat model's weights are held: auto, quantized, f16 or f32
    /// (as `models.chat_weights`).
    #[arg(long, default_value = "auto", value_parser = ["auto", "quantized", "f16", "f32"])]
    pub weights: String,
}

#[derive(Debug, Serialize)]
struct Report {
    threads: usize,
    device: String,
    repetitions: usize,
    models: Vec<ModelReport>,
}

#[derive(Debug, Serialize)]
struct ModelReport {
    model: String,
    kind: &'static str,
    tests: Vec<TestResult>,
    /// `VmRSS` after this model's tests, with every earlier model still loaded.
    rss_mb: f64,
    /// `VmHWM`: the process's peak so far.
    peak_rss_mb: f64,
}

#[derive(Debug, Serialize)]
struct TestResult {
    /// `load`, `embed b32`, `pp512`, `tg128`, as llama-bench names them.
    test: String,
    unit: &'static str,
    median: f64,
    runs: Vec<f64>,
    /// Prompt or generated tokens actually measured, where it applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    tokens: Option<usize>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn result(test: String, unit: &'static str, runs: Vec<f64>, tokens: Option<usize>) -> TestResult {
    TestResult {
        test,
        unit,
        median: median(&runs),
        runs,
        tokens,
    }
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in MB (0 where unknown).
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

pub fn run(args: ModelsArgs, settings: &Settings, output: Output) -> anyhow::Result<()> {
    if args.repetitions == 0 {
        bail!("--repetitions must be at least 1");
    }
    if args.batch.contains(&0) || args.prompt.contains(&0) || args.generate == 0 {
        bail!("batch sizes, prompt lengths and --generate must be at least 1");
    }
    let threads = crate::engine::init_threads(settings.models.threads);
    let device = select_device(&settings.models.device)?;
    let references = if args.models.is_empty() {
        settings.models.configured_models()
    } else {
        args.models.clone()
    };
    let mode = PrepareMode::from_settings(&settings.models, Progress::Lines);
    let mut report = Report {
        threads,
        device: format!("{device:?}"),
        repetitions: args.repetitions,
        models: Vec::new(),
    };
    // Loaded models stay loaded, so the last row's RSS is the bundle's.
    let mut keep_alive: Vec<Box<dyn std::any::Any>> = Vec::new();
    for reference in &references {
        let model = models::resolve(&settings.models, reference, mode)
            .with_context(|| format!("resolving {reference}"))?;
        let (kind, tests, loaded) = if model.file_with_extension("gguf").is_some() {
            let (tests, chat) = bench_chat(&model, &device, &args)?;
            ("chat", tests, Box::new(chat) as Box<dyn std::any::Any>)
        } else {
            let (tests, embedder) = bench_embedder(&model, &device, &args)?;
            (
                "embedding",
                tests,
                Box::new(embedder) as Box<dyn std::any::Any>,
            )
        };
        keep_alive.push(loaded);
        let (rss_mb, peak_rss_mb) = memory_mb();
        report.models.push(ModelReport {
            model: reference.clone(),
            kind,
            tests,
            rss_mb,
            peak_rss_mb,
        });
    }
    match output {
        Output::Json => println!("{}", serde_json::to_string(&report)?),
        Output::Human => println!("{}", table(&report)),
    }
    Ok(())
}

/// Progress goes to stderr in both modes: a run takes minutes, and stdout
/// carries only the report.
fn progress(message: &str) {
    eprintln!("{message}");
}

/// Loads `repetitions` times, keeping the last model.
fn timed_loads<T>(
    repetitions: usize,
    mut load: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(TestResult, T)> {
    let mut runs = Vec::with_capacity(repetitions);
    let mut last = None;
    for _ in 0..repetitions {
        drop(last.take());
        let started = Instant::now();
        last = Some(load()?);
        runs.push(started.elapsed().as_secs_f64());
    }
    let model = last.context("at least one repetition")?;
    Ok((result("load".into(), "s", runs, None), model))
}

fn bench_embedder(
    model: &ResolvedModel,
    device: &Device,
    args: &ModelsArgs,
) -> anyhow::Result<(Vec<TestResult>, TextEmbedder)> {
    progress(&format!("{}: loading", model.reference));
    let (load, embedder) =
        timed_loads(args.repetitions, || Ok(TextEmbedder::load(model, device)?))?;
    let mut tests = vec![load];
    for &batch in &args.batch {
        progress(&format!(
            "{}: embedding batches of {batch}",
            model.reference
        ));
        let texts: Vec<&str> = MESSAGES.iter().copied().cycle().take(batch).collect();
        embedder.embed(&texts, EmbedRole::Query)?;
        let mut runs = Vec::with_capacity(args.repetitions);
        for _ in 0..args.repetitions {
            let started = Instant::now();
            // Enough calls for a measurable time at batch 1.
            let calls = (32 / batch).max(1);
            for _ in 0..calls {
                embedder.embed(&texts, EmbedRole::Query)?;
            }
            runs.push((calls * batch) as f64 / started.elapsed().as_secs_f64());
        }
        tests.push(result(format!("embed b{batch}"), "emb/s", runs, None));
    }
    Ok((tests, embedder))
}

/// A single user message whose rendered prompt is as close to `target`
/// tokens as the filler allows without exceeding it; returns the message
/// and its exact token count.
fn prompt_of(chat: &ChatModel, target: usize) -> anyhow::Result<(Vec<ChatMessage>, usize)> {
    let filler: String = FILLER.repeat(target / 40 + 2);
    let messages_of = |chars: usize| vec![ChatMessage::new(ChatRole::User, &filler[..chars])];
    let tokens_of = |chars: usize| -> anyhow::Result<usize> {
        Ok(chat.render_prompt(&messages_of(chars))?.len())
    };
    if tokens_of(filler.len())? < target {
        bail!("cannot build a {target}-token prompt");
    }
    // The filler is ASCII, so every byte index is a character boundary.
    let (mut low, mut high) = (0, filler.len());
    while low < high {
        let mid = (low + high).div_ceil(2);
        if tokens_of(mid)? <= target {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok((messages_of(low), tokens_of(low)?))
}

fn bench_chat(
    model: &ResolvedModel,
    device: &Device,
    args: &ModelsArgs,
) -> anyhow::Result<(Vec<TestResult>, ChatModel)> {
    progress(&format!("{}: loading", model.reference));
    let (load, mut chat) = timed_loads(args.repetitions, || {
        Ok(crate::engine::load_chat_model(
            model,
            device,
            &args.weights,
        )?)
    })?;
    let mut tests = vec![load];
    let one_token = GenerationParams {
        max_tokens: 1,
        ..GenerationParams::default()
    };
    // A first pass pays one-time costs (dequantization, allocations).
    chat.generate(&prompt_of(&chat, 16)?.0, &one_token, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })?;
    for &target in &args.prompt {
        progress(&format!("{}: prefill of {target} tokens", model.reference));
        let (messages, tokens) = prompt_of(&chat, target)?;
        let mut runs = Vec::with_capacity(args.repetitions);
        for _ in 0..args.repetitions {
            chat.clear_cache();
            let generation = chat.generate(&messages, &one_token, &mut |_| {
                std::ops::ControlFlow::Continue(())
            })?;
            runs.push(generation.prompt_tokens as f64 / secs(generation.prefill));
        }
        tests.push(result(format!("pp{target}"), "tok/s", runs, Some(tokens)));
    }
    progress(&format!(
        "{}: decode of {} tokens",
        model.reference, args.generate
    ));
    let messages = vec![ChatMessage::new(
        ChatRole::User,
        "Count from 1 to 1000, one number per line, with no other text.",
    )];
    // Plain decoding, one token per pass, as llama-bench measures it.
    chat.set_guessing(false);
    let params = GenerationParams {
        max_tokens: args.generate,
        ..GenerationParams::default()
    };
    let mut runs = Vec::with_capacity(args.repetitions);
    let mut generated = 0;
    for _ in 0..args.repetitions {
        chat.clear_cache();
        let generation = chat.generate(&messages, &params, &mut |_| {
            std::ops::ControlFlow::Continue(())
        })?;
        generated = generation.completion_tokens;
        runs.push(generation.completion_tokens as f64 / secs(generation.decode));
    }
    tests.push(result(
        format!("tg{}", args.generate),
        "tok/s",
        runs,
        Some(generated),
    ));
    for (name, language, question) in DRAFTS {
        progress(&format!("{}: {name}", model.reference));
        tests.extend(bench_draft(&mut chat, args, name, language, question)?);
    }
    chat.set_guessing(true);
    chat.clear_cache();
    Ok((tests, chat))
}

/// Buyer questions answered from [`FILLER`] as a draft is: name, reply
/// language, question.
const DRAFTS: [(&str, &str, &str); 2] = [
    (
        "draft-en",
        "English",
        "Hi, if I order today before 2pm when will it reach Jakarta? And can I return it if the size is wrong?",
    ),
    (
        "draft-id",
        "Indonesian",
        "Kak kalau pesan hari ini sebelum jam 2 kapan sampai Jakarta? Kalau ukurannya salah bisa retur?",
    ),
];

/// Decode speed of a grounded reply with the pipeline's draft prompt,
/// token by token and with guessed tokens checked in shared passes,
/// alternating; the two answers must be the same.
fn bench_draft(
    chat: &mut ChatModel,
    args: &ModelsArgs,
    name: &str,
    language: &str,
    question: &str,
) -> anyhow::Result<Vec<TestResult>> {
    use crate::pipeline::prompt::{draft_messages, DraftRequest, Source};
    let sources = vec![Source {
        id: "policy:shipping-returns".to_owned(),
        text: FILLER.to_owned(),
    }];
    let messages = draft_messages(&DraftRequest {
        shop_name: "Batik Jogja",
        reply_language: language,
        sources: &sources,
        history: &[],
        message: question,
        max_words: 40,
    });
    let params = GenerationParams {
        max_tokens: 80,
        repeat_penalty: 1.1,
        ..GenerationParams::default()
    };
    let (mut plain, mut guessed, mut accepted) = (Vec::new(), Vec::new(), Vec::new());
    let mut tokens = 0;
    for _ in 0..args.repetitions {
        let mut texts = Vec::with_capacity(2);
        for guessing in [false, true] {
            chat.clear_cache();
            chat.set_guessing(guessing);
            let generation = chat.generate(&messages, &params, &mut |_| {
                std::ops::ControlFlow::Continue(())
            })?;
            let speed = generation.completion_tokens as f64 / secs(generation.decode);
            if guessing {
                guessed.push(speed);
                accepted.push(
                    generation.accepted_guesses as f64 / generation.completion_tokens.max(1) as f64,
                );
            } else {
                plain.push(speed);
            }
            tokens = generation.completion_tokens;
            texts.push(generation.text);
        }
        if texts[0] != texts[1] {
            bail!(
                "{name}: the answer changed when guessing: {:?} vs {:?}",
                texts[0],
                texts[1]
            );
        }
    }
    Ok(vec![
        result(format!("{name} plain"), "tok/s", plain, Some(tokens)),
        result(format!("{name} guessed"), "tok/s", guessed, Some(tokens)),
        result(
            format!("{name} from guesses"),
            "share",
            accepted,
            Some(tokens),
        ),
    ])
}

fn secs(duration: Duration) -> f64 {
    duration.as_secs_f64().max(1e-9)
}

fn table(report: &Report) -> String {
    let mut out = format!(
        "threads {}, device {}, median of {} runs\n\n",
        report.threads, report.device, report.repetitions
    );
    out.push_str(&format!(
        "| {:<36} | {:<9} | {:<10} | {:>12} | {:<6} | {:>9} |\n",
        "model", "kind", "test", "median", "unit", "peak RSS"
    ));
    out.push_str(&format!(
        "|{:-<38}|{:-<11}|{:-<12}|{:->14}|{:-<8}|{:->11}|\n",
        "", "", "", "", "", ""
    ));
    for model in &report.models {
        for test in &model.tests {
            out.push_str(&format!(
                "| {:<36} | {:<9} | {:<10} | {:>12.2} | {:<6} | {:>6.0} MB |\n",
                model.model, model.kind, test.test, test.median, test.unit, model.peak_rss_mb
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_runs() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn memory_is_read_from_proc() {
        let (rss, peak) = memory_mb();
        if cfg!(target_os = "linux") {
            assert!(rss > 0.0 && peak >= rss, "{rss} {peak}");
        }
    }
}
