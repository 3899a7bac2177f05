//! Taking connections off the listen queue, also when the process is out of file descriptors.
//!
//! An `accept` that fails with `EMFILE` (this process has no descriptor left) or `ENFILE` (the
//! system has none) leaves the connection queued and the listener readable, so a loop that
//! simply retries spins and one that pauses stops answering everyone. [`Acceptor`] keeps one
//! descriptor spare for this moment, as libuv does: it closes it and takes the waiting
//! connection with it. The serving loop then closes idle connections to make room for that one
//! (see [`ConnectionRegistry::admit`]), or, when none is idle, refuses it with
//! `503 server_busy`; the spare is opened again as soon as a descriptor is free. Until then, an
//! `EMFILE` makes room and waits, at most [`ROOM_WAIT`], for a connection to close.

use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use metrics::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::registry::ConnectionRegistry;
use crate::error::{ErrorBody, retry_after_seconds};
use crate::fault::SERVER_BUSY_RETRY_AFTER;
use crate::metrics::Metrics;
use crate::middleware::SECURITY_HEADERS;

/// Longest wait for a connection to close after room was made, or when none could be, before
/// the next `accept`. Connections asked to close go within milliseconds; the bound is for the
/// case where none was idle.
const ROOM_WAIT: Duration = Duration::from_millis(100);

/// Refused connections waiting for their answer at once; past this many, a refused connection
/// is closed without one. Each holds its descriptor until it is answered.
const REFUSALS_MAX: usize = 32;

/// Longest wait for a refused client's request head. The answer follows the request: one sent
/// before it confuses clients (hyper's reports an unexpected message on its connection).
const REFUSED_REQUEST_WAIT: Duration = Duration::from_secs(1);

/// Most bytes of a refused client's request read before the answer.
const REFUSED_REQUEST_READ_MAX: usize = 16 * 1024;

/// Why an `accept` failed, as the `kind` label of `http_accept_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// `EMFILE`: this process has no file descriptor left.
    ProcessOutOfFiles,
    /// `ENFILE`: the system has none left.
    SystemOutOfFiles,
    /// `ENOBUFS` / `ENOMEM`: no memory for the socket.
    OutOfMemory,
    /// The connection failed before it was taken (reset, aborted, refused by a filter).
    Connection,
    /// Anything else.
    Other,
}

impl AcceptError {
    const ALL: [Self; 5] = [
        Self::ProcessOutOfFiles,
        Self::SystemOutOfFiles,
        Self::OutOfMemory,
        Self::Connection,
        Self::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::ProcessOutOfFiles => "emfile",
            Self::SystemOutOfFiles => "enfile",
            Self::OutOfMemory => "enomem",
            Self::Connection => "connection",
            Self::Other => "other",
        }
    }

    fn of(err: &io::Error) -> Self {
        #[cfg(target_os = "linux")]
        {
            use rustix::io::Errno;
            match Errno::from_io_error(err) {
                Some(Errno::MFILE) => return Self::ProcessOutOfFiles,
                Some(Errno::NFILE) => return Self::SystemOutOfFiles,
                Some(Errno::NOBUFS | Errno::NOMEM) => return Self::OutOfMemory,
                Some(Errno::PROTO) => return Self::Connection,
                _ => {}
            }
        }
        use io::ErrorKind::{
            ConnectionAborted, ConnectionRefused, ConnectionReset, HostUnreachable, Interrupted,
            NetworkDown, NetworkUnreachable, OutOfMemory, PermissionDenied,
        };
        match err.kind() {
            ConnectionAborted | ConnectionRefused | ConnectionReset | HostUnreachable
            | Interrupted | NetworkDown | NetworkUnreachable | PermissionDenied => Self::Connection,
            OutOfMemory => Self::OutOfMemory,
            _ => Self::Other,
        }
    }
}

/// The listener, with what it needs when it cannot simply take the next connection.
pub(super) struct Acceptor {
    listener: TcpListener,
    /// Kept open to be closed when the process has no descriptor left.
    spare: Option<File>,
    busy_answer: Arc<BusyAnswer>,
    refusals: Arc<Semaphore>,
    refused: Counter,
    errors: [Counter; AcceptError::ALL.len()],
}

impl Acceptor {
    pub(super) fn new(listener: TcpListener, metrics: &Metrics) -> Self {
        Self {
            listener,
            spare: open_spare(),
            busy_answer: Arc::new(BusyAnswer::new()),
            refusals: Arc::new(Semaphore::new(REFUSALS_MAX)),
            refused: metrics.counter("http_connections_refused_total", &[]),
            errors: AcceptError::ALL
                .map(|kind| metrics.counter("http_accept_errors_total", &[("kind", kind.label())])),
        }
    }

    /// The next connection. Accept errors are counted and never end the loop; when the process
    /// is out of resources they are answered by making room.
    pub(super) async fn accept(&mut self, registry: &ConnectionRegistry) -> Accepted {
        loop {
            if self.spare.is_none() {
                self.spare = open_spare();
            }
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    return Accepted {
                        stream,
                        peer,
                        out_of_files: false,
                    };
                }
                Err(err) => {
                    if let Some(accepted) = self.recover(&err, registry).await {
                        return accepted;
                    }
                }
            }
        }
    }

    /// Answers `503 server_busy` to a connection that cannot be served once its request head
    /// is in, and closes it; closes it at once when [`REFUSALS_MAX`] are being answered, or
    /// when the port serves HTTPS (the answer is plain HTTP/1.1, which a TLS client cannot
    /// read, and a handshake for a refusal would spend the CPU the refusal is there to save).
    pub(super) fn refuse(&self, stream: TcpStream, tls: bool) {
        self.refused.increment(1);
        if tls {
            return;
        }
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            tracing::debug!("too many refusals pending; connection closed without an answer");
            return;
        };
        let answer = self.busy_answer.clone();
        tokio::spawn(async move {
            if let Err(err) = answer.send(stream).await {
                tracing::debug!(error = %err, "could not answer a refused connection");
            }
            drop(permit);
        });
    }

    /// Counts a failed `accept` and does what it calls for; returns the connection it took
    /// with the spare descriptor, if it did.
    async fn recover(
        &mut self,
        err: &io::Error,
        registry: &ConnectionRegistry,
    ) -> Option<Accepted> {
        let kind = AcceptError::of(err);
        self.errors[kind as usize].increment(1);
        match kind {
            AcceptError::Connection => {
                tracing::debug!(error = %err, "connection failed before it was accepted");
                return None;
            }
            AcceptError::ProcessOutOfFiles | AcceptError::SystemOutOfFiles => {
                if let Some(spare) = self.spare.take() {
                    return self.accept_with(spare);
                }
            }
            AcceptError::OutOfMemory | AcceptError::Other => {}
        }
        tracing::debug!(error = %err, "accept failed");
        // Without a spare there is no telling whether a connection waits: make room anyway,
        // and try again once a connection has closed (or after a short wait, so that an
        // error that is not about resources does not spin the loop).
        let closed = registry.closed();
        if kind != AcceptError::Other {
            registry.make_room();
        }
        let _ = tokio::time::timeout(ROOM_WAIT, closed).await;
        None
    }

    /// Closes the spare descriptor to take the waiting connection with it. Linux reserves the
    /// descriptor before it looks at the queue, so `EMFILE` comes even with no connection
    /// waiting; this tells the two apart. Nothing waiting: the spare is opened again.
    fn accept_with(&mut self, spare: File) -> Option<Accepted> {
        drop(spare);
        // The failed accept left the listener marked readable: this accepts at once, or finds
        // the queue empty and clears the mark, so the next accept waits for a connection.
        match self.listener.accept().now_or_never() {
            Some(Ok((stream, peer))) => Some(Accepted {
                stream,
                peer,
                out_of_files: true,
            }),
            Some(Err(_)) | None => {
                self.spare = open_spare();
                None
            }
        }
    }
}

/// A connection taken off the listen queue.
pub(super) struct Accepted {
    pub(super) stream: TcpStream,
    pub(super) peer: SocketAddr,
    /// Taken with the spare descriptor: room must be made for it whether or not
    /// `MAX_CONNECTIONS` is reached, or it be refused.
    pub(super) out_of_files: bool,
}

fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// The `503 server_busy` answer of a refused connection, written without hyper: the connection
/// is never served, so it gets none of hyper's buffers.
struct BusyAnswer {
    /// Status line and headers, up to the request id.
    head: Vec<u8>,
    body: Vec<u8>,
}

impl BusyAnswer {
    fn new() -> Self {
        let retry_after = retry_after_seconds(SERVER_BUSY_RETRY_AFTER);
        let body = serde_json::to_vec(&ErrorBody {
            error: "The server is at its connection limit; retry shortly".to_owned(),
            code: "server_busy",
            field: None,
            retry_after_seconds: Some(retry_after),
        })
        .expect("an error body serializes");
        let mut head = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nretry-after: {retry_after}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in SECURITY_HEADERS {
            let value = value.to_str().expect("security headers are ASCII");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        Self {
            head: head.into_bytes(),
            body,
        }
    }

    /// Reads the request head (for at most [`REFUSED_REQUEST_WAIT`]), answers and closes.
    async fn send(&self, mut stream: TcpStream) -> io::Result<()> {
        let mut request = Vec::new();
        let read_head = async {
            let mut buffer = [0u8; 4096];
            while !request.windows(4).any(|end| end == b"\r\n\r\n")
                && request.len() < REFUSED_REQUEST_READ_MAX
            {
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
            }
            Ok::<_, io::Error>(())
        };
        // A client that sends nothing gets the answer when the wait is over.
        if let Ok(read) = tokio::time::timeout(REFUSED_REQUEST_WAIT, read_head).await {
            read?;
        }
        let mut answer = Vec::with_capacity(self.head.len() + 60 + self.body.len());
        answer.extend_from_slice(&self.head);
        write!(answer, "x-request-id: {}\r\n\r\n", uuid::Uuid::new_v4())?;
        answer.extend_from_slice(&self.body);
        stream.write_all(&answer).await?;
        stream.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_files_and_failed_connections_are_told_apart() {
        #[cfg(target_os = "linux")]
        {
            use rustix::io::Errno;
            for (errno, kind) in [
                (Errno::MFILE, AcceptError::ProcessOutOfFiles),
                (Errno::NFILE, AcceptError::SystemOutOfFiles),
                (Errno::NOBUFS, AcceptError::OutOfMemory),
                (Errno::CONNABORTED, AcceptError::Connection),
                (Errno::PROTO, AcceptError::Connection),
            ] {
                let err = io::Error::from_raw_os_error(errno.raw_os_error());
                assert_eq!(AcceptError::of(&err), kind, "{err}");
            }
        }
        let err = io::Error::other("something else");
        assert_eq!(AcceptError::of(&err), AcceptError::Other);
    }

    #[test]
    fn the_busy_answer_is_a_complete_json_503() {
        let answer = BusyAnswer::new();
        let head = String::from_utf8(answer.head.clone()).expect("ASCII head");
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains("retry-after: 1\r\n"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}\r\n", answer.body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON body");
        assert_eq!(body["code"], "server_busy");
        assert_eq!(body["retryAfterSeconds"], 1);
    }
}
