//! A real `redis-server` for tests (Debian's package), on a free loopback port of its own.
//!
//! Each [`RedisServer`] is a separate process with its own port and data directory, so tests
//! run in parallel without sharing anything; within one server, tests that share it keep apart
//! by [`unique_prefix`]. [`RedisServer::kill`] and [`RedisServer::restart`] make an outage and
//! the return on the same URL. The process is killed when the value is dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::system;

/// Longest wait for a server to answer `PING` (a guard against a hang, not a timing).
const READY_GUARD: Duration = Duration::from_secs(10);
/// Attempts at a fresh port when another process took the one picked.
const START_ATTEMPTS: usize = 3;

/// How the server keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing on disk (`--save "" --appendonly no`): a restart starts empty.
    None,
    /// An append-only file written before each answer and synced when the system chooses
    /// (`--appendonly yes --appendfsync no`): a restart, even after SIGKILL, reloads every
    /// write that was answered. (With `everysec`, Redis holds writes back for up to two
    /// seconds while a sync is slow, and a SIGKILL then loses writes it had answered.)
    AppendOnly,
}

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    port: u16,
    persistence: Persistence,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server that keeps nothing on disk.
    pub async fn start() -> Self {
        Self::start_with(Persistence::None).await
    }

    /// Starts a server with the given persistence; waits until it answers `PING`.
    pub async fn start_with(persistence: Persistence) -> Self {
        let dir = tempfile::tempdir().expect("a data directory for redis");
        let mut server = Self {
            port: 0,
            persistence,
            dir,
            child: None,
        };
        for _ in 0..START_ATTEMPTS {
            server.port = system::free_port();
            if server.launch().await.is_ok() {
                return server;
            }
        }
        panic!(
            "redis-server did not start in {START_ATTEMPTS} attempts:\n{}",
            server.log()
        );
    }

    /// `redis://127.0.0.1:<port>`, for `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process is running (it may not answer yet).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| child.try_wait().ok().flatten().is_none())
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it. Clients see their
    /// connections reset and new connections refused until [`RedisServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory (killing it first if it
    /// runs); waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(why) = self.launch().await {
            panic!(
                "redis-server did not start again on port {}: {why}\n{}",
                self.port,
                self.log()
            );
        }
    }

    /// Whether the server answers `PING` now.
    pub async fn ping(&self) -> bool {
        ping(self.port).await
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("redis.log")
    }

    /// Spawns the process on `self.port` and waits until it answers or exits.
    async fn launch(&mut self) -> Result<(), String> {
        let child = command(
            self.port,
            self.persistence,
            self.dir.path(),
            &self.log_path(),
        )
        .spawn()
        .expect("redis-server can be run");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + READY_GUARD;
        while tokio::time::Instant::now() < deadline {
            if !self.is_running() {
                self.kill();
                return Err("it exited".into());
            }
            if self.ping().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        Err(format!("no answer to PING within {READY_GUARD:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            system::stop(&mut child, Signal::KILL, Duration::ZERO);
        }
    }
}

/// The `redis-server` command line for one test server.
fn command(port: u16, persistence: Persistence, dir: &Path, log: &Path) -> Command {
    let appendonly = match persistence {
        Persistence::None => "no",
        Persistence::AppendOnly => "yes",
    };
    let mut command = Command::new(system::installed(
        "redis-server",
        "apt-get install redis-server",
    ));
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", appendonly])
        .args(["--appendfsync", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Whether a server on `port` answers `PING` within half a second.
async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_millis(500), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// A `REDIS_PREFIX` no other test uses: `test-<label>-<random>`, so tests sharing one server
/// never see each other's keys, and a reader of the keys can tell whose they are. Only letters,
/// digits and `-`, at most 50 characters, as `REDIS_PREFIX` accepts.
pub fn unique_prefix(label: &str) -> String {
    let label: String = label
        .chars()
        .take(32)
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("test-{label}-{}", &random[..12])
}
