//! A throwaway kedai server for benchmarks: the current executable run as a
//! child process on a free loopback port, in a temporary data directory that
//! is deleted afterwards.
//!
//! It goes through the same command line an operator uses (`tenant create`,
//! `shop add`, `token create`, `serve`), so what is measured is the shipped
//! binary, and it never downloads models. Two setups: the ingest path alone
//! (a tenant and shop of its own, no models), or a fresh `kedai serve` as an
//! operator first starts it (models loaded, the demo tenant with its shops,
//! knowledge base and orders, read from `kb/` relative to the current
//! directory).

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tempfile::TempDir;
use tokio::process::{Child, Command};
use tokio::time::Instant;

use super::client::{BenchClient, Call};
use crate::config::Settings;
use crate::startup::{DEMO_SHOPS, DEMO_TOKEN_FILE};

const TENANT: &str = "bench";
const SHOP: &str = "bench-web";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Loading the models, training the understand stage and embedding the demo
/// knowledge base take minutes on a small, busy machine.
const MODELS_STARTUP_TIMEOUT: Duration = Duration::from_secs(900);
const LOG_TAIL_LINES: usize = 20;
/// Seconds the client waits beyond the server's own request timeout, so a
/// server that times a request out answers 503 before the client gives up.
const CLIENT_TIMEOUT_MARGIN_SECS: u64 = 5;
/// Seconds the throwaway server gets beyond its shutdown grace to exit.
const STOP_MARGIN_SECS: u64 = 10;

/// What the throwaway server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerSetup {
    /// A tenant and web shop of its own and no models: the ingest path alone.
    IngestOnly,
    /// As a first `kedai serve`: the configured models (from the cache,
    /// never downloaded) and the demo tenant, whose token it issues itself;
    /// ready once `/readyz` says so.
    Demo,
}

/// The HTTP client every benchmark uses against the server.
pub(crate) fn bench_client(settings: &Settings) -> anyhow::Result<BenchClient> {
    Ok(BenchClient::new(Duration::from_secs(
        settings.server.request_timeout_secs + CLIENT_TIMEOUT_MARGIN_SECS,
    )))
}

/// How long a throwaway server gets to stop after SIGTERM.
pub(crate) fn stop_grace(settings: &Settings) -> Duration {
    Duration::from_secs(settings.server.shutdown_grace_secs + STOP_MARGIN_SECS)
}

/// Where a benchmark sends its traffic.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `http://host:port`, no trailing slash.
    pub base: String,
    pub token: String,
    /// An operator token, for readiness details (the queue's counts).
    pub operator: String,
    pub shop: String,
}

pub(crate) struct BenchServer {
    child: Child,
    endpoint: Endpoint,
    log_path: PathBuf,
    data_dir: TempDir,
}

/// What `tenant create --json` and `token create --json` print.
#[derive(Deserialize)]
struct IssuedToken {
    token: String,
}

impl BenchServer {
    /// Prepares the data directory for `setup`, starts `serve`, and waits
    /// until it answers: `/healthz` for the ingest path, `/readyz` once the
    /// models are loaded for the demo.
    /// `config` is the configuration file kedai was given, if any: the
    /// server measured runs with it too.
    pub async fn start(
        client: &BenchClient,
        setup: ServerSetup,
        config: Option<&Path>,
    ) -> anyhow::Result<BenchServer> {
        let exe = std::env::current_exe().context("cannot locate the kedai executable")?;
        let exe = Kedai { exe: &exe, config };
        let data_dir = tempfile::Builder::new()
            .prefix("kedai-bench-")
            .tempdir()
            .context("cannot create a temporary data directory")?;

        // The administrative commands below need the schema in place.
        let _: serde_json::Value =
            run_json(exe.command(data_dir.path()).args(["--json", "migrate"])).await?;
        let own_token = match setup {
            ServerSetup::IngestOnly => Some(create_tenant_and_shop(&exe, data_dir.path()).await?),
            ServerSetup::Demo => None,
        };
        let operator: IssuedToken = run_json(
            exe.command(data_dir.path())
                .args(["--json", "operator", "token", "create", "--label", "bench"]),
        )
        .await?;

        let addr = free_loopback_addr()?;
        let log_path = data_dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut serve = exe.command(data_dir.path());
        if setup == ServerSetup::IngestOnly {
            // Models do not belong in an ingest measurement.
            serve.env("KEDAI__MODELS__REQUIRED", "false");
        }
        serve.args(["serve", "--listen", &addr.to_string()]);
        if setup == ServerSetup::Demo {
            serve.arg("--demo");
        }
        let child = serve
            .stdin(Stdio::null())
            // `serve` says where the demo tenant's token is, in words; the
            // demo setup reads the file.
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `kedai serve`")?;

        let (shop, startup_timeout) = match setup {
            ServerSetup::IngestOnly => (SHOP, STARTUP_TIMEOUT),
            ServerSetup::Demo => (DEMO_SHOPS[3].0, MODELS_STARTUP_TIMEOUT),
        };
        let mut server = BenchServer {
            child,
            endpoint: Endpoint {
                base: format!("http://{addr}"),
                token: own_token.unwrap_or_default(),
                operator: operator.token,
                shop: shop.to_string(),
            },
            log_path,
            data_dir,
        };
        server.wait_for(client, "/healthz", startup_timeout).await?;
        if setup == ServerSetup::Demo {
            // The demo tenant and its token file exist once `serve` answers.
            let file = server.data_dir().join(DEMO_TOKEN_FILE);
            server.endpoint.token = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the demo token from {}", file.display()))?
                .trim()
                .to_owned();
            server.wait_for(client, "/readyz", startup_timeout).await?;
        }
        Ok(server)
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Polls `path` until it answers 200. A `/readyz` report that the models
    /// are unavailable ends the wait at once: they will not appear by
    /// themselves.
    async fn wait_for(
        &mut self,
        client: &BenchClient,
        path: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.endpoint.base);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "`kedai serve` exited during startup ({status}); its log ends with:\n{}",
                    self.log_tail()
                );
            }
            let probe = client
                .send(
                    Call::get(&url)
                        .bearer(&self.endpoint.operator)
                        .timeout(Duration::from_secs(1)),
                )
                .await;
            if let Ok(response) = probe {
                if response.status == axum::http::StatusCode::OK {
                    return Ok(());
                }
                let report: serde_json::Value = response.json().unwrap_or_default();
                if let Some(why) = report["models"]["detail"]["unavailable"].as_str() {
                    bail!("`kedai serve` cannot load its models: {why}");
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "`kedai serve` did not answer {url} with 200 within {}s; its log ends with:\n{}",
                    timeout.as_secs(),
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

/// The bench's own tenant with a web shop; returns the tenant's token.
async fn create_tenant_and_shop(exe: &Kedai<'_>, data_dir: &Path) -> anyhow::Result<String> {
    let created: IssuedToken = run_json(
        exe.command(data_dir)
            .args(["--json", "tenant", "create", TENANT]),
    )
    .await?;
    run_json::<serde_json::Value>(exe.command(data_dir).args([
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
    Ok(created.token)
}

/// The kedai executable and the configuration file it was given.
struct Kedai<'a> {
    exe: &'a Path,
    config: Option<&'a Path>,
}

impl Kedai<'_> {
    /// The executable pointed at `data_dir`, with the same configuration,
    /// model downloads off and logging quiet: neither belongs in a
    /// measurement.
    fn command(&self, data_dir: &Path) -> Command {
        let mut command = Command::new(self.exe);
        if let Some(config) = self.config {
            command.env("KEDAI_CONFIG", config);
        }
        command
            .arg("--data-dir")
            .arg(data_dir)
            .env("KEDAI__MODELS__FETCH_ON_START", "false")
            .env("KEDAI__LOG__FILTER", "warn");
        command
    }
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
