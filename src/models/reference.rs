//! Model references as the operator writes them in `models.embedding` and
//! `models.chat`, parsed once into a [`ModelRef`]:
//!
//! - `bundle:NAME`: an artifact of the built-in bundle;
//! - `hf:OWNER/REPO/FILE@COMMIT#sha256=HEX` (one file, e.g. a `.gguf`) or
//!   `hf:OWNER/REPO@COMMIT#sha256=HEX,HEX,HEX` (the standard layout:
//!   `config.json`, `tokenizer.json`, `model.safetensors`, in that order): a
//!   Hugging Face repository pinned to a commit, each file to a sha256, since
//!   a branch or tag can change under the server and the hub's own checks
//!   vouch only for what the hub serves today;
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

/// What a repository named without a file must provide, in the order of
/// its reference's sha256 list.
pub const STANDARD_FILES: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRef {
    /// `OWNER/REPO`.
    pub repo: String,
    /// Path of one file inside the repository; `None` means the standard
    /// layout ([`STANDARD_FILES`]).
    pub file: Option<String>,
    /// The commit, 40 hex digits.
    pub revision: String,
    /// Lowercase hex sha256 of each wanted file, in [`HubRef::files`] order.
    pub sha256: Vec<String>,
}

impl HubRef {
    /// The files this reference wants, in the order of its checksums.
    pub fn files(&self) -> Vec<String> {
        match &self.file {
            Some(file) => vec![file.clone()],
            None => STANDARD_FILES.iter().map(|f| (*f).to_owned()).collect(),
        }
    }
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
        write!(f, "@{}#sha256={}", self.revision, self.sha256.join(","))
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')
}

const PIN_HELP: &str = "hf: references are pinned: hf:OWNER/REPO/FILE@COMMIT#sha256=HEX, or \
     hf:OWNER/REPO@COMMIT#sha256=HEX,HEX,HEX for config.json, tokenizer.json and \
     model.safetensors (COMMIT: the 40 hex digits of a commit, not a branch or tag, which can \
     change; HEX: each file's sha256, checked after every download and at every start)";

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_hub(rest: &str) -> Result<HubRef, String> {
    let Some((rest, pins)) = rest.split_once('#') else {
        return Err(format!("no sha256 given; {PIN_HELP}"));
    };
    let sha256: Vec<String> = pins
        .strip_prefix("sha256=")
        .ok_or_else(|| format!("{pins:?} is not sha256=HEX; {PIN_HELP}"))?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    if let Some(bad) = sha256.iter().find(|h| !is_hex(h, 64)) {
        return Err(format!(
            "{bad:?} is not a sha256 (64 hex digits); {PIN_HELP}"
        ));
    }
    let Some((path, revision)) = rest.rsplit_once('@') else {
        return Err(format!("no commit given; {PIN_HELP}"));
    };
    if !is_hex(revision, 40) {
        return Err(format!(
            "revision {revision:?} is not a commit (40 hex digits); {PIN_HELP}"
        ));
    }
    let revision = revision.to_ascii_lowercase();
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
    let hub = HubRef {
        repo: segments[..2].join("/"),
        file,
        revision,
        sha256,
    };
    let wanted = hub.files().len();
    if hub.sha256.len() != wanted {
        return Err(format!(
            "{} sha256 given for {wanted} file(s) ({}); {PIN_HELP}",
            hub.sha256.len(),
            hub.files().join(", ")
        ));
    }
    Ok(hub)
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

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
    const SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

    #[test]
    fn l11_hub_references_are_pinned_to_a_commit_and_checksums() {
        let file = format!("hf:owner/repo/sub/model-q4_k_m.gguf@{COMMIT}#sha256={SHA}");
        assert_eq!(
            parse(&file),
            ModelRef::Hub(HubRef {
                repo: "owner/repo".into(),
                file: Some("sub/model-q4_k_m.gguf".into()),
                revision: COMMIT.into(),
                sha256: vec![SHA.into()],
            })
        );
        let layout = format!("hf:intfloat/multilingual-e5-small@{COMMIT}#sha256={SHA},{SHA},{SHA}");
        let ModelRef::Hub(hub) = parse(&layout) else {
            panic!("a hub reference");
        };
        assert_eq!(hub.files(), STANDARD_FILES);
        for (unpinned, why) in [
            (
                "hf:intfloat/multilingual-e5-small".to_owned(),
                "no sha256 given",
            ),
            (
                format!("hf:owner/repo/m.gguf#sha256={SHA}"),
                "no commit given",
            ),
            (
                format!("hf:owner/repo/m.gguf@main#sha256={SHA}"),
                "is not a commit",
            ),
            (
                format!("hf:owner/repo/m.gguf@{COMMIT}#sha256=abc"),
                "is not a sha256",
            ),
            (
                format!("hf:owner/repo@{COMMIT}#sha256={SHA}"),
                "1 sha256 given for 3 file(s)",
            ),
        ] {
            let err = error(&unpinned);
            assert!(
                err.contains(why) && err.contains("COMMIT"),
                "{unpinned}: {err}"
            );
        }
    }

    #[test]
    fn references_print_as_they_are_written() {
        for text in [
            "bundle:smollm2-135m-instruct".to_owned(),
            format!("hf:owner/repo/model.gguf@{COMMIT}#sha256={SHA}"),
            "/srv/models/e5".to_owned(),
            "stand-in:hashing".to_owned(),
            "stand-in:echo".to_owned(),
        ] {
            assert_eq!(parse(&text).to_string(), text);
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
        let pins = format!("@{COMMIT}#sha256={SHA}");
        assert!(error(&format!("hf:justone{pins}")).contains("hf:OWNER/REPO"));
        assert!(error(&format!("hf:owner//file{pins}")).contains("segment"));
        assert!(error(&format!("hf:owner/repo/../x{pins}")).contains("\"..\""));
        assert!(error(&format!("hf:own er/repo/f{pins}")).contains("repository"));
        assert!(error("stand-in:e5").contains("stand-in:hashing and stand-in:echo"));
        let err = error("bundel:multilingual-e5-small");
        assert!(
            err.contains("\"bundel:\"") && err.contains("bundle:NAME"),
            "{err}"
        );
    }
}
