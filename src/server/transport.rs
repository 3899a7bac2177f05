//! What sits between a socket and hyper: the write-stall deadline, and telling HTTP/2 from
//! HTTP/1.1 on the plain port.
//!
//! [`StallGuard`] closes a connection whose peer has stopped taking bytes: a write that cannot
//! go on (the peer's window and the kernel's buffers are full) starts a timer, any progress
//! drops it, and when it fires the write fails, which ends the connection. It costs an idle or
//! flowing connection nothing but a pointer: the timer exists only while a write waits.
//!
//! [`sniff`] looks at the first bytes a plain connection sends without taking them off the
//! socket: the HTTP/2 connection preface (`PRI * HTTP/2.0`, which no HTTP/1.1 request starts
//! with) means h2c with prior knowledge; anything else is HTTP/1.1, handed to hyper's HTTP/1.1
//! server exactly as before, with no buffer in between.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use metrics::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The HTTP/2 client connection preface (RFC 9113, section 3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Pause between two looks at a connection whose first bytes are a part of the preface only.
const SNIFF_RETRY: Duration = Duration::from_millis(5);

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// Waits for the first bytes of `stream` and tells which protocol they start; they stay on
/// the socket for hyper to read. A connection closed before sending anything is an error.
pub(super) async fn sniff(stream: &TcpStream) -> io::Result<Protocol> {
    let mut first = [0u8; PREFACE.len()];
    loop {
        let n = stream.peek(&mut first).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if first[..n] != PREFACE[..n] {
            return Ok(Protocol::Http1);
        }
        if n == PREFACE.len() {
            return Ok(Protocol::Http2);
        }
        // A part of the preface: the rest is on its way (a peek would see the same bytes at
        // once, so wait a moment). The first-request deadline bounds how long.
        tokio::time::sleep(SNIFF_RETRY).await;
    }
}

/// The deadline of a stalled write, and the count of connections it closed.
pub(super) struct StallPolicy {
    pub(super) deadline: Duration,
    pub(super) closed: Counter,
}

pin_project_lite::pin_project! {
    /// A connection's socket whose writes fail once they have waited [`StallPolicy::deadline`]
    /// without progress.
    pub(super) struct StallGuard<I> {
        #[pin]
        io: I,
        policy: Arc<StallPolicy>,
        stalled: Option<Pin<Box<Sleep>>>,
    }
}

impl<I> StallGuard<I> {
    pub(super) fn new(io: I, policy: Arc<StallPolicy>) -> Self {
        Self {
            io,
            policy,
            stalled: None,
        }
    }

    pub(super) fn get_ref(&self) -> &I {
        &self.io
    }
}

/// What a write's poll becomes: progress drops the timer; no progress starts it, or fails the
/// write once it has fired.
fn watched<T>(
    poll: Poll<io::Result<T>>,
    stalled: &mut Option<Pin<Box<Sleep>>>,
    policy: &StallPolicy,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    if poll.is_ready() {
        *stalled = None;
        return poll;
    }
    let timer = stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(policy.deadline)));
    ready!(timer.as_mut().poll(cx));
    *stalled = None;
    policy.closed.increment(1);
    Poll::Ready(Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "the peer took no byte of the response within WRITE_STALL_TIMEOUT_SECONDS",
    )))
}

impl<I: AsyncRead> AsyncRead for StallGuard<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for StallGuard<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write(cx, buf);
        watched(poll, this.stalled, this.policy, cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let poll = this.io.poll_write_vectored(cx, bufs);
        watched(poll, this.stalled, this.policy, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.io.poll_flush(cx);
        watched(poll, this.stalled, this.policy, cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.io.poll_shutdown(cx);
        watched(poll, this.stalled, this.policy, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_deadline_fails_and_progress_resets_it() {
        let (near, mut far) = tokio::io::duplex(16);
        let policy = Arc::new(StallPolicy {
            deadline: Duration::from_secs(3),
            closed: Counter::noop(),
        });
        let mut guarded = StallGuard::new(near, policy);
        guarded.write_all(&[1; 16]).await.expect("fits the buffer");
        // The buffer is full; the peer takes a little before the deadline: no failure.
        let write =
            tokio::spawn(async move { guarded.write_all(&[2; 32]).await.map(|()| guarded) });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut taken = [0; 16];
        far.read_exact(&mut taken).await.expect("read");
        tokio::time::sleep(Duration::from_secs(2)).await;
        far.read_exact(&mut taken).await.expect("read");
        let mut guarded = write
            .await
            .expect("no panic")
            .expect("progress kept it alive");
        far.read_exact(&mut taken).await.expect("read");
        // Now the peer stops reading: the write fails at the deadline.
        guarded
            .write_all(&[3; 16])
            .await
            .expect("the buffer has room for one");
        let err = guarded.write_all(&[4; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn the_preface_is_told_from_an_http1_request_and_stays_on_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        for (sent, expected) in [
            (&PREFACE[..], Protocol::Http2),
            (b"GET / HTTP/1.1\r\n\r\n", Protocol::Http1),
            (b"PRIX", Protocol::Http1),
        ] {
            let mut client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            client.write_all(sent).await.expect("send");
            assert_eq!(sniff(&server).await.expect("sniffed"), expected);
            let mut kept = vec![0; sent.len()];
            let mut server = server;
            server.read_exact(&mut kept).await.expect("still there");
            assert_eq!(kept, sent);
        }
    }
}
