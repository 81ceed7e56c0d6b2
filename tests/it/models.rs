//! The real default bundle: pulled with the machine's pip into the model
//! cache (`$KEDAI_MODELS`, else the user cache directory; reused across runs,
//! so only the first run downloads about 570 MB), then every file re-hashed.

use std::collections::HashMap;
use std::fs;

use kedai::config::Settings;
use kedai::models::{self, FetchPolicy, FileCheck, FileState, ModelSource, PrepareMode, Progress};

const DEFAULT_BUNDLE: [&str; 2] = ["multilingual-e5-small", "qwen2.5-coder-0.5b-instruct"];

fn fetch_mode() -> PrepareMode {
    PrepareMode {
        fetch: FetchPolicy::FetchMissing,
        progress: Progress::Lines,
    }
}

#[test]
fn the_default_bundle_is_pulled_and_every_file_verifies() {
    let settings = Settings::defaults().models;
    let prepared = models::prepare(&settings, fetch_mode()).expect("default bundle prepared");

    let embedding = prepared.get(&prepared.roles.retrieval).unwrap();
    assert_eq!(embedding.source, ModelSource::Bundle);
    assert_eq!(embedding.artifact.as_deref(), Some("multilingual-e5-small"));
    for name in ["e5-small-q4.bin", "tokenizer.json", "e5.c"] {
        let path = embedding
            .file(name)
            .unwrap_or_else(|| panic!("{name} resolved"));
        assert!(path.is_file(), "{}", path.display());
    }
    let gguf = prepared
        .get(&prepared.roles.drafts)
        .unwrap()
        .file_with_extension("gguf")
        .expect("chat gguf resolved");
    assert!(gguf.starts_with(settings.cache_dir()), "{}", gguf.display());

    let expected_sizes: HashMap<&str, u64> = HashMap::from([
        ("e5-small-q4.bin", 71_622_400),
        ("tokenizer.json", 17_082_730),
        ("e5.c", 41_188),
        ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", 491_400_064),
    ]);
    let reports = models::verify_artifacts(&settings, &DEFAULT_BUNDLE).expect("verify runs");
    assert_eq!(reports.len(), expected_sizes.len());
    for report in &reports {
        assert_eq!(report.check, FileCheck::Ok, "{report:?}");
        let on_disk = fs::metadata(&report.path).expect("file present").len();
        assert_eq!(
            on_disk,
            expected_sizes[report.file.as_str()],
            "{}",
            report.file
        );
    }

    let statuses = models::status(&settings);
    for name in DEFAULT_BUNDLE {
        let status = statuses.iter().find(|s| s.name == name).expect("listed");
        assert_eq!(status.state, FileState::Verified, "{name}");
    }
}

#[test]
fn a_pulled_bundle_resolves_offline_from_its_stamps() {
    let settings = Settings::defaults().models;
    models::prepare(&settings, fetch_mode()).expect("default bundle prepared");
    let offline = PrepareMode {
        fetch: FetchPolicy::Offline,
        progress: Progress::Silent,
    };
    let prepared = models::prepare(&settings, offline).expect("resolves without fetching");
    let summary = prepared.summary();
    assert_eq!(summary["embedding"]["artifact"], "multilingual-e5-small");
    assert_eq!(summary["chat"]["verified"], true);
    assert_eq!(
        summary["chat"]["files"],
        serde_json::json!(["qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"])
    );
}
