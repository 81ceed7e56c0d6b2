//! `kedai models pull | list | verify`: the operator's view of the model
//! cache. Turns command-line targets (artifact names or model references)
//! into calls on the rest of this module and prints tables or JSON.
//!
//! Knows the command line and the output formats, nothing of how files are
//! fetched or checked.

use std::io::Write;

use anyhow::Context as _;
use indicatif::HumanBytes;
use serde::Serialize;
use serde_json::json;

use super::cache::{self, FileCheck, FileReport, FileState};
use super::fetch::{pull_artifacts, Progress};
use super::manifest::{Artifact, Catalog, NOTICE_FILE};
use super::reference::ModelRef;
use super::{FetchPolicy, ModelCache, ModelError, Output, PrepareMode, ResolvedModel};
use crate::config::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// Fetch model files into the cache; files already there and verified
    /// are kept.
    Pull {
        /// Artifact names or references (bundle:NAME, hf:OWNER/REPO, a path);
        /// none means the configured embedding and chat models.
        targets: Vec<String>,
        /// Every artifact of the built-in catalogue, extras included.
        #[arg(long)]
        all: bool,
    },
    /// Show the built-in artifacts and what the cache holds of them.
    List,
    /// Re-hash model files and report each as ok, missing or corrupt.
    Verify {
        /// Artifact names or references; none means the configured
        /// embedding and chat models.
        targets: Vec<String>,
    },
}

pub fn run(cmd: ModelsCommand, settings: &Settings, output: Output) -> anyhow::Result<()> {
    super::in_cache(&settings.models, |store| {
        let context = CliContext {
            store: *store,
            // Every role's model (an invalid configuration was refused at load).
            configured: settings.models.configured_models(),
        };
        let mut stdout = std::io::stdout().lock();
        execute(cmd, &context, output, &mut stdout)
    })
}

/// Everything a command needs besides its arguments.
struct CliContext<'a> {
    store: ModelCache<'a>,
    /// Every role's model, the default targets.
    configured: Vec<String>,
}

fn execute(
    cmd: ModelsCommand,
    context: &CliContext<'_>,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cmd {
        ModelsCommand::Pull { targets, all } => {
            let scope = if all { Scope::Everything } else { Scope::Named };
            pull(
                context,
                Targets::parse(context, &targets, scope)?,
                output,
                out,
            )
        }
        ModelsCommand::List => list(context, output, out),
        ModelsCommand::Verify { targets } => verify(
            context,
            Targets::parse(context, &targets, Scope::Named)?,
            output,
            out,
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// The named targets, or the configured ones when none is named.
    Named,
    /// The whole catalogue, plus any named targets.
    Everything,
}

/// Command-line targets sorted into bundle artifacts and other references.
struct Targets<'a> {
    artifacts: Vec<&'a Artifact>,
    others: Vec<ModelRef>,
}

impl<'a> Targets<'a> {
    fn parse(
        context: &CliContext<'a>,
        texts: &[String],
        scope: Scope,
    ) -> Result<Targets<'a>, ModelError> {
        let catalog = context.store.catalog;
        let mut targets = Targets {
            artifacts: Vec::new(),
            others: Vec::new(),
        };
        if scope == Scope::Everything {
            targets.artifacts.extend(catalog.artifacts());
        }
        let texts = if texts.is_empty() && scope == Scope::Named {
            &context.configured
        } else {
            texts
        };
        for text in texts {
            match parse_target(catalog, text)? {
                Target::Artifact(artifact) => {
                    if !targets.artifacts.contains(&artifact) {
                        targets.artifacts.push(artifact);
                    }
                }
                Target::Other(reference) => targets.others.push(reference),
            }
        }
        Ok(targets)
    }
}

enum Target<'a> {
    Artifact(&'a Artifact),
    Other(ModelRef),
}

/// A bare word is an artifact name; so is `bundle:NAME`; anything else is a
/// reference. A bare word that is neither an artifact nor an existing path is
/// reported as an unknown artifact, which is by far the likelier mistake.
fn parse_target<'a>(catalog: &'a Catalog, text: &str) -> Result<Target<'a>, ModelError> {
    if let Ok(artifact) = catalog.get(text.trim()) {
        return Ok(Target::Artifact(artifact));
    }
    match text.parse::<ModelRef>()? {
        ModelRef::Bundle(name) => Ok(Target::Artifact(catalog.get(&name)?)),
        ModelRef::Local(path) if !path.exists() && !text.contains(['/', '\\']) => {
            Err(ModelError::UnknownArtifact {
                name: text.trim().to_owned(),
                known: catalog.names(),
            })
        }
        other => Ok(Target::Other(other)),
    }
}

fn pull(
    context: &CliContext<'_>,
    targets: Targets<'_>,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let progress = match output {
        Output::Human => Progress::Bar,
        Output::Json => Progress::Silent,
    };
    let pulled = if targets.artifacts.is_empty() {
        Vec::new()
    } else {
        pull_artifacts(&targets.artifacts, &context.store.pull_params(progress))?
    };
    let mode = PrepareMode {
        fetch: FetchPolicy::FetchMissing,
        progress,
    };
    let resolved = targets
        .others
        .iter()
        .map(|reference| context.store.resolve_one(reference, mode))
        .collect::<Result<Vec<ResolvedModel>, _>>()?;
    match output {
        Output::Json => write_json(out, &json!({ "pulled": pulled, "resolved": resolved })),
        Output::Human => {
            // Bundle artifacts were reported as they completed.
            for model in &resolved {
                eprintln!(
                    "{}: {} file(s) in {}",
                    model.reference,
                    model.files.len(),
                    model.dir.display()
                );
            }
            Ok(())
        }
    }
}

fn list(context: &CliContext<'_>, output: Output, out: &mut dyn Write) -> anyhow::Result<()> {
    let statuses = cache::status_in(context.store.catalog.artifacts(), context.store.cache);
    if output == Output::Json {
        return write_json(out, &statuses);
    }
    let rows: Vec<[String; 7]> = statuses
        .iter()
        .map(|s| {
            [
                s.name.clone(),
                json_word(&s.bundle),
                s.licence.name.to_owned(),
                s.files.len().to_string(),
                HumanBytes(s.size).to_string(),
                state_word(s.state).to_owned(),
                s.dir.display().to_string(),
            ]
        })
        .collect();
    write_table(
        out,
        [
            "ARTIFACT", "BUNDLE", "LICENCE", "FILES", "SIZE", "STATE", "PATH",
        ],
        &rows,
    )?;
    writeln!(out, "cache: {}", context.store.cache.display())?;
    let mut licences: Vec<_> = statuses.iter().map(|s| s.licence).collect();
    licences.sort_by_key(|l| l.name);
    licences.dedup();
    for licence in licences {
        let restrictions = if licence.notice.is_some() {
            format!(" (use restrictions apply; see {NOTICE_FILE} beside the files)")
        } else {
            String::new()
        };
        writeln!(out, "{}: {}{restrictions}", licence.name, licence.url)?;
    }
    Ok(())
}

fn state_word(state: FileState) -> &'static str {
    match state {
        FileState::Missing => "missing",
        FileState::Present => "present",
        FileState::Verified => "verified",
    }
}

/// A reference that is not a bundle artifact: present or not, never hashed.
#[derive(Debug, Serialize)]
struct OtherCheck {
    reference: String,
    ok: bool,
    files: Vec<std::path::PathBuf>,
    error: Option<String>,
}

fn verify(
    context: &CliContext<'_>,
    targets: Targets<'_>,
    output: Output,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let reports = cache::verify_in(&targets.artifacts, context.store.cache)?;
    let offline = PrepareMode {
        fetch: FetchPolicy::Offline,
        progress: Progress::Silent,
    };
    let others: Vec<OtherCheck> = targets
        .others
        .iter()
        .map(
            |reference| match context.store.resolve_one(reference, offline) {
                Ok(model) => OtherCheck {
                    reference: model.reference,
                    ok: true,
                    files: model.files,
                    error: None,
                },
                Err(err) => OtherCheck {
                    reference: reference.to_string(),
                    ok: false,
                    files: Vec::new(),
                    error: Some(err.to_string()),
                },
            },
        )
        .collect();
    let bad = reports.iter().filter(|r| !r.check.is_ok()).count()
        + others.iter().filter(|o| !o.ok).count();
    let total = reports.len() + others.len();

    match output {
        Output::Json => write_json(
            out,
            &json!({ "ok": bad == 0, "files": reports, "others": others }),
        )?,
        Output::Human => {
            let mut rows: Vec<[String; 4]> = reports.iter().map(report_row).collect();
            rows.extend(others.iter().map(|o| {
                [
                    o.reference.clone(),
                    format!("{} file(s)", o.files.len()),
                    if o.ok { "present" } else { "missing" }.to_owned(),
                    o.error
                        .clone()
                        .unwrap_or_else(|| "not checksummed (not a bundle artifact)".to_owned()),
                ]
            }));
            write_table(out, ["ARTIFACT", "FILE", "STATE", "DETAIL"], &rows)?;
        }
    }
    if bad > 0 {
        anyhow::bail!(
            "{bad} of {total} model files are missing or corrupt; \
             run `kedai models pull` to fetch them again"
        );
    }
    Ok(())
}

fn report_row(report: &FileReport) -> [String; 4] {
    let (state, detail) = match &report.check {
        FileCheck::Ok => ("ok", format!("{} bytes, sha256 matches", report.size)),
        FileCheck::Missing => ("missing", report.path.display().to_string()),
        FileCheck::SizeMismatch { expected, actual } => (
            "corrupt",
            format!("expected {expected} bytes, found {actual}"),
        ),
        FileCheck::ChecksumMismatch { expected, actual } => (
            "corrupt",
            format!("expected sha256 {expected}, found {actual}"),
        ),
    };
    [
        report.artifact.clone(),
        report.file.clone(),
        state.to_owned(),
        detail,
    ]
}

/// How a serialisable enum spells itself in JSON, for table cells.
fn json_word(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(word)) => word,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn write_json(out: &mut dyn Write, value: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).context("writing JSON output")?;
    writeln!(out)?;
    Ok(())
}

fn write_table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.map(str::to_owned);
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(widths).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::super::testkit::Fixture;
    use super::*;

    fn context<'a>(fx: &'a Fixture, catalog: &'a Catalog) -> CliContext<'a> {
        CliContext {
            store: fx.store(catalog),
            configured: vec!["bundle:tiny-embed".into(), "tiny-chat".into()],
        }
    }

    fn run_cmd(
        context: &CliContext<'_>,
        cmd: ModelsCommand,
        output: Output,
    ) -> (String, anyhow::Result<()>) {
        let mut out = Vec::new();
        let result = execute(cmd, context, output, &mut out);
        (String::from_utf8(out).unwrap(), result)
    }

    #[test]
    fn pull_without_targets_fetches_the_configured_models() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let context = context(&fx, &catalog);
        let pull = ModelsCommand::Pull {
            targets: vec![],
            all: false,
        };
        let (text, result) = run_cmd(&context, pull, Output::Json);
        result.unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = json["pulled"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["artifact"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["tiny-embed", "tiny-chat"]);
        assert_eq!(fx.pip_calls().len(), 4);
    }

    #[test]
    fn list_shows_each_artifact_state() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let context = context(&fx, &catalog);
        let pull = ModelsCommand::Pull {
            targets: vec!["tiny-embed".into()],
            all: false,
        };
        run_cmd(&context, pull, Output::Human).1.unwrap();
        let (text, result) = run_cmd(&context, ModelsCommand::List, Output::Human);
        result.unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("ARTIFACT") && lines[0].contains("STATE"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("tiny-embed") && lines[1].contains("verified"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("tiny-chat") && lines[2].contains("missing"),
            "{text}"
        );

        let (json, _) = run_cmd(&context, ModelsCommand::List, Output::Json);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(json[0]["state"], "verified");
        assert_eq!(json[0]["bundle"], "default");
        assert_eq!(json[0]["licence"]["name"], "MIT");
        assert!(
            lines[1].contains("MIT") && text.contains("Apache-2.0: https://"),
            "{text}"
        );
        assert_eq!(json[1]["files"][0]["state"], "missing");
    }

    #[test]
    fn verify_fails_on_missing_and_corrupt_files() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let context = context(&fx, &catalog);
        let pull = ModelsCommand::Pull {
            targets: vec!["bundle:tiny-embed".into()],
            all: false,
        };
        run_cmd(&context, pull, Output::Json).1.unwrap();
        let verify = || ModelsCommand::Verify {
            targets: vec!["tiny-embed".into()],
        };
        let (text, result) = run_cmd(&context, verify(), Output::Human);
        result.unwrap();
        assert!(
            text.contains("model.bin") && text.contains(" ok "),
            "{text}"
        );

        let tokenizer = fx.cache().join("tiny-embed").join("tokenizer.json");
        fs::write(&tokenizer, b"{}").unwrap();
        let (text, result) = run_cmd(&context, verify(), Output::Human);
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("1 of 2") && err.contains("kedai models pull"),
            "{err}"
        );
        assert!(text.contains("corrupt"), "{text}");

        let (text, result) = run_cmd(
            &context,
            ModelsCommand::Verify { targets: vec![] },
            Output::Json,
        );
        assert!(result.is_err());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["ok"], false);
        let states: Vec<&str> = json["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["ok", "size_mismatch", "missing"]);
    }

    #[test]
    fn targets_that_are_neither_artifacts_nor_paths_are_unknown_artifacts() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let context = context(&fx, &catalog);
        let pull = ModelsCommand::Pull {
            targets: vec!["tiny".into()],
            all: false,
        };
        let err = run_cmd(&context, pull, Output::Human)
            .1
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"tiny\"") && err.contains("tiny-embed, tiny-chat"),
            "{err}"
        );
        assert!(fx.pip_calls().is_empty());
    }

    #[test]
    fn local_paths_are_checked_not_fetched() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let context = context(&fx, &catalog);
        let present = fx.root().join("chat.gguf");
        fs::write(&present, b"gguf").unwrap();
        let verify = ModelsCommand::Verify {
            targets: vec![
                present.display().to_string(),
                fx.root().join("gone.gguf").display().to_string(),
            ],
        };
        let (text, result) = run_cmd(&context, verify, Output::Human);
        assert!(result.unwrap_err().to_string().contains("1 of 2"));
        assert!(text.contains("not checksummed"), "{text}");
        assert!(text.contains("gone.gguf does not exist"), "{text}");
        assert!(fx.pip_calls().is_empty());
    }
}
