//! What the harness needs from the machine: installed programs, free loopback ports, and
//! child processes that are stopped for certain.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

/// Where Debian puts the programs the harness runs; `/usr/sbin` is often not on a user's `PATH`.
const SYSTEM_DIRS: [&str; 4] = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin"];

/// The path of `program`. Panics, saying how to install it (`install`), when it is not
/// installed: a test that needs a real Redis or nginx fails rather than passing
/// without having run.
pub fn installed(program: &str, install: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed, and this test runs a real one. Install it with \
                 `{install}` (`scripts/test` installs it when it is missing)."
            )
        })
}

/// A loopback port that was free a moment ago (the OS picked it for a listener just closed).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Sends `signal` to `child`, waits up to `grace` for it to exit, then kills it with SIGKILL
/// and reaps it. Does nothing if it has already exited.
pub fn stop(child: &mut Child, signal: rustix::process::Signal, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}
