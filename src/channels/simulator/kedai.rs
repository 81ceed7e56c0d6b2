//! The kedai server under test: the same binary run as `kedai serve` in a
//! child process on a fixed loopback port, killed with SIGKILL and
//! restarted on demand, its log in the data directory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

/// How to start the server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub exe: PathBuf,
    pub data_dir: PathBuf,
    pub address: SocketAddr,
    pub config: Option<PathBuf>,
    /// `KEDAI__…` settings for the simulation.
    pub env: Vec<(String, String)>,
}

pub struct Server {
    spec: ServerSpec,
    child: Option<Child>,
    pub starts: usize,
    pub kills: usize,
}

/// A free loopback port (bound and released; the server binds it next).
pub fn free_address() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

impl Server {
    pub fn new(spec: ServerSpec) -> Server {
        Server {
            spec,
            child: None,
            starts: 0,
            kills: 0,
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.spec.address)
    }

    /// Starts the server and waits (up to `wait`) until it listens.
    pub fn start(&mut self, wait: Duration) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.spec.data_dir.join("simulate-kedai.log"))
            .context("opening the server log")?;
        let mut command = Command::new(&self.spec.exe);
        if let Some(config) = &self.spec.config {
            command.arg("--config").arg(config);
        }
        command
            .arg("--data-dir")
            .arg(&self.spec.data_dir)
            .args(["serve", "--listen", &self.spec.address.to_string()])
            .envs(self.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        let mut child = command.spawn().context("starting kedai serve")?;
        let stdout = child.stdout.take().context("kedai's stdout")?;
        let (ready, listening) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end so the child never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("kedai is listening on ") {
                    let _ = ready.send(());
                }
            }
        });
        self.child = Some(child);
        self.starts += 1;
        match listening.recv_timeout(wait) {
            Ok(()) => Ok(()),
            Err(_) => {
                let status = self
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                self.kill();
                bail!(
                    "kedai did not start listening within {} s (exit: {status:?}); see {}",
                    wait.as_secs(),
                    self.log_path().display()
                )
            }
        }
    }

    /// SIGKILL, no warning, no cleanup.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills += 1;
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.spec.data_dir.join("simulate-kedai.log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
