//! The model cache on disk: `<cache>/<artifact>/<file>`, one verification
//! stamp per file (`.<file>.verified`, recording size, modification and
//! change times and sha256 so a start-up need not re-hash 500 MB), streaming
//! sha256, and the cheap `status` and thorough `verify` views of what is
//! there. A stamp is trusted only while the file's change time (which no
//! one can set back, unlike its modification time) is the one recorded,
//! and for [`STAMP_MAX_AGE`]; then the file is hashed again.
//!
//! This module never downloads anything and knows nothing of pip or wheels;
//! it only judges files against the manifest.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::{io_error, ModelError};
use super::manifest::{Artifact, ArtifactFile, Bundle, Licence};

const HASH_BUFFER_BYTES: usize = 1 << 20;
/// How long a stamp spares a file from hashing.
pub(crate) const STAMP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

pub(crate) fn artifact_dir(cache: &Path, artifact: &Artifact) -> PathBuf {
    cache.join(&artifact.name)
}

fn stamp_path(file_path: &Path) -> PathBuf {
    let name = file_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    file_path.with_file_name(format!(".{name}.verified"))
}

/// What a successful hash of a file recorded.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    file: FileIdentity,
    sha256: String,
    /// Seconds since the epoch when the file was hashed.
    hashed_at: u64,
}

/// What changes whenever a file's bytes do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct FileIdentity {
    size: u64,
    mtime_ns: u128,
    /// The inode's change time: set by the kernel on every write, rename or
    /// metadata change, and never settable back by a process.
    ctime_ns: i128,
}

fn file_identity(metadata: &fs::Metadata) -> FileIdentity {
    let mtime_ns = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    #[cfg(unix)]
    let ctime_ns = {
        use std::os::unix::fs::MetadataExt;
        i128::from(metadata.ctime()) * 1_000_000_000 + i128::from(metadata.ctime_nsec())
    };
    #[cfg(not(unix))]
    let ctime_ns = mtime_ns as i128;
    FileIdentity {
        size: metadata.len(),
        mtime_ns,
        ctime_ns,
    }
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// True when a stamp says this exact file (same size, modification and
/// change times) was hashed, recently enough, and had the expected sha256.
fn stamp_is_fresh(path: &Path, metadata: &fs::Metadata, expected: &ArtifactFile) -> bool {
    let Ok(text) = fs::read_to_string(stamp_path(path)) else {
        return false;
    };
    // Stamps of older kedai versions lack fields: not fresh, re-hashed once.
    let Ok(stamp) = serde_json::from_str::<Stamp>(&text) else {
        return false;
    };
    let age = now_secs().saturating_sub(stamp.hashed_at);
    stamp.file == file_identity(metadata)
        && stamp.sha256 == expected.sha256
        && age < STAMP_MAX_AGE.as_secs()
}

/// Records that `path` hashed to `sha256`, for the file as it is now.
pub(crate) fn write_stamp(path: &Path, sha256: &str) -> Result<(), ModelError> {
    let metadata = fs::metadata(path).map_err(io_error("reading metadata of", path))?;
    let stamp = Stamp {
        file: file_identity(&metadata),
        sha256: sha256.to_owned(),
        hashed_at: now_secs(),
    };
    let stamp_path = stamp_path(path);
    let dir = stamp_path.parent().unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(io_error("creating a file in", dir))?;
    let json = serde_json::to_vec(&stamp).expect("a stamp serialises");
    tmp.write_all(&json)
        .map_err(io_error("writing", tmp.path()))?;
    make_world_readable(tmp.as_file(), tmp.path())?;
    tmp.persist(&stamp_path)
        .map_err(|e| e.error)
        .map_err(io_error("writing", &stamp_path))?;
    Ok(())
}

/// Temp files are created 0600; models and their stamps are shared
/// read-only data (the server may run as another user than the pull).
#[cfg(unix)]
pub(crate) fn make_world_readable(file: &File, path: &Path) -> Result<(), ModelError> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(io_error("setting permissions of", path))
}

#[cfg(not(unix))]
pub(crate) fn make_world_readable(_file: &File, _path: &Path) -> Result<(), ModelError> {
    Ok(())
}

fn remove_stamp(path: &Path) {
    // A stale stamp is harmless (size and mtime no longer match), so failing
    // to remove one is not worth an error.
    let _ = fs::remove_file(stamp_path(path));
}

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// The inner writer, the lowercase hex sha256 and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            hex::encode(self.hasher.finalize()),
            self.written,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `reader` into `writer` with a large buffer; wheel members are
/// hundreds of megabytes.
pub(crate) fn copy_large(reader: &mut impl Read, writer: &mut impl Write) -> io::Result<u64> {
    let mut buffer = vec![0u8; HASH_BUFFER_BYTES];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buffer[..n])?;
        total += n as u64;
    }
}

/// Lowercase hex sha256 and size of a file, streamed.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64), ModelError> {
    let file = File::open(path).map_err(io_error("opening", path))?;
    let mut reader = BufReader::with_capacity(HASH_BUFFER_BYTES, file);
    let mut hasher = HashingWriter::new(io::sink());
    copy_large(&mut reader, &mut hasher).map_err(io_error("reading", path))?;
    let (_, sha256, size) = hasher.finish();
    Ok((sha256, size))
}

/// The verdict on one file of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum FileCheck {
    Ok,
    Missing,
    SizeMismatch { expected: u64, actual: u64 },
    ChecksumMismatch { expected: String, actual: String },
}

impl FileCheck {
    pub fn is_ok(&self) -> bool {
        matches!(self, FileCheck::Ok)
    }
}

/// How hard to look at a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scrutiny {
    /// Trust a fresh stamp; hash only when there is none.
    Quick,
    /// Always hash.
    Full,
}

/// Checks one file against the manifest, refreshing or removing its stamp
/// according to what hashing found.
pub(crate) fn check_file(
    path: &Path,
    expected: &ArtifactFile,
    scrutiny: Scrutiny,
) -> Result<FileCheck, ModelError> {
    let metadata = match fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(FileCheck::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(FileCheck::Missing),
        Err(e) => return Err(io_error("reading metadata of", path)(e)),
    };
    if metadata.len() != expected.size {
        remove_stamp(path);
        return Ok(FileCheck::SizeMismatch {
            expected: expected.size,
            actual: metadata.len(),
        });
    }
    if scrutiny == Scrutiny::Quick && stamp_is_fresh(path, &metadata, expected) {
        return Ok(FileCheck::Ok);
    }
    let (actual, size) = sha256_file(path)?;
    if size != expected.size {
        remove_stamp(path);
        return Ok(FileCheck::SizeMismatch {
            expected: expected.size,
            actual: size,
        });
    }
    if actual != expected.sha256 {
        remove_stamp(path);
        return Ok(FileCheck::ChecksumMismatch {
            expected: expected.sha256.clone(),
            actual,
        });
    }
    if let Err(err) = write_stamp(path, &actual) {
        // A read-only cache is fine to run from; it only costs a re-hash at
        // the next start.
        tracing::warn!(path = %path.display(), %err, "could not record a model file's verification");
    }
    Ok(FileCheck::Ok)
}

/// Turns a failed check into the error a caller that needs the file reports.
pub(crate) fn check_to_error(path: &Path, check: FileCheck) -> Option<ModelError> {
    match check {
        FileCheck::Ok | FileCheck::Missing => None,
        FileCheck::SizeMismatch { expected, actual } => Some(ModelError::SizeMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        }),
        FileCheck::ChecksumMismatch { expected, actual } => Some(ModelError::ChecksumMismatch {
            path: path.to_path_buf(),
            expected,
            actual,
        }),
    }
}

/// One file in a `verify` report.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub artifact: String,
    pub file: String,
    pub path: PathBuf,
    pub size: u64,
    #[serde(flatten)]
    pub check: FileCheck,
}

/// Re-hashes every file of `artifacts`, one thread per file.
pub(crate) fn verify_in(
    artifacts: &[&Artifact],
    cache: &Path,
) -> Result<Vec<FileReport>, ModelError> {
    let jobs: Vec<(&Artifact, &ArtifactFile)> = artifacts
        .iter()
        .flat_map(|a| a.files.iter().map(move |f| (*a, f)))
        .collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(artifact, file)| {
                scope.spawn(move || {
                    let path = artifact_dir(cache, artifact).join(&file.name);
                    let check = check_file(&path, file, Scrutiny::Full)?;
                    Ok(FileReport {
                        artifact: artifact.name.clone(),
                        file: file.name.clone(),
                        path,
                        size: file.size,
                        check,
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a hashing thread does not panic"))
            .collect()
    })
}

/// What `status` can tell about a file without hashing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// Absent, or a size that cannot be right.
    Missing,
    /// Right size, but not hashed since it last changed.
    Present,
    /// Right size and a fresh stamp of a matching hash.
    Verified,
}

#[derive(Debug, Clone, Serialize)]
pub struct FileStatus {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    pub state: FileState,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactStatus {
    pub name: String,
    pub bundle: Bundle,
    pub licence: Licence,
    pub dir: PathBuf,
    pub size: u64,
    /// The least good state among the files.
    pub state: FileState,
    pub files: Vec<FileStatus>,
}

/// The cheap view: sizes and stamps only, no hashing.
pub(crate) fn status_in(artifacts: &[Artifact], cache: &Path) -> Vec<ArtifactStatus> {
    artifacts
        .iter()
        .map(|artifact| {
            let dir = artifact_dir(cache, artifact);
            let files: Vec<FileStatus> = artifact
                .files
                .iter()
                .map(|file| {
                    let path = dir.join(&file.name);
                    let state = match fs::metadata(&path) {
                        Ok(m) if m.is_file() && m.len() == file.size => {
                            if stamp_is_fresh(&path, &m, file) {
                                FileState::Verified
                            } else {
                                FileState::Present
                            }
                        }
                        _ => FileState::Missing,
                    };
                    FileStatus {
                        name: file.name.clone(),
                        path,
                        size: file.size,
                        state,
                    }
                })
                .collect();
            ArtifactStatus {
                name: artifact.name.clone(),
                bundle: artifact.bundle,
                licence: artifact.licence,
                state: files
                    .iter()
                    .map(|f| f.state)
                    .min()
                    .unwrap_or(FileState::Missing),
                dir,
                size: artifact.size(),
                files,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{self, Fixture};
    use super::*;

    fn place(fx: &Fixture, artifact: &str, file: &str, bytes: &[u8]) -> PathBuf {
        let dir = fx.cache().join(artifact);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(file), bytes).unwrap();
        dir.join(file)
    }

    #[test]
    fn verify_reports_ok_missing_and_corrupt_files() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        place(&fx, "tiny-embed", "model.bin", testkit::MODEL_BIN);
        let mut wrong = testkit::TOKENIZER.to_vec();
        wrong[0] = b'[';
        place(&fx, "tiny-embed", "tokenizer.json", &wrong);
        place(&fx, "tiny-chat", "chat.gguf", b"short");

        let all: Vec<&Artifact> = catalog.artifacts().iter().collect();
        let reports = verify_in(&all, fx.cache()).unwrap();
        let checks: Vec<(&str, &FileCheck)> = reports
            .iter()
            .map(|r| (r.file.as_str(), &r.check))
            .collect();
        assert_eq!(checks[0], ("model.bin", &FileCheck::Ok));
        match checks[1] {
            ("tokenizer.json", FileCheck::ChecksumMismatch { expected, actual }) => {
                assert_eq!(expected, &testkit::sha256_hex(testkit::TOKENIZER));
                assert_eq!(actual, &testkit::sha256_hex(&wrong));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            checks[2],
            (
                "chat.gguf",
                &FileCheck::SizeMismatch {
                    expected: testkit::gguf().len() as u64,
                    actual: 5
                }
            )
        );

        fs::remove_file(fx.cache().join("tiny-chat").join("chat.gguf")).unwrap();
        let reports = verify_in(&all[1..], fx.cache()).unwrap();
        assert_eq!(reports[0].check, FileCheck::Missing);
    }

    #[test]
    fn status_tells_present_from_verified_without_hashing() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let model = place(&fx, "tiny-embed", "model.bin", testkit::MODEL_BIN);
        place(&fx, "tiny-embed", "tokenizer.json", testkit::TOKENIZER);
        let status = status_in(catalog.artifacts(), fx.cache());
        assert_eq!(status[0].state, FileState::Present);
        assert_eq!(status[1].state, FileState::Missing);

        let embed = catalog.get("tiny-embed").unwrap();
        for file in &embed.files {
            let path = fx.cache().join("tiny-embed").join(&file.name);
            assert_eq!(
                check_file(&path, file, Scrutiny::Quick).unwrap(),
                FileCheck::Ok
            );
        }
        let status = status_in(catalog.artifacts(), fx.cache());
        assert_eq!(status[0].state, FileState::Verified);

        // Touching the file makes the stamp stale.
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&model, testkit::MODEL_BIN).unwrap();
        let status = status_in(catalog.artifacts(), fx.cache());
        assert_eq!(status[0].files[0].state, FileState::Present);
        assert_eq!(status[0].files[1].state, FileState::Verified);
    }

    #[test]
    fn l11_a_quick_check_sees_an_edit_that_keeps_size_and_mtime() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let expected = &catalog.get("tiny-embed").unwrap().files[0];
        let path = place(&fx, "tiny-embed", "model.bin", testkit::MODEL_BIN);
        assert_eq!(
            check_file(&path, expected, Scrutiny::Quick).unwrap(),
            FileCheck::Ok
        );
        // Same size, same mtime, different bytes: the change time moved, so
        // even the quick check hashes and sees it.
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        let mut bytes = testkit::MODEL_BIN.to_vec();
        bytes[1] ^= 1;
        fs::write(&path, &bytes).unwrap();
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(matches!(
            check_file(&path, expected, Scrutiny::Quick).unwrap(),
            FileCheck::ChecksumMismatch { .. }
        ));
        assert!(
            !stamp_path(&path).exists(),
            "a failed check removes the stamp"
        );
    }

    #[test]
    fn l11_an_old_stamp_is_not_trusted() {
        let fx = Fixture::new();
        let catalog = fx.catalog();
        let expected = &catalog.get("tiny-embed").unwrap().files[0];
        let path = place(&fx, "tiny-embed", "model.bin", testkit::MODEL_BIN);
        check_file(&path, expected, Scrutiny::Quick).unwrap();
        let read = || -> Stamp {
            serde_json::from_str(&fs::read_to_string(stamp_path(&path)).unwrap()).unwrap()
        };
        let mut stamp = read();
        stamp.hashed_at -= STAMP_MAX_AGE.as_secs() + 1;
        fs::write(stamp_path(&path), serde_json::to_vec(&stamp).unwrap()).unwrap();
        let metadata = fs::metadata(&path).unwrap();
        assert!(!stamp_is_fresh(&path, &metadata, expected));
        assert_eq!(
            check_file(&path, expected, Scrutiny::Quick).unwrap(),
            FileCheck::Ok
        );
        assert!(
            read().hashed_at > stamp.hashed_at,
            "hashed again and re-stamped"
        );
    }
}
