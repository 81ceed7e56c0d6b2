//! `kedai eval translations`: how well the pipeline's translation checks
//! tell a faithful translation of a seller's answer from a wrong one.
//!
//! The data (`kb/eval/translations.jsonl`, our own writing) holds faithful
//! translations of demo FAQ answers into eight languages. Wrong ones are
//! made from them here, so every kind of mistake is measured on the same
//! texts: another answer's translation in the same language, the first half
//! only, a word stuttered as the small model does, and a changed number.
//! Each pair runs the same checks as the pipeline (`pipeline::verify`), and
//! the report gives each check's pass rate on faithful translations, the
//! share of each kind of mistake caught, and the meaning threshold sweep.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::inference::EmbedRole;
use crate::kb::Embedder;
use crate::pipeline::verify::{self, Check};
use crate::understand::lang::LanguageDetector;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    source_id: String,
    lang: String,
    text: String,
}

/// One faithful translation with its English source.
#[derive(Debug, Clone)]
pub struct Pair {
    pub source_id: String,
    pub source: String,
    pub lang: String,
    pub text: String,
}

/// Reads the pairs, finding each source answer in the demo FAQ file.
pub fn read(data: &Path, faq: &Path) -> anyhow::Result<Vec<Pair>> {
    let answers: BTreeMap<String, String> = std::fs::read_to_string(faq)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", faq.display()))?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v["id"].as_str()?.to_string(),
                v["answer"].as_str()?.to_string(),
            ))
        })
        .collect();
    let text = std::fs::read_to_string(data)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", data.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let line: Line = serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", data.display(), i + 1))?;
            let source = answers.get(&line.source_id).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "{}:{}: no FAQ answer {:?} in {}",
                    data.display(),
                    i + 1,
                    line.source_id,
                    faq.display()
                )
            })?;
            Ok(Pair {
                source_id: line.source_id,
                source,
                lang: line.lang,
                text: line.text,
            })
        })
        .collect()
}

/// The kinds of translation the report scores.
const KINDS: [&str; 5] = [
    "faithful",
    "another_answer",
    "first_half",
    "stutter",
    "number_changed",
];

/// A wrong translation made from a faithful one, or `None` when the text
/// gives nothing to change (no number to alter).
fn corrupt(kind: &str, pair: &Pair, pairs: &[Pair]) -> Option<String> {
    match kind {
        "faithful" => Some(pair.text.clone()),
        "another_answer" => pairs
            .iter()
            .find(|p| p.lang == pair.lang && p.source_id != pair.source_id)
            .map(|p| p.text.clone()),
        "first_half" => {
            let chars: Vec<char> = pair.text.chars().collect();
            Some(chars[..chars.len() / 2].iter().collect())
        }
        "stutter" => {
            // The small model's typical slip: a word said twice.
            let words: Vec<&str> = pair.text.split(' ').collect();
            if words.len() < 4 {
                let mut doubled = pair.text.clone();
                doubled.push_str(&pair.text);
                return Some(doubled);
            }
            let at = words.len() / 2;
            let mut out = words[..=at].to_vec();
            out.push(words[at]);
            out.extend_from_slice(&words[at + 1..]);
            Some(out.join(" "))
        }
        "number_changed" => {
            let digit = pair.text.char_indices().find(|(_, c)| c.is_ascii_digit())?;
            let (i, c) = digit;
            let changed = if c == '9' {
                '8'
            } else {
                char::from(c as u8 + 1)
            };
            let mut out = pair.text.clone();
            out.replace_range(i..i + 1, &changed.to_string());
            Some(out)
        }
        _ => None,
    }
}

/// What the checks made of one kind of translation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    pub pairs: usize,
    /// Share the whole verification passed (faithful: should be high;
    /// mistakes: should be low).
    pub passed: f64,
    /// Share each check passed.
    pub checks: BTreeMap<&'static str, f64>,
    /// Cosine similarity of source and text: 5th, 50th and 95th percentile.
    pub similarity_p5_p50_p95: [f32; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct SweepRow {
    pub threshold: f32,
    /// Faithful translations whose meaning check passes at this threshold.
    pub faithful_pass: f64,
    /// Another answer's translations the meaning check rejects.
    pub another_answer_caught: f64,
    /// The same, when the translation must also be nearer its own source
    /// than every other answer (as the pipeline checks).
    pub with_nearest_faithful_pass: f64,
    pub with_nearest_another_answer_caught: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub model: String,
    pub threshold: f32,
    pub kinds: BTreeMap<&'static str, KindReport>,
    pub faithful_by_language: BTreeMap<String, f64>,
    pub sweep: Vec<SweepRow>,
}

fn check_name(check: &Check) -> &'static str {
    match check {
        Check::Language { .. } => "language",
        Check::Meaning { .. } => "meaning",
        Check::Facts { .. } => "facts",
        Check::Binding { .. } => "binding",
        Check::Fluency { .. } => "fluency",
        Check::Guard { .. } => "guard",
    }
}

fn percentile(sorted: &[f32], p: f64) -> f32 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Runs every check on every pair and its corrupted copies.
pub fn evaluate(pairs: &[Pair], embedder: &dyn Embedder) -> anyhow::Result<Report> {
    let detector = LanguageDetector::default();
    // The other answers stand for the other hits the pipeline retrieved
    // with the source: a translation must be closer to its own source.
    let mut sources: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.source_id.as_str(), p.source.as_str()))
        .collect();
    sources.sort();
    sources.dedup();
    let texts: Vec<&str> = sources.iter().map(|(_, t)| *t).collect();
    let source_vectors = embedder
        .embed(&texts, EmbedRole::Passage)
        .map_err(|e| anyhow::anyhow!("embedding: {e}"))?;
    let others = |id: &str| -> Vec<Vec<f32>> {
        sources
            .iter()
            .zip(&source_vectors)
            .filter(|((other, _), _)| *other != id)
            .map(|(_, v)| v.clone())
            .collect()
    };
    let mut relative_faithful = Vec::new();
    let mut relative_other = Vec::new();
    let mut kinds = BTreeMap::new();
    let mut by_lang: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut faithful_sims = Vec::new();
    let mut other_sims = Vec::new();
    for kind in KINDS {
        let mut report = KindReport::default();
        let mut passes = BTreeMap::<&'static str, usize>::new();
        let mut sims = Vec::new();
        for pair in pairs {
            let Some(text) = corrupt(kind, pair, pairs) else {
                continue;
            };
            let vectors = embedder
                .embed(&[pair.source.as_str(), text.as_str()], EmbedRole::Passage)
                .map_err(|e| anyhow::anyhow!("embedding: {e}"))?;
            let sim = cosine(&vectors[0], &vectors[1]);
            sims.push(sim);
            let rest = others(&pair.source_id);
            let nearest = rest.iter().all(|o| cosine(o, &vectors[1]) < sim);
            match kind {
                "faithful" => {
                    faithful_sims.push(sim);
                    relative_faithful.push((sim, nearest));
                }
                "another_answer" => {
                    other_sims.push(sim);
                    relative_other.push((sim, nearest));
                }
                _ => {}
            }
            let checks = vec![
                verify::language(&detector, &text, &pair.lang),
                verify::meaning(&vectors[0], &vectors[1], &rest),
                verify::facts_kept(&pair.source, &text),
                verify::fluency(&text, Some(pair.source.chars().count()), &pair.lang),
            ];
            let all = checks.iter().all(Check::passed);
            for check in &checks {
                *passes.entry(check_name(check)).or_default() += usize::from(check.passed());
            }
            report.pairs += 1;
            report.passed += f64::from(u8::from(all));
            if kind == "faithful" {
                let entry = by_lang.entry(pair.lang.clone()).or_default();
                entry.0 += 1;
                entry.1 += usize::from(all);
            }
        }
        let n = report.pairs.max(1) as f64;
        report.passed /= n;
        report.checks = passes.into_iter().map(|(k, v)| (k, v as f64 / n)).collect();
        sims.sort_by(f32::total_cmp);
        report.similarity_p5_p50_p95 = [
            percentile(&sims, 0.05),
            percentile(&sims, 0.5),
            percentile(&sims, 0.95),
        ];
        kinds.insert(kind, report);
    }
    let sweep = (78..=94)
        .map(|t| {
            let threshold = t as f32 / 100.0;
            let share = |v: &[f32], keep: &dyn Fn(f32) -> bool| {
                v.iter().filter(|s| keep(**s)).count() as f64 / v.len().max(1) as f64
            };
            let relative = |v: &[(f32, bool)], keep: &dyn Fn(f32, bool) -> bool| {
                v.iter().filter(|(s, n)| keep(*s, *n)).count() as f64 / v.len().max(1) as f64
            };
            SweepRow {
                threshold,
                faithful_pass: share(&faithful_sims, &|s| s >= threshold),
                another_answer_caught: share(&other_sims, &|s| s < threshold),
                with_nearest_faithful_pass: relative(&relative_faithful, &|s, n| {
                    s >= threshold && n
                }),
                with_nearest_another_answer_caught: relative(&relative_other, &|s, n| {
                    s < threshold || !n
                }),
            }
        })
        .collect();
    Ok(Report {
        model: embedder.model_id().to_string(),
        threshold: verify::MEANING_MIN_SIMILARITY,
        kinds,
        faithful_by_language: by_lang
            .into_iter()
            .map(|(lang, (n, ok))| (lang, ok as f64 / n.max(1) as f64))
            .collect(),
        sweep,
    })
}

impl Report {
    pub fn table(&self) -> String {
        let mut out = format!(
            "model {}; meaning threshold {:.2}\n{:<16} {:>5} {:>7} {:>9} {:>8} {:>6} {:>8}  similarity p5/p50/p95\n",
            self.model, self.threshold, "kind", "pairs", "passed", "language", "meaning", "facts", "fluency"
        );
        for (kind, r) in &self.kinds {
            let c = |k: &str| r.checks.get(k).copied().unwrap_or_default();
            out.push_str(&format!(
                "{kind:<16} {:>5} {:>7.3} {:>9.3} {:>8.3} {:>6.3} {:>8.3}  {:.3}/{:.3}/{:.3}\n",
                r.pairs,
                r.passed,
                c("language"),
                c("meaning"),
                c("facts"),
                c("fluency"),
                r.similarity_p5_p50_p95[0],
                r.similarity_p5_p50_p95[1],
                r.similarity_p5_p50_p95[2],
            ));
        }
        out.push_str("faithful translations verified, by language:");
        for (lang, share) in &self.faithful_by_language {
            out.push_str(&format!(" {lang} {share:.2}"));
        }
        out.push_str(
            "\nthreshold  faithful pass  another answer caught  | and nearest: faithful pass  caught\n",
        );
        for row in &self.sweep {
            out.push_str(&format!(
                "{:>9.2}  {:>13.3}  {:>20.3}  | {:>26.3}  {:>6.3}\n",
                row.threshold,
                row.faithful_pass,
                row.another_answer_caught,
                row.with_nearest_faithful_pass,
                row.with_nearest_another_answer_caught
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(id: &str, lang: &str, text: &str) -> Pair {
        Pair {
            source_id: id.into(),
            source: "Parcels take 4-8 days; shipping is USD 2.00.".into(),
            lang: lang.into(),
            text: text.into(),
        }
    }

    #[test]
    fn mistakes_are_made_from_the_faithful_text() {
        let pairs = vec![
            pair("a", "id", "Paket butuh 4-8 hari; ongkir USD 2.00 saja ya."),
            pair("b", "id", "Voucher toko tidak berlaku untuk flash sale."),
        ];
        assert_eq!(
            corrupt("another_answer", &pairs[0], &pairs).unwrap(),
            pairs[1].text
        );
        assert_eq!(
            corrupt("first_half", &pairs[0], &pairs)
                .unwrap()
                .chars()
                .count(),
            pairs[0].text.chars().count() / 2
        );
        let stutter = corrupt("stutter", &pairs[0], &pairs).unwrap();
        assert!(!verify::fluency(&stutter, None, "id").passed(), "{stutter}");
        let changed = corrupt("number_changed", &pairs[0], &pairs).unwrap();
        assert!(changed.starts_with("Paket butuh 5-8"), "{changed}");
        assert!(corrupt("number_changed", &pairs[1], &pairs).is_none());
    }

    #[test]
    fn the_shipped_pairs_parse_and_find_their_sources() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let pairs = read(
            &root.join("kb/eval/translations.jsonl"),
            &root.join("kb/demo/faq.jsonl"),
        )
        .unwrap();
        assert!(pairs.len() >= 40);
        for pair in &pairs {
            assert!(
                verify::facts_kept(&pair.source, &pair.text).passed(),
                "{} {} drops a number of its source",
                pair.source_id,
                pair.lang
            );
        }
    }
}
