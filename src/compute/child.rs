//! Fibonacci in a separate OS process: the worker mode and the parent's supervisor.
//!
//! The parent never `fork()`s its multi-threaded self: it starts its own executable again with
//! [`WORKER_COMMAND`] (`backflow fib-worker <n>`), an empty environment (the worker needs no
//! configuration and must not inherit secrets) and stdout piped. The worker computes and prints
//! one JSON line, `{"n":30,"result":832040}`, then exits 0. Anything else (non-zero exit, a signal,
//! more than one line, wrong `n`, oversized output) is a [`ChildFailure`].
//!
//! Each child is watched by its own task, so it is killed *and reaped* in every path: normal exit,
//! garbage output, or cancellation (the request timed out or its client went away), even though
//! the request future that asked for it may already be gone.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, ChildStdout, Command};
use tokio_util::sync::CancellationToken;

use super::fib::{self, MAX_N};

/// First argument that starts the binary in worker mode.
pub const WORKER_COMMAND: &str = "fib-worker";

/// A correct reply is about 40 bytes; more than this is garbage and is not buffered.
const MAX_REPLY_BYTES: u64 = 256;

/// The one line a worker prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerReply {
    /// The input, echoed so the parent can check the reply answers its question.
    pub n: u32,
    /// `fib(n)`.
    pub result: u64,
}

/// Why worker mode could not run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerModeError {
    /// Missing, extra or invalid arguments.
    #[error("usage: backflow {WORKER_COMMAND} <n>, with n an integer 0..={MAX_N} ({0})")]
    Usage(String),
    /// The reply could not be written.
    #[error("cannot write the reply: {0}")]
    Write(#[from] std::io::Error),
}

/// Entry point of worker mode: `args` are the arguments after [`WORKER_COMMAND`].
pub fn worker_main(
    args: impl IntoIterator<Item = OsString>,
    out: &mut impl Write,
) -> Result<(), WorkerModeError> {
    let n = parse_worker_args(args)?;
    let reply = WorkerReply {
        n,
        result: fib::fib(n),
    };
    let line = serde_json::to_string(&reply).map_err(std::io::Error::from)?;
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn parse_worker_args(args: impl IntoIterator<Item = OsString>) -> Result<u32, WorkerModeError> {
    let mut args = args.into_iter();
    let (Some(raw), None) = (args.next(), args.next()) else {
        return Err(WorkerModeError::Usage(
            "expected exactly one argument".into(),
        ));
    };
    let raw = raw.to_string_lossy();
    match raw.parse::<u32>() {
        Ok(n) if n <= MAX_N => Ok(n),
        _ => Err(WorkerModeError::Usage(format!("got {raw:?}"))),
    }
}

/// Why a child did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum ChildFailure {
    /// The process could not be started or waited for.
    #[error("cannot run the worker process: {0}")]
    Io(#[from] std::io::Error),
    /// It exited unsuccessfully or was killed by a signal.
    #[error("worker process {0}")]
    Exit(ExitStatus),
    /// Its output is not a valid reply.
    #[error("worker process answered garbage: {0}")]
    Protocol(String),
    /// It was killed because the job was cancelled.
    #[error("worker process killed: job cancelled")]
    Cancelled,
}

/// A child's successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildOutcome {
    /// `fib(n)`.
    pub result: u64,
    /// The child's process id.
    pub pid: u32,
    /// From just before the spawn to the reaped exit.
    pub elapsed: Duration,
}

/// Checks a worker's whole stdout against the protocol and returns `fib(n)`.
pub fn parse_reply(expected_n: u32, output: &[u8]) -> Result<u64, ChildFailure> {
    let garbage = |why: &str| ChildFailure::Protocol(why.to_owned());
    let text = std::str::from_utf8(output).map_err(|_| garbage("not UTF-8"))?;
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.is_empty() {
        return Err(garbage("no output"));
    }
    if line.contains('\n') {
        return Err(garbage("more than one line"));
    }
    let reply: WorkerReply =
        serde_json::from_str(line).map_err(|err| garbage(&format!("not a reply: {err}")))?;
    if reply.n != expected_n {
        return Err(garbage(&format!(
            "answered for n = {} instead of {expected_n}",
            reply.n
        )));
    }
    Ok(reply.result)
}

/// Runs `exe fib-worker n` to completion or until `cancel` fires; always reaps the process.
///
/// `kill_on_drop` is the backstop for the one path this function cannot cover: the runtime
/// itself being dropped while the child runs.
pub async fn run_child(
    exe: &Path,
    n: u32,
    cancel: &CancellationToken,
) -> Result<ChildOutcome, ChildFailure> {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg(WORKER_COMMAND)
        .arg(n.to_string())
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child
        .id()
        .ok_or_else(|| ChildFailure::Protocol("no pid right after spawn".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ChildFailure::Protocol("stdout is not piped".into()))?;

    let finished = tokio::select! {
        finished = collect(&mut child, stdout) => Some(finished),
        () = cancel.cancelled() => None,
    };
    let exited = match finished {
        Some(Ok(Collected::Exited(output, status))) => Ok((output, status)),
        Some(Ok(Collected::Oversized)) => Err(ChildFailure::Protocol(format!(
            "more than {MAX_REPLY_BYTES} bytes"
        ))),
        Some(Err(err)) => Err(err.into()),
        None => Err(ChildFailure::Cancelled),
    };
    // A child that exited has been waited for; any other is killed and reaped before returning.
    let (output, status) = match exited {
        Ok(exited) => exited,
        Err(failure) => {
            reap(&mut child).await;
            return Err(failure);
        }
    };
    if !status.success() {
        return Err(ChildFailure::Exit(status));
    }
    let result = parse_reply(n, &output)?;
    Ok(ChildOutcome {
        result,
        pid,
        elapsed: started.elapsed(),
    })
}

enum Collected {
    Exited(Vec<u8>, ExitStatus),
    Oversized,
}

/// Reads stdout to its end (bounded), then waits for the exit.
async fn collect(child: &mut Child, stdout: ChildStdout) -> std::io::Result<Collected> {
    let mut output = Vec::new();
    stdout
        .take(MAX_REPLY_BYTES + 1)
        .read_to_end(&mut output)
        .await?;
    if output.len() as u64 > MAX_REPLY_BYTES {
        return Ok(Collected::Oversized);
    }
    let status = child.wait().await?;
    Ok(Collected::Exited(output, status))
}

/// Kills the child (if still running) and waits for it, so it leaves no zombie.
async fn reap(child: &mut Child) {
    if let Err(err) = child.start_kill() {
        // Already exited: the wait below reaps it.
        tracing::debug!(%err, "worker process was not running");
    }
    if let Err(err) = child.wait().await {
        tracing::warn!(%err, "cannot reap worker process");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_worker(args: &[&str]) -> Result<Vec<u8>, WorkerModeError> {
        let mut out = Vec::new();
        worker_main(args.iter().map(OsString::from), &mut out)?;
        Ok(out)
    }

    #[test]
    fn worker_prints_one_json_line_the_parent_accepts() {
        let out = run_worker(&["20"]).expect("valid n");
        assert_eq!(out, b"{\"n\":20,\"result\":6765}\n");
        assert_eq!(parse_reply(20, &out).expect("valid reply"), 6765);
    }

    #[test]
    fn worker_refuses_bad_arguments() {
        for args in [&[][..], &["abc"], &["-1"], &["1.5"], &["94"], &["3", "4"]] {
            let err = run_worker(args).unwrap_err();
            assert!(matches!(err, WorkerModeError::Usage(_)), "{args:?}: {err}");
            assert!(err.to_string().contains("0..=93"), "{err}");
        }
    }

    #[test]
    fn a_reply_without_final_newline_is_accepted() {
        assert_eq!(parse_reply(1, br#"{"n":1,"result":1}"#).expect("valid"), 1);
    }

    #[test]
    fn garbage_replies_are_refused() {
        let cases: [&[u8]; 8] = [
            b"",
            b"\n",
            b"fib-worker 30\n",
            b"{\"n\":30}\n",
            b"{\"n\":30,\"result\":-1}\n",
            b"{\"n\":30,\"result\":1,\"extra\":true}\n",
            b"{\"n\":30,\"result\":1}\n{\"n\":30,\"result\":1}\n",
            b"\xff\xfe\n",
        ];
        for output in cases {
            let err = parse_reply(30, output).unwrap_err();
            assert!(
                matches!(err, ChildFailure::Protocol(_)),
                "{:?}: {err}",
                String::from_utf8_lossy(output)
            );
        }
    }

    #[test]
    fn a_reply_for_another_n_is_refused() {
        let err = parse_reply(30, b"{\"n\":29,\"result\":514229}\n").unwrap_err();
        assert!(err.to_string().contains("instead of 30"), "{err}");
    }
}
