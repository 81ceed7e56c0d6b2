//! `hf:` references: files of a Hugging Face repository, fetched with
//! hf-hub's blocking client into hf-hub's own cache (`HF_HOME`, endpoint
//! `HF_ENDPOINT`, token from `HF_TOKEN` or the cache's token file), or found
//! there without any network access when fetching is not allowed.
//!
//! Deliberately small: no checksums of our own (the hub's etags are the
//! source of truth) and no knowledge of what the files contain.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::error::{ModelError, HUB_FETCH_HINT};
use super::fetch::Progress;
use super::reference::HubRef;

/// What a repository named without a file must provide.
const STANDARD_FILES: &[&str] = &["config.json", "tokenizer.json", "model.safetensors"];

const DEFAULT_REVISION: &str = "main";

fn wanted_files(hub: &HubRef) -> Vec<String> {
    match &hub.file {
        Some(file) => vec![file.clone()],
        None => STANDARD_FILES.iter().map(|f| (*f).to_owned()).collect(),
    }
}

fn repo(hub: &HubRef) -> Repo {
    Repo::with_revision(
        hub.repo.clone(),
        RepoType::Model,
        hub.revision
            .clone()
            .unwrap_or_else(|| DEFAULT_REVISION.to_owned()),
    )
}

/// The builder honouring `HF_HOME` and `HF_ENDPOINT`, as hf-hub does.
pub(crate) fn builder_from_env(progress: Progress) -> ApiBuilder {
    ApiBuilder::from_env().with_progress(progress.effective() == Progress::Bar)
}

/// Local paths of the files of `hub`, downloading those not yet cached.
pub(crate) fn fetch(hub: &HubRef, builder: ApiBuilder) -> Result<Vec<PathBuf>, ModelError> {
    let failed = |file: &str, detail: String| ModelError::FetchFailed {
        what: format!("{file} from {hub}"),
        detail,
        hint: HUB_FETCH_HINT,
    };
    let api = builder
        .build()
        .map_err(|e| failed("the client", e.to_string()))?;
    let repo = api.repo(repo(hub));
    wanted_files(hub)
        .iter()
        .map(|file| repo.get(file).map_err(|e| failed(file, e.to_string())))
        .collect()
}

/// Local paths of the files of `hub` if all are in hf-hub's cache; no
/// network access.
pub(crate) fn cached(hub: &HubRef, cache: &Cache) -> Result<Vec<PathBuf>, ModelError> {
    let cached_repo = cache.repo(repo(hub));
    let wanted = wanted_files(hub);
    let found: Vec<Option<PathBuf>> = wanted.iter().map(|f| cached_repo.get(f)).collect();
    let missing: Vec<String> = wanted
        .iter()
        .zip(&found)
        .filter(|(_, path)| path.is_none())
        .map(|(name, _)| name.clone())
        .collect();
    if !missing.is_empty() {
        return Err(ModelError::NotPresent {
            model: hub.to_string(),
            dir: cache.path().clone(),
            missing,
        });
    }
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, Instant};

    use super::*;

    fn hub(repo: &str, file: Option<&str>) -> HubRef {
        HubRef {
            repo: repo.into(),
            file: file.map(Into::into),
            revision: None,
        }
    }

    /// hf-hub's cache layout: refs/<revision> names a snapshot directory.
    fn fake_hub_cache(root: &std::path::Path, repo: &str, files: &[&str]) -> PathBuf {
        let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
        let commit = "0123456789abcdef0123456789abcdef01234567";
        fs::create_dir_all(repo_dir.join("refs")).unwrap();
        fs::write(repo_dir.join("refs").join("main"), commit).unwrap();
        let snapshot = repo_dir.join("snapshots").join(commit);
        fs::create_dir_all(&snapshot).unwrap();
        for file in files {
            fs::write(snapshot.join(file), format!("contents of {file}")).unwrap();
        }
        snapshot
    }

    #[test]
    fn an_unreachable_hub_fails_quickly_with_advice() {
        let cache = tempfile::tempdir().unwrap();
        let builder = ApiBuilder::from_env()
            .with_progress(false)
            .with_cache_dir(cache.path().to_path_buf())
            .with_endpoint("http://127.0.0.1:9".into());
        let started = Instant::now();
        let err = fetch(&hub("owner/repo", None), builder)
            .unwrap_err()
            .to_string();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "took {:?}",
            started.elapsed()
        );
        assert!(err.contains("config.json from hf:owner/repo"), "{err}");
        assert!(
            err.contains("HF_ENDPOINT") && err.contains("kedai models pull"),
            "{err}"
        );
    }

    #[test]
    fn cached_files_resolve_without_the_network() {
        let cache = tempfile::tempdir().unwrap();
        let snapshot = fake_hub_cache(cache.path(), "owner/repo", STANDARD_FILES);
        let builder = ApiBuilder::from_env()
            .with_progress(false)
            .with_cache_dir(cache.path().to_path_buf())
            .with_endpoint("http://127.0.0.1:9".into());
        let paths = fetch(&hub("owner/repo", None), builder).unwrap();
        let expected: Vec<PathBuf> = STANDARD_FILES.iter().map(|f| snapshot.join(f)).collect();
        assert_eq!(paths, expected);
        let offline = cached(
            &hub("owner/repo", None),
            &Cache::new(cache.path().to_path_buf()),
        );
        assert_eq!(offline.unwrap(), expected);
    }

    #[test]
    fn a_named_file_is_the_only_one_wanted() {
        let cache = tempfile::tempdir().unwrap();
        let snapshot = fake_hub_cache(cache.path(), "owner/gguf", &["model-q4.gguf"]);
        let found = cached(
            &hub("owner/gguf", Some("model-q4.gguf")),
            &Cache::new(cache.path().to_path_buf()),
        )
        .unwrap();
        assert_eq!(found, vec![snapshot.join("model-q4.gguf")]);
    }

    #[test]
    fn missing_cached_files_are_named() {
        let cache = tempfile::tempdir().unwrap();
        fake_hub_cache(cache.path(), "owner/repo", &["config.json"]);
        let err = cached(
            &hub("owner/repo", None),
            &Cache::new(cache.path().to_path_buf()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tokenizer.json, model.safetensors"), "{err}");
        assert!(err.contains("hf:owner/repo"), "{err}");
    }
}
