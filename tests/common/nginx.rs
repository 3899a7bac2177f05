//! A real nginx (Debian's package) in front of BackFlow instances, configured from
//! `deploy/nginx.conf.template`: the file `scripts/cluster.sh` and `compose.yaml` use, so the
//! tests check the deployment's own configuration.
//!
//! nginx runs in the foreground (`daemon off;`) with every path (prefix, pid, temporary files,
//! logs) in a directory of its own, so it needs nothing owned by root and leaves nothing behind.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::Signal;

use super::{Api, system};

/// The deployment's nginx configuration, with `${BACKFLOW_...}` placeholders.
pub const TEMPLATE: &str = include_str!("../../deploy/nginx.conf.template");

/// The lines that make nginx terminate TLS with HTTP/2, in place of the template's `listen`.
pub const TLS_TEMPLATE: &str = include_str!("../../deploy/nginx-tls.conf.template");

/// The `listen` line of [`TEMPLATE`] that [`TLS_TEMPLATE`] replaces.
const PLAIN_LISTEN: &str = "        listen ${BACKFLOW_LISTEN_PORT};\n";

/// Longest wait for nginx to accept connections (a guard against a hang, not a timing).
const READY_GUARD: Duration = Duration::from_secs(10);
/// How long nginx gets to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest a request of [`Nginx`]'s own client may take, body included.
const REQUEST_GUARD: Duration = Duration::from_secs(30);

/// The template with its placeholders filled: nginx listening on `listen_port`, in front of
/// `upstreams`, keeping its pid and temporary files in `run_dir` and its logs in `log_dir`.
/// Panics if a placeholder is left.
pub fn render_config(
    listen_port: u16,
    upstreams: &[SocketAddr],
    run_dir: &Path,
    log_dir: &Path,
) -> String {
    filled(render(TEMPLATE, listen_port, upstreams, run_dir, log_dir))
}

/// `config`, after checking that no placeholder is left in it.
fn filled(config: String) -> String {
    if let Some(at) = config.find("${") {
        let name = config[at..].split_inclusive('}').next().unwrap_or_default();
        panic!("a placeholder of the nginx template is not filled: {name}");
    }
    config
}

/// Like [`render_config`], with nginx serving HTTPS and HTTP/2 with the PEM files `cert` and
/// `key` ([`TLS_TEMPLATE`] in place of the `listen` line).
pub fn render_tls_config(
    listen_port: u16,
    upstreams: &[SocketAddr],
    run_dir: &Path,
    log_dir: &Path,
    (cert, key): (&Path, &Path),
) -> String {
    assert!(
        TEMPLATE.contains(PLAIN_LISTEN),
        "the template's listen line"
    );
    let tls_lines: String = TLS_TEMPLATE
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let path = |file: &Path| file.to_str().expect("a UTF-8 path").to_owned();
    let template = TEMPLATE.replace(PLAIN_LISTEN, &tls_lines);
    filled(
        render(&template, listen_port, upstreams, run_dir, log_dir)
            .replace("${BACKFLOW_TLS_CERT}", &path(cert))
            .replace("${BACKFLOW_TLS_KEY}", &path(key)),
    )
}

fn render(
    template: &str,
    listen_port: u16,
    upstreams: &[SocketAddr],
    run_dir: &Path,
    log_dir: &Path,
) -> String {
    assert!(!upstreams.is_empty(), "nginx needs at least one upstream");
    let servers: String = upstreams
        .iter()
        .map(|addr| format!("server {addr}; "))
        .collect();
    let path = |dir: &Path| dir.to_str().expect("a UTF-8 path").to_owned();
    template
        .replace("${BACKFLOW_LISTEN_PORT}", &listen_port.to_string())
        .replace("${BACKFLOW_UPSTREAMS}", servers.trim_end())
        .replace("${BACKFLOW_NGINX_RUN_DIR}", &path(run_dir))
        .replace("${BACKFLOW_NGINX_LOG_DIR}", &path(log_dir))
}

/// A running nginx, stopped when dropped.
pub struct Nginx {
    /// Where it listens.
    pub addr: SocketAddr,
    client: reqwest::Client,
    dir: tempfile::TempDir,
    child: Child,
}

impl Api for Nginx {
    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Nginx {
    /// Starts nginx on a free loopback port in front of `upstreams` (round robin, as
    /// configured); waits until it accepts connections. Panics with its error log if it does
    /// not start.
    pub async fn start(upstreams: &[SocketAddr]) -> Self {
        Self::start_with(|port, dir| render_config(port, upstreams, dir, dir)).await
    }

    /// Like [`Nginx::start`], with nginx terminating TLS (HTTP/2 and HTTP/1.1 by ALPN) with
    /// the PEM files `cert` and `key`.
    pub async fn start_tls(upstreams: &[SocketAddr], cert: &Path, key: &Path) -> Self {
        Self::start_with(|port, dir| render_tls_config(port, upstreams, dir, dir, (cert, key)))
            .await
    }

    async fn start_with(config: impl FnOnce(u16, &Path) -> String) -> Self {
        let dir = tempfile::tempdir().expect("a directory for nginx");
        // Run as root, nginx's workers switch to an unprivileged user: let them reach it.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("the directory's mode can be set");
        let port = system::free_port();
        let config = config(port, dir.path());
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config).expect("nginx.conf written");
        let child = Command::new(system::installed("nginx", "apt-get install nginx"))
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx can be run");
        let mut nginx = Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            client: reqwest::Client::builder()
                .timeout(REQUEST_GUARD)
                .build()
                .expect("client"),
            dir,
            child,
        };
        nginx.wait_until_accepting().await;
        nginx
    }

    /// nginx's error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// nginx's access log so far: one line per request, with the instance that answered
    /// (`upstream=`) and the request id.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    async fn wait_until_accepting(&mut self) {
        let deadline = tokio::time::Instant::now() + READY_GUARD;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", self.error_log());
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "nginx did not accept connections within {READY_GUARD:?}:\n{}",
                self.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM, not SIGKILL: the master stops its workers, which would otherwise keep serving.
    fn drop(&mut self) {
        system::stop(&mut self.child, Signal::TERM, STOP_GRACE);
    }
}
