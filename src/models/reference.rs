//! Model references as the operator writes them in `models.embedding` and
//! `models.chat`, parsed once into a [`ModelRef`]:
//!
//! - `bundle:NAME`: an artifact of the built-in bundle;
//! - `hf:OWNER/REPO`, `hf:OWNER/REPO/FILE` and either with `@REVISION` at the
//!   end: a Hugging Face repository (or one file of it, e.g. a `.gguf`);
//! - `stand-in:hashing` and `stand-in:echo`: no model at all, but kedai's
//!   deterministic stand-ins for plumbing tests and the simulator;
//! - anything else: a local file or directory, used as it is, never fetched.
//!
//! Parsing is purely syntactic: it neither touches the file system nor knows
//! which artifacts exist.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::error::ModelError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    Bundle(String),
    Hub(HubRef),
    Local(PathBuf),
    StandIn(StandInKind),
}

/// A stand-in that replaces a model for plumbing tests: no files, no
/// understanding, deterministic output that says what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandInKind {
    /// An embedding model: hashed character trigrams.
    Hashing,
    /// A chat model: one fixed sentence per prompt.
    Echo,
}

impl StandInKind {
    pub const ALL: [StandInKind; 2] = [StandInKind::Hashing, StandInKind::Echo];

    pub fn name(self) -> &'static str {
        match self {
            StandInKind::Hashing => "hashing",
            StandInKind::Echo => "echo",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `OWNER/REPO`.
    pub repo: String,
    /// Path of one file inside the repository; `None` means the standard
    /// layout (`config.json`, `tokenizer.json`, `model.safetensors`).
    pub file: Option<String>,
    /// Branch, tag or commit; `None` means `main`.
    pub revision: Option<String>,
}

impl FromStr for ModelRef {
    type Err = ModelError;

    fn from_str(text: &str) -> Result<ModelRef, ModelError> {
        let bad = |reason: &str| ModelError::BadReference {
            reference: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(bad("it is empty"));
        }
        if let Some(name) = trimmed.strip_prefix("bundle:") {
            if name.is_empty() || !name.chars().all(is_name_char) {
                return Err(bad(
                    "a bundle artifact name is made of letters, digits, '.', '-' and '_'",
                ));
            }
            return Ok(ModelRef::Bundle(name.to_owned()));
        }
        if let Some(name) = trimmed.strip_prefix("stand-in:") {
            return StandInKind::ALL
                .into_iter()
                .find(|kind| kind.name() == name)
                .map(ModelRef::StandIn)
                .ok_or_else(|| bad("the stand-ins are stand-in:hashing and stand-in:echo"));
        }
        if let Some(rest) = trimmed.strip_prefix("hf:") {
            return parse_hub(rest).map(ModelRef::Hub).map_err(|r| bad(&r));
        }
        if let Some(scheme) = unknown_scheme(trimmed) {
            return Err(bad(&format!(
                "unknown scheme \"{scheme}:\"; use bundle:NAME, hf:OWNER/REPO, stand-in:NAME or a path \
                 (write ./{trimmed} for a local file whose name has a colon)"
            )));
        }
        Ok(ModelRef::Local(PathBuf::from(trimmed)))
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Bundle(name) => write!(f, "bundle:{name}"),
            ModelRef::Hub(hub) => write!(f, "{hub}"),
            ModelRef::Local(path) => write!(f, "{}", path.display()),
            ModelRef::StandIn(kind) => write!(f, "stand-in:{}", kind.name()),
        }
    }
}

impl fmt::Display for HubRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hf:{}", self.repo)?;
        if let Some(file) = &self.file {
            write!(f, "/{file}")?;
        }
        if let Some(revision) = &self.revision {
            write!(f, "@{revision}")?;
        }
        Ok(())
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

fn parse_hub(rest: &str) -> Result<HubRef, String> {
    let (path, revision) = match rest.rsplit_once('@') {
        Some((path, revision)) => {
            if revision.is_empty() || !revision.chars().all(is_name_char) {
                return Err(format!(
                    "revision {revision:?} must be a branch, tag or commit made of letters, \
                     digits, '.', '-' and '_'"
                ));
            }
            (path, Some(revision.to_owned()))
        }
        None => (rest, None),
    };
    let segments: Vec<&str> = path.split('/').collect();
    if segments.len() < 2 {
        return Err("expected hf:OWNER/REPO, hf:OWNER/REPO/FILE or either with @REVISION".into());
    }
    for segment in &segments {
        if segment.is_empty() || *segment == "." || *segment == ".." {
            return Err(format!("path segment {segment:?} is not allowed"));
        }
    }
    if !segments[..2].iter().all(|s| s.chars().all(is_name_char)) {
        return Err(format!(
            "repository {:?} must be OWNER/REPO made of letters, digits, '.', '-' and '_'",
            segments[..2].join("/")
        ));
    }
    let file = (segments.len() > 2).then(|| segments[2..].join("/"));
    Ok(HubRef {
        repo: segments[..2].join("/"),
        file,
        revision,
    })
}

/// `foo:` at the start of a reference that is neither `bundle:` nor `hf:`;
/// single letters are left alone because they are Windows drive letters.
fn unknown_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let looks_like_scheme = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    looks_like_scheme.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ModelRef {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        text.parse::<ModelRef>().unwrap_err().to_string()
    }

    #[test]
    fn bundle_references_name_an_artifact() {
        assert_eq!(
            parse("bundle:multilingual-e5-small"),
            ModelRef::Bundle("multilingual-e5-small".into())
        );
        assert_eq!(
            parse(" bundle:qwen2.5-coder-0.5b-instruct "),
            ModelRef::Bundle("qwen2.5-coder-0.5b-instruct".into())
        );
    }

    #[test]
    fn hub_references_take_an_optional_file_and_revision() {
        let hub = |repo: &str, file: Option<&str>, revision: Option<&str>| {
            ModelRef::Hub(HubRef {
                repo: repo.into(),
                file: file.map(Into::into),
                revision: revision.map(Into::into),
            })
        };
        assert_eq!(
            parse("hf:intfloat/multilingual-e5-small"),
            hub("intfloat/multilingual-e5-small", None, None)
        );
        assert_eq!(
            parse("hf:Qwen/Qwen2.5-0.5B-Instruct@v1.0"),
            hub("Qwen/Qwen2.5-0.5B-Instruct", None, Some("v1.0"))
        );
        assert_eq!(
            parse("hf:owner/repo/sub/model-q4_k_m.gguf@abc123"),
            hub("owner/repo", Some("sub/model-q4_k_m.gguf"), Some("abc123"))
        );
    }

    #[test]
    fn references_print_as_they_are_written() {
        for text in [
            "bundle:smollm2-135m-instruct",
            "hf:owner/repo",
            "hf:owner/repo/model.gguf@main",
            "/srv/models/e5",
            "stand-in:hashing",
            "stand-in:echo",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    #[test]
    fn anything_else_is_a_local_path() {
        assert_eq!(
            parse("/srv/models/e5"),
            ModelRef::Local("/srv/models/e5".into())
        );
        assert_eq!(
            parse("models/chat.gguf"),
            ModelRef::Local("models/chat.gguf".into())
        );
        assert_eq!(
            parse("./odd:name.gguf"),
            ModelRef::Local("./odd:name.gguf".into())
        );
        assert_eq!(
            parse(r"C:\models\chat.gguf"),
            ModelRef::Local(r"C:\models\chat.gguf".into())
        );
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        assert!(error("").contains("empty"));
        assert!(error("bundle:").contains("\"bundle:\""));
        assert!(error("bundle:a b").contains("artifact name"));
        assert!(error("hf:justone").contains("hf:OWNER/REPO"));
        assert!(error("hf:owner/repo@").contains("revision"));
        assert!(error("hf:owner//file").contains("segment"));
        assert!(error("hf:owner/repo/../x").contains("\"..\""));
        assert!(error("hf:own er/repo").contains("repository"));
        assert!(error("stand-in:e5").contains("stand-in:hashing and stand-in:echo"));
        let err = error("bundel:multilingual-e5-small");
        assert!(
            err.contains("\"bundel:\"") && err.contains("bundle:NAME"),
            "{err}"
        );
    }
}
