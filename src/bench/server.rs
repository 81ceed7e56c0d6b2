//! A throwaway kedai server for benchmarks: the current executable run as a
//! child process on a free loopback port, in a temporary data directory that
//! is deleted afterwards, with its own tenant and shop.
//!
//! It goes through the same command line an operator uses (`tenant create`,
//! `shop add`, `serve`), so what is measured is the shipped binary, and it
//! never downloads models: the bench is about the ingest path.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const TENANT: &str = "bench";
const SHOP: &str = "bench-web";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 20;

/// Where a benchmark sends its traffic.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub token: String,
    pub shop: String,
}

pub(crate) struct BenchServer {
    child: Child,
    endpoint: Endpoint,
    log_path: PathBuf,
    data_dir: TempDir,
}

#[derive(Deserialize)]
struct TenantCreated {
    token: String,
}

impl BenchServer {
    /// Creates the tenant and shop, starts `serve`, and waits for `/healthz`.
    pub async fn start(client: &reqwest::Client) -> anyhow::Result<BenchServer> {
        let exe = std::env::current_exe().context("cannot locate the kedai executable")?;
        let data_dir = tempfile::Builder::new()
            .prefix("kedai-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;

        let created: TenantCreated =
            run_json(kedai(&exe, data_dir.path()).args(["--json", "tenant", "create", TENANT]))
                .await?;
        run_json::<serde_json::Value>(kedai(&exe, data_dir.path()).args([
            "--json",
            "shop",
            "add",
            "--tenant",
            TENANT,
            "--platform",
            "web",
            "--id",
            SHOP,
        ]))
        .await?;

        let addr = free_loopback_addr()?;
        let log_path = data_dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let child = kedai(&exe, data_dir.path())
            .args(["serve", "--listen", &addr.to_string()])
            .stdin(Stdio::null())
            // `serve` prints a demo tenant's token on first start; not ours.
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `kedai serve`")?;

        let mut server = BenchServer {
            child,
            endpoint: Endpoint {
                base: format!("http://{addr}"),
                token: created.token,
                shop: SHOP.to_string(),
            },
            log_path,
            data_dir,
        };
        server.wait_healthy(client).await?;
        Ok(server)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    async fn wait_healthy(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.endpoint.base);
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "`kedai serve` exited during startup ({status}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            let probe = client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if probe.is_ok_and(|r| r.status() == reqwest::StatusCode::OK) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "`kedai serve` did not answer {url} with 200 within {}s; its log ends with:\n{}",
                    STARTUP_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM, then SIGKILL if the server has not exited within `grace`.
    /// The data directory is removed either way.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let Some(pid) = self.child.id() else {
            return Ok(());
        };
        let signalled = send_sigterm(pid).await;
        if signalled {
            if let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await {
                let status = status?;
                if !status.success() {
                    eprintln!(
                        "note: `kedai serve` exited with {status} after SIGTERM; its log ends with:\n{}",
                        self.log_tail()
                    );
                }
                return Ok(());
            }
        }
        eprintln!(
            "note: `kedai serve` did not stop within {}s of SIGTERM; killing it",
            grace.as_secs()
        );
        self.child.kill().await.context("cannot kill `kedai serve`")
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

/// Through the `kill` program, or the shell's builtin where slim images ship
/// no `kill` binary; kedai links no signal-sending crate.
async fn send_sigterm(pid: u32) -> bool {
    let pid = pid.to_string();
    let via_program = Command::new("kill").args(["-TERM", &pid]).status().await;
    match via_program {
        Ok(status) => status.success(),
        Err(_) => Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &pid])
            .status()
            .await
            .is_ok_and(|s| s.success()),
    }
}

/// The kedai executable pointed at `data_dir`, with model downloads off and
/// logging quiet: neither belongs in an ingest measurement.
fn kedai(exe: &Path, data_dir: &Path) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("--data-dir")
        .arg(data_dir)
        .env("KEDAI__MODELS__FETCH_ON_START", "false")
        .env("KEDAI__MODELS__REQUIRED", "false")
        .env("KEDAI__LOG__FILTER", "warn");
    command
}

/// Runs a `--json` command and parses its output: the whole of stdout, or
/// failing that its last line that parses, in case something else was printed.
async fn run_json<T: for<'de> Deserialize<'de>>(command: &mut Command) -> anyhow::Result<T> {
    let described = format!("{:?}", command.as_std());
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("cannot run {described}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("{described} failed ({}):\n{stdout}{stderr}", output.status);
    }
    let parsed = serde_json::from_str(stdout.trim()).ok().or_else(|| {
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str(line.trim()).ok())
    });
    parsed.with_context(|| format!("{described} printed no JSON we understand:\n{stdout}{stderr}"))
}

/// A port that was free a moment ago. Another process could take it before
/// the server binds it; on loopback with an ephemeral port that is unlikely,
/// and the health check would report it.
fn free_loopback_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    Ok(listener.local_addr()?)
}
