//! `kedai eval langid`: accuracy and speed of the language detectors on
//! texts whose language is known (the `lang` field of evaluation data),
//! overall, per language and per text length, with the confusions that
//! matter (Malay read as Indonesian and the like).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::intents::Output;
use crate::understand::lang::{normalise_code, same_family, Backend, LanguageDetector};

#[derive(Debug, Args)]
pub struct LangidArgs {
    /// JSONL files whose lines have `text` and `lang`.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Texts per language and file at most, chosen by a hash of the text.
    #[arg(long, default_value_t = 200)]
    pub per_language: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectorReport {
    pub detector: &'static str,
    pub texts: usize,
    pub accuracy: f64,
    /// Counting Malay and Indonesian as one language.
    pub family_accuracy: f64,
    pub per_language: BTreeMap<String, f64>,
    /// Accuracy on texts of at most 20, 21 to 50, and more than 50 characters.
    pub by_length: BTreeMap<&'static str, f64>,
    pub median_micros: f64,
    pub p95_micros: f64,
    /// Most frequent (gold, detected) pairs; `none` when it gave no answer.
    pub confusions: Vec<(String, String, usize)>,
    /// Resident memory the detector's first use added, in MiB.
    pub load_mib: f64,
}

fn bucket(text: &str) -> &'static str {
    match text.chars().count() {
        0..=20 => "<=20",
        21..=50 => "21-50",
        _ => ">50",
    }
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(args: &LangidArgs, output: Output) -> anyhow::Result<()> {
    let mut samples: Vec<(String, &'static str)> = Vec::new();
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for file in &args.files {
        let raw =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let mut by_lang: BTreeMap<&'static str, Vec<(u64, String)>> = BTreeMap::new();
        for (n, line) in raw
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", file.display(), n + 1))?;
            let (Some(text), Some(tag)) = (
                value.get("text").and_then(Value::as_str),
                value.get("lang").and_then(Value::as_str),
            ) else {
                bail!("{} line {}: needs `text` and `lang`", file.display(), n + 1);
            };
            match normalise_code(tag) {
                Some(code) => {
                    let digest = Sha256::digest(text.as_bytes());
                    let key = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"));
                    by_lang
                        .entry(code)
                        .or_default()
                        .push((key, text.to_owned()));
                }
                None => *skipped.entry(tag.to_owned()).or_default() += 1,
            }
        }
        for (code, mut texts) in by_lang {
            texts.sort();
            texts.truncate(args.per_language);
            samples.extend(texts.into_iter().map(|(_, t)| (t, code)));
        }
    }
    if samples.is_empty() {
        bail!("no lines in a language the detectors know");
    }
    let mut reports = Vec::new();
    for backend in Backend::ALL {
        let detector = LanguageDetector::new(backend);
        let before = rss_mib();
        // Load every model before timing.
        for warm in ["hello there", "สวัสดี", "你好", "こんにちは", "안녕", "مرحبا"]
        {
            detector.detect(warm);
        }
        let load_mib = rss_mib() - before;
        let mut micros = Vec::with_capacity(samples.len());
        let mut hits = 0;
        let mut family = 0;
        let mut per_lang: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut per_len: BTreeMap<&'static str, (usize, usize)> = BTreeMap::new();
        let mut confusions: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (text, gold) in &samples {
            let started = Instant::now();
            let guess = detector.detect(text);
            micros.push(started.elapsed().as_secs_f64() * 1e6);
            let got = guess.map_or("none", |g| g.code);
            let ok = got == *gold;
            hits += usize::from(ok);
            family += usize::from(same_family(got, gold));
            let e = per_lang.entry(gold).or_default();
            e.0 += usize::from(ok);
            e.1 += 1;
            let e = per_len.entry(bucket(text)).or_default();
            e.0 += usize::from(ok);
            e.1 += 1;
            if !ok {
                *confusions.entry((gold, got)).or_default() += 1;
            }
        }
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| micros[((micros.len() - 1) as f64 * q).round() as usize];
        let mut confusions: Vec<(String, String, usize)> = confusions
            .into_iter()
            .map(|((g, p), c)| (g.to_owned(), p.to_owned(), c))
            .collect();
        confusions.sort_by(|a, b| b.2.cmp(&a.2).then(a.cmp(b)));
        confusions.truncate(8);
        let ratio = |(ok, n): (usize, usize)| ok as f64 / n.max(1) as f64;
        reports.push(DetectorReport {
            detector: backend.name(),
            texts: samples.len(),
            accuracy: hits as f64 / samples.len() as f64,
            family_accuracy: family as f64 / samples.len() as f64,
            per_language: per_lang
                .into_iter()
                .map(|(k, v)| (k.to_owned(), ratio(v)))
                .collect(),
            by_length: per_len.into_iter().map(|(k, v)| (k, ratio(v))).collect(),
            median_micros: at(0.5),
            p95_micros: at(0.95),
            confusions,
            load_mib,
        });
    }
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string(&serde_json::json!({
                "detectors": reports, "skipped_tags": skipped,
            }))?
        ),
        Output::Human => {
            for r in &reports {
                println!(
                    "{:<20} acc {:.3}  ms/id as one {:.3}  median {:.0} us  p95 {:.0} us  +{:.0} MiB",
                    r.detector, r.accuracy, r.family_accuracy, r.median_micros, r.p95_micros, r.load_mib
                );
                let langs: Vec<String> = r
                    .per_language
                    .iter()
                    .map(|(k, v)| format!("{k} {v:.2}"))
                    .collect();
                println!("    {}", langs.join("  "));
                let lens: Vec<String> = r
                    .by_length
                    .iter()
                    .map(|(k, v)| format!("{k}: {v:.3}"))
                    .collect();
                println!("    by length {}", lens.join("  "));
                let conf: Vec<String> = r
                    .confusions
                    .iter()
                    .map(|(g, p, c)| format!("{g}->{p} {c}"))
                    .collect();
                println!("    confusions {}", conf.join(", "));
            }
            if !skipped.is_empty() {
                println!("skipped tags the detectors do not know: {skipped:?}");
            }
        }
    }
    Ok(())
}
