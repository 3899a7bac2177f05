//! HTTP/2 and HTTPS from the client's side: a certificate made in the test ([`TestCertificate`],
//! with rcgen), TLS connections that trust it ([`tls_connect`]), and an HTTP/2 connection
//! ([`H2Connection`], the `h2` crate) on which each request is a stream of its own, read chunk
//! by chunk or event by event.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Request, StatusCode};
use bytes::Bytes;
use h2::RecvStream;
use h2::client::SendRequest;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;

/// Longest wait for a frame the server is expected to send: a guard, not a timing.
const GUARD: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM files for
/// `TLS_CERT_FILE` and `TLS_KEY_FILE`.
pub struct TestCertificate {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub der: CertificateDer<'static>,
    _dir: tempfile::TempDir,
}

impl TestCertificate {
    /// Makes a new key and certificate.
    pub fn new() -> Self {
        let made = rcgen::generate_simple_self_signed(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ])
        .expect("a certificate is made");
        let dir = tempfile::tempdir().expect("temp dir");
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, made.cert.pem()).expect("certificate written");
        std::fs::write(&key_file, made.signing_key.serialize_pem()).expect("key written");
        Self {
            cert_file,
            key_file,
            der: made.cert.der().clone(),
            _dir: dir,
        }
    }

    /// `TLS_CERT_FILE` and `TLS_KEY_FILE` for this certificate.
    pub fn settings(&self) -> [(&'static str, &str); 2] {
        [
            (
                "TLS_CERT_FILE",
                self.cert_file.to_str().expect("UTF-8 path"),
            ),
            ("TLS_KEY_FILE", self.key_file.to_str().expect("UTF-8 path")),
        ]
    }

    /// Writes `other`'s certificate and key over this one's files.
    pub fn overwrite_with(&self, other: &TestCertificate) {
        std::fs::copy(&other.cert_file, &self.cert_file).expect("certificate replaced");
        std::fs::copy(&other.key_file, &self.key_file).expect("key replaced");
    }
}

/// A TLS connection to `addr` that trusts `trusted` alone and offers `alpn`.
pub async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> TlsStream<TcpStream> {
    try_tls_connect(addr, trusted, alpn)
        .await
        .expect("TLS handshake")
}

/// Like [`tls_connect`]; a failed handshake (the server's certificate is not `trusted`) is an
/// error.
pub async fn try_tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).expect("a valid root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.expect("connected");
    connector
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
}

/// One HTTP/2 connection; every request is a new stream on it.
pub struct H2Connection {
    sender: SendRequest<Bytes>,
    driver: JoinHandle<Result<(), h2::Error>>,
    authority: String,
    scheme: &'static str,
}

/// A response on one stream, its body still to be read.
pub struct H2Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: RecvStream,
}

impl H2Connection {
    /// HTTP/2 with prior knowledge (h2c) to `addr`.
    pub async fn h2c(addr: SocketAddr) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connected");
        Self::over(tcp, addr, "http").await
    }

    /// HTTP/2 over TLS to `addr`, negotiated by ALPN.
    pub async fn tls(addr: SocketAddr, trusted: &CertificateDer<'static>) -> Self {
        let tls = tls_connect(addr, trusted, &[b"h2"]).await;
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "h2 chosen"
        );
        Self::over(tls, addr, "https").await
    }

    async fn over<T>(io: T, addr: SocketAddr, scheme: &'static str) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = h2::client::handshake(io).await.expect("HTTP/2 handshake");
        Self {
            sender,
            driver: tokio::spawn(connection),
            authority: addr.to_string(),
            scheme,
        }
    }

    /// Sends `GET path` on a new stream and waits for the response head.
    pub async fn get(&mut self, path: &str) -> H2Response {
        self.send("GET", path, None).await
    }

    /// Sends `POST path` with a JSON body on a new stream and waits for the response head.
    pub async fn post_json(&mut self, path: &str, body: &serde_json::Value) -> H2Response {
        self.send("POST", path, Some(Bytes::from(body.to_string())))
            .await
    }

    async fn send(&mut self, method: &str, path: &str, body: Option<Bytes>) -> H2Response {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}://{}{path}", self.scheme, self.authority));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request.body(()).expect("a request");
        let sender = self.sender.clone().ready();
        let mut sender = tokio::time::timeout(GUARD, sender)
            .await
            .expect("a stream may be opened")
            .expect("the connection is open");
        let (response, mut send) = sender
            .send_request(request, body.is_none())
            .expect("stream opened");
        if let Some(body) = body {
            send.send_data(body, true).expect("body sent");
        }
        let response = tokio::time::timeout(GUARD, response)
            .await
            .expect("a response head")
            .expect("a response");
        let (parts, body) = response.into_parts();
        H2Response {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// How many streams the server lets this connection open at once (its SETTINGS).
    pub fn max_concurrent_streams(&self) -> usize {
        self.sender.current_max_send_streams()
    }

    /// Completes when the server has closed the connection (after its GOAWAY).
    pub async fn closed(self) {
        let ended = tokio::time::timeout(GUARD, self.driver)
            .await
            .expect("the server closed the connection");
        drop(ended);
    }
}

impl H2Response {
    /// The next chunk of the body, its window given back; `None` at its end.
    pub async fn chunk(&mut self) -> Option<Bytes> {
        let chunk = tokio::time::timeout(GUARD, self.body.data())
            .await
            .expect("a chunk or the end of the body")?
            .expect("a well-formed body");
        let _ = self.body.flow_control().release_capacity(chunk.len());
        Some(chunk)
    }

    /// The whole body.
    pub async fn bytes(&mut self) -> Vec<u8> {
        let mut all = Vec::new();
        while let Some(chunk) = self.chunk().await {
            all.extend_from_slice(&chunk);
        }
        all
    }

    /// The whole body as JSON.
    pub async fn json(&mut self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await).expect("a JSON body")
    }
}

/// The events of an event stream read over HTTP/2, as the `data:` of each.
pub struct H2Events {
    response: H2Response,
    pending: String,
}

impl H2Events {
    pub fn new(response: H2Response) -> Self {
        assert_eq!(response.status, 200, "event stream opened");
        Self {
            response,
            pending: String::new(),
        }
    }

    /// The next comment (such as a keep-alive), events before it passed over.
    pub async fn next_comment(&mut self) -> String {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                if let Some(comment) = block.lines().find(|line| line.starts_with(':')) {
                    return comment.to_owned();
                }
            }
            let chunk = self.response.chunk().await.expect("the stream goes on");
            self.pending
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }

    /// The `data:` of the next event (comments, such as keep-alives, are passed over).
    pub async fn next_data(&mut self) -> String {
        loop {
            while let Some(end) = self.pending.find("\n\n") {
                let event: String = self.pending.drain(..end + 2).collect();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|line| line.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if !data.is_empty() {
                    return data.join("\n");
                }
            }
            let chunk = self.response.chunk().await.expect("the stream goes on");
            self.pending
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8 events"));
        }
    }
}
