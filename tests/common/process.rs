//! The real `backflow` binary as a child process: for tests that kill it, signal it, or run
//! several instances side by side.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{Api, TEST_PER_IP_CAP};

/// Longest wait for a server to report its address (a guard against a hang, not a timing).
const START_GUARD: Duration = Duration::from_secs(20);

/// Longest a request of [`ServerProcess`]'s own client may take, body included.
const REQUEST_GUARD: Duration = Duration::from_secs(30);

/// A running server process, killed when dropped.
pub struct ServerProcess {
    /// Where it listens.
    pub addr: SocketAddr,
    client: reqwest::Client,
    child: Child,
    log: JoinHandle<Vec<String>>,
}

impl Api for ServerProcess {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl ServerProcess {
    /// Starts the binary with a clean environment plus `envs`, on a free loopback port, logging
    /// JSON; waits for its address. Panics with its output if it does not start.
    pub async fn start(envs: &[(&str, &str)]) -> Self {
        Self::start_with_fd_limit(envs, None).await
    }

    /// Like [`ServerProcess::start`], under the open-file limit `fd_limit` when one is given.
    pub async fn start_with_fd_limit(envs: &[(&str, &str)], fd_limit: Option<FdLimit>) -> Self {
        match Self::try_start_with_fd_limit(envs, fd_limit).await {
            Ok(server) => server,
            Err(output) => panic!("the server did not start:\n{output}"),
        }
    }

    async fn try_start_with_fd_limit(
        envs: &[(&str, &str)],
        fd_limit: Option<FdLimit>,
    ) -> Result<Self, String> {
        let envs: Vec<(&str, &str)> = [("RUST_LOG", "backflow=info"), TEST_PER_IP_CAP]
            .into_iter()
            .chain(envs.iter().copied())
            .collect();
        let mut child = server_command(&envs, fd_limit)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary starts");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let mut seen = Vec::new();
        let addr = tokio::time::timeout(START_GUARD, async {
            while let Ok(Some(line)) = stdout.next_line().await {
                let entry: Value = serde_json::from_str(&line).unwrap_or_default();
                seen.push(line);
                if entry["message"] == "listening" {
                    let addr = entry["local_addr"].as_str().expect("an address");
                    return Some(addr.parse::<SocketAddr>().expect("a socket address"));
                }
            }
            None
        })
        .await
        .expect("the server reports its address or exits");
        let Some(addr) = addr else {
            let _ = child.wait().await;
            while let Ok(Some(line)) = stderr.next_line().await {
                seen.push(line);
            }
            return Err(seen.join("\n"));
        };
        // Keep reading both pipes so the server never blocks on a full one.
        let log = tokio::spawn(async move {
            let mut lines = seen;
            loop {
                tokio::select! {
                    line = stdout.next_line() => match line {
                        Ok(Some(line)) => lines.push(line),
                        _ => break,
                    },
                    line = stderr.next_line() => match line {
                        Ok(Some(line)) => lines.push(line),
                        _ => break,
                    },
                }
            }
            lines
        });
        let client = reqwest::Client::builder()
            .timeout(REQUEST_GUARD)
            .build()
            .expect("client");
        Ok(Self {
            addr,
            client,
            child,
            log,
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would, and reaps it.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL delivered");
    }

    /// Sends SIGTERM and waits for the exit; returns the status and everything it logged.
    pub async fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.pid()).expect("a pid"))
            .expect("a non-zero pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM sent");
        let status = tokio::time::timeout(START_GUARD, self.child.wait())
            .await
            .expect("the server exits after SIGTERM")
            .expect("an exit status");
        let log = self.log.await.expect("the log reader ends");
        (status, log)
    }
}

/// Runs the binary with a clean environment plus `envs`, expecting it to refuse to start;
/// returns its exit status and standard error.
pub async fn refused_start(envs: &[(&str, &str)]) -> (ExitStatus, String) {
    refused_start_with_fd_limit(envs, None).await
}

/// Like [`refused_start`], under the open-file limit `fd_limit` when one is given.
pub async fn refused_start_with_fd_limit(
    envs: &[(&str, &str)],
    fd_limit: Option<FdLimit>,
) -> (ExitStatus, String) {
    let output = tokio::time::timeout(START_GUARD, server_command(envs, fd_limit).output())
        .await
        .expect("the server exits at once")
        .expect("the server binary runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An open-file limit (soft, hard) for a server process alone.
pub type FdLimit = (u64, u64);

/// The binary with a clean environment plus `envs`, on a free loopback port, logging JSON,
/// killed when dropped. Under `fd_limit`, set in the child before it runs the binary, so the
/// machine's own limits and this process's stay as they are.
fn server_command(envs: &[(&str, &str)], fd_limit: Option<FdLimit>) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_backflow"));
    command
        .env_clear()
        .envs([("HOST", "127.0.0.1"), ("PORT", "0"), ("LOG_FORMAT", "json")])
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some((soft, hard)) = fd_limit {
        // SAFETY: runs in the forked child before exec, where only async-signal-safe calls are
        // allowed: `setrlimit` is one system call and nothing here allocates.
        unsafe {
            command.pre_exec(move || {
                let limit = Rlimit {
                    current: Some(soft),
                    maximum: Some(hard),
                };
                setrlimit(Resource::Nofile, limit).map_err(std::io::Error::from)
            });
        }
    }
    command
}

/// Raises this test process's own soft limit on open files to its hard limit, so that it can
/// open thousands of sockets.
pub fn raise_own_fd_limit() {
    let Rlimit { maximum, .. } = getrlimit(Resource::Nofile);
    let limit = Rlimit {
        current: maximum,
        maximum,
    };
    setrlimit(Resource::Nofile, limit).expect("the soft limit may be raised to the hard limit");
}
