//! The `backflow` binary.
//!
//! - `backflow`: parse configuration, start logging, serve until SIGINT/SIGTERM.
//! - `backflow healthcheck`: exit 0 when the local server answers `/health` (for container
//!   health checks, so the runtime image needs no curl).
//! - `backflow hash-password`: reads a password on standard input (its first line) and prints
//!   its argon2id PHC string for `AUTH_USERS`, with the `ARGON2_*` costs of the environment.
//! - `backflow fib-worker <n>`: worker mode of `/heavy-task-child`; prints `{"n":..,"result":..}`
//!   on one line and exits. The server starts its own binary this way instead of forking.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::Duration;

use backflow::compute::child;
use backflow::{Config, server, telemetry};

/// How long the exit waits for blocking-pool threads still winding down after the drain.
const RUNTIME_EXIT_GRACE: Duration = Duration::from_secs(1);

/// jemalloc instead of the system allocator: it keeps no header beside each block, so the part
/// of a connection's buffers that is never written (most of them on an event stream) costs no
/// resident memory, and it allocates with fewer instructions.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(),
        Some("healthcheck") => healthcheck(),
        Some("hash-password") => hash_password(),
        Some(child::WORKER_COMMAND) => fib_worker(),
        Some(other) => {
            eprintln!(
                "backflow: unknown command {other:?}; expected `serve`, `healthcheck`, `hash-password` or `{}`",
                child::WORKER_COMMAND
            );
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    if let Err(err) = telemetry::init(config.server.log_format) {
        return fail(&err);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let outcome = runtime.block_on(server::run_until_signal(config));
    // Cancelled pool jobs notice their flag within milliseconds; never let one hold up the exit.
    runtime.shutdown_timeout(RUNTIME_EXIT_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// A minimal HTTP/1.0 probe of `127.0.0.1:$PORT/health`.
fn healthcheck() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => return fail(&err),
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, config.server.port));
    let probe = || -> std::io::Result<bool> {
        let timeout = Duration::from_secs(2);
        let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    match probe() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => fail(&"health check answered with a non-200 status"),
        Err(err) => fail(&format!("health check failed: {err}")),
    }
}

/// Prints the PHC string of the password on the first line of standard input.
fn hash_password() -> ExitCode {
    let params = match backflow::config::hash_params_from_lookup(|name| std::env::var(name).ok()) {
        Ok(params) => params,
        Err(err) => return fail(&err),
    };
    let mut line = String::new();
    if let Err(err) = std::io::stdin().read_line(&mut line) {
        return fail(&format!(
            "cannot read the password from standard input: {err}"
        ));
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return fail(&"hash-password: the password on standard input is empty");
    }
    match backflow::auth::password::hash_password(password, params) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(&format!("hash-password: {err}")),
    }
}

/// Worker mode: no configuration, no runtime, no logging; just the computation and its reply.
fn fib_worker() -> ExitCode {
    // A single-threaded process: this lowers the whole worker below the server's threads.
    backflow::compute::priority::lower_current_thread();
    let mut stdout = std::io::stdout().lock();
    match child::worker_main(std::env::args_os().skip(2), &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err @ child::WorkerModeError::Usage(_)) => {
            eprintln!("backflow: {err}");
            ExitCode::from(2)
        }
        Err(err) => fail(&err),
    }
}

/// Start-up failures are one line on stderr and a non-zero exit.
fn fail(err: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("backflow: {err}");
    ExitCode::FAILURE
}
