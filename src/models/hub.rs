//! `hf:` references: files of a Hugging Face repository, fetched with
//! hf-hub's blocking client into hf-hub's own cache (`HF_HOME`, endpoint
//! `HF_ENDPOINT`, token from `HF_TOKEN` or the cache's token file), or found
//! there without any network access when fetching is not allowed.
//!
//! References are pinned to a commit and each file to a sha256 (see
//! `reference`): every file is hashed after a download and at every start,
//! so what runs is what the operator reviewed. Knows nothing of what the
//! files contain.

use std::path::PathBuf;

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use super::error::{ModelError, HUB_FETCH_HINT};
use super::fetch::Progress;
use super::reference::HubRef;

fn wanted_files(hub: &HubRef) -> Vec<String> {
    hub.files()
}

fn repo(hub: &HubRef) -> Repo {
    Repo::with_revision(hub.repo.clone(), RepoType::Model, hub.revision.clone())
}

/// Checks each file against the reference's sha256, in order.
fn verify(hub: &HubRef, paths: Vec<PathBuf>) -> Result<Vec<PathBuf>, ModelError> {
    for (path, expected) in paths.iter().zip(&hub.sha256) {
        let (actual, _) = super::cache::sha256_file(path)?;
        if &actual != expected {
            return Err(ModelError::ChecksumMismatch {
                path: path.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(paths)
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
    let paths = wanted_files(hub)
        .iter()
        .map(|file| repo.get(file).map_err(|e| failed(file, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    verify(hub, paths)
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
    verify(hub, found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::{Duration, Instant};

    use sha2::Digest;

    use super::super::reference::STANDARD_FILES;
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn sha(file: &str) -> String {
        hex::encode(sha2::Sha256::digest(
            format!("contents of {file}").as_bytes(),
        ))
    }

    fn hub(repo: &str, file: Option<&str>) -> HubRef {
        let mut hub = HubRef {
            repo: repo.into(),
            file: file.map(Into::into),
            revision: COMMIT.into(),
            sha256: Vec::new(),
        };
        hub.sha256 = hub.files().iter().map(|f| sha(f)).collect();
        hub
    }

    /// hf-hub's cache layout: refs/<revision> names a snapshot directory.
    fn fake_hub_cache(root: &std::path::Path, repo: &str, files: &[&str]) -> PathBuf {
        let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
        let commit = COMMIT;
        fs::create_dir_all(repo_dir.join("refs")).unwrap();
        fs::write(repo_dir.join("refs").join("main"), commit).unwrap();
        fs::write(repo_dir.join("refs").join(commit), commit).unwrap();
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

    #[test]
    fn l11_a_cached_file_that_does_not_match_its_sha256_is_refused() {
        let cache = tempfile::tempdir().unwrap();
        fake_hub_cache(cache.path(), "owner/gguf", &["model-q4.gguf"]);
        let mut pinned = hub("owner/gguf", Some("model-q4.gguf"));
        pinned.sha256 = vec![sha("something else")];
        let err = cached(&pinned, &Cache::new(cache.path().to_path_buf())).unwrap_err();
        assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    }
}
