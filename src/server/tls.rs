//! HTTPS: the certificate, the rustls configuration and its reload on `SIGHUP`.
//!
//! The certificate comes from `TLS_CERT_FILE` and `TLS_KEY_FILE` (PEM), or, with
//! `TLS_SELF_SIGNED=true` in development, is made at start-up for `localhost`. rustls runs on
//! its `ring` provider (built with a C compiler alone), speaks TLS 1.3 and 1.2, and offers
//! HTTP/2 and HTTP/1.1 by ALPN.
//!
//! Handshakes ask [`CertificateStore`] for the certificate, so a reload swaps it for the
//! handshakes that follow and touches no open connection. A reload that fails (a file missing,
//! a key that does not match) keeps the certificate in use and says why in the log; at
//! start-up the same failure stops the server with one line naming the file.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use crate::app::StartupError;
use crate::config::TlsSource;
use crate::shutdown::Shutdown;

/// ALPN protocols offered, in the server's order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The value of `Strict-Transport-Security` on every HTTPS answer: a year, this host only.
pub(super) const HSTS: &str = "max-age=31536000";

/// Names the self-signed certificate is made for.
const SELF_SIGNED_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The certificate handshakes are answered with; replaced whole on a reload.
#[derive(Debug)]
struct CertificateStore {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// HTTPS for one server: the acceptor every connection's handshake goes through, and what a
/// reload needs.
#[derive(Clone)]
pub(super) struct Tls {
    acceptor: TlsAcceptor,
    store: Arc<CertificateStore>,
    source: TlsSource,
}

impl Tls {
    /// Loads the certificate of `source`; a missing or bad file is a [`StartupError`] naming it.
    pub(super) async fn load(source: &TlsSource) -> Result<Self, StartupError> {
        let key = certified_key(source).await.map_err(StartupError::from)?;
        let store = Arc::new(CertificateStore {
            current: RwLock::new(Arc::new(key)),
        });
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(|err| tls_error("TLS_CERT_FILE", err.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(store.clone());
        config.alpn_protocols = ALPN.iter().map(|protocol| protocol.to_vec()).collect();
        // Stateless session tickets: a returning client resumes without a full handshake.
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|err| tls_error("TLS_CERT_FILE", err.to_string()))?;
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            store,
            source: source.clone(),
        })
    }

    pub(super) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reads the certificate files again and serves the new certificate to the handshakes that
    /// follow; keeps the current one if they cannot be loaded.
    async fn reload(&self) {
        match certified_key(&self.source).await {
            Ok(key) => {
                *self
                    .store
                    .current
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!("TLS certificate reloaded");
            }
            Err(err) => {
                tracing::error!(error = %err, "TLS certificate not reloaded; the current one stays");
            }
        }
    }

    /// Reloads the certificate on every `SIGHUP` until the stop signal.
    pub(super) async fn reload_on_hangup(self, shutdown: Shutdown) {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; the TLS certificate will not be reloaded");
            return;
        };
        loop {
            tokio::select! {
                received = hangups.recv() => {
                    if received.is_none() {
                        return;
                    }
                    self.reload().await;
                }
                () = shutdown.wait() => return,
            }
        }
    }
}

/// rustls' `ring` provider, the only one built.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate could not be loaded: the variable, the file and the cause.
#[derive(Debug)]
struct TlsLoadError {
    var: &'static str,
    path: Option<PathBuf>,
    message: String,
}

impl std::fmt::Display for TlsLoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} {}: {}", self.var, path.display(), self.message),
            None => write!(f, "{}: {}", self.var, self.message),
        }
    }
}

impl From<TlsLoadError> for StartupError {
    fn from(err: TlsLoadError) -> Self {
        StartupError::Component {
            component: "HTTPS",
            message: err.to_string(),
        }
    }
}

fn tls_error(var: &'static str, message: String) -> TlsLoadError {
    TlsLoadError {
        var,
        path: None,
        message,
    }
}

/// The certificate chain and key of `source`, checked against each other.
async fn certified_key(source: &TlsSource) -> Result<CertifiedKey, TlsLoadError> {
    let (chain, key) = match source {
        TlsSource::Files { cert, key } => {
            let chain = read_pem(cert.clone(), "TLS_CERT_FILE", |pem| {
                CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|err| err.to_string())
                    .and_then(|chain| {
                        if chain.is_empty() {
                            Err("no CERTIFICATE block in the file".to_owned())
                        } else {
                            Ok(chain)
                        }
                    })
            })
            .await?;
            let key = read_pem(key.clone(), "TLS_KEY_FILE", |pem| {
                PrivateKeyDer::from_pem_slice(pem).map_err(|err| err.to_string())
            })
            .await?;
            (chain, key)
        }
        TlsSource::SelfSigned => self_signed()?,
    };
    let key_path = match source {
        TlsSource::Files { key, .. } => Some(key.clone()),
        TlsSource::SelfSigned => None,
    };
    CertifiedKey::from_der(chain, key, &provider()).map_err(|err| TlsLoadError {
        var: "TLS_KEY_FILE",
        path: key_path,
        message: format!("{err} (is it the key of TLS_CERT_FILE's certificate?)"),
    })
}

/// Reads `path` off the runtime and parses it with `parse`.
async fn read_pem<T: Send + 'static>(
    path: PathBuf,
    var: &'static str,
    parse: impl FnOnce(&[u8]) -> Result<T, String> + Send + 'static,
) -> Result<T, TlsLoadError> {
    let shown = path.clone();
    let read = tokio::task::spawn_blocking(move || {
        let bytes = std::fs::read(&path).map_err(|err| err.to_string())?;
        parse(&bytes)
    })
    .await
    .unwrap_or_else(|err| Err(err.to_string()));
    read.map_err(|message| TlsLoadError {
        var,
        path: Some(shown),
        message,
    })
}

/// A certificate for `localhost`, its loopback addresses and nothing else, made now. Its
/// SHA-256 public-key fingerprint is logged, for browsers told to trust it
/// (`--ignore-certificate-errors-spki-list`).
fn self_signed() -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsLoadError> {
    let names = SELF_SIGNED_NAMES.map(str::to_owned).to_vec();
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|err| tls_error("TLS_SELF_SIGNED", err.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&made.signing_key);
    tracing::warn!(
        names = ?SELF_SIGNED_NAMES,
        spki_sha256 = %spki_fingerprint(&spki),
        "serving HTTPS with a self-signed certificate made at start-up (development only)"
    );
    let key = PrivateKeyDer::try_from(made.signing_key.serialize_der())
        .map_err(|err| tls_error("TLS_SELF_SIGNED", err.to_owned()))?;
    Ok((vec![made.cert.der().clone()], key))
}

/// The base64 of the SHA-256 of a DER `SubjectPublicKeyInfo`, as Chromium's
/// `--ignore-certificate-errors-spki-list` takes it.
fn spki_fingerprint(spki_der: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki_der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_file_is_named_in_one_line() {
        let source = TlsSource::Files {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let Err(err) = Tls::load(&source).await else {
            panic!("a missing certificate file is refused");
        };
        let line = err.to_string();
        assert!(line.contains("TLS_CERT_FILE"), "{line}");
        assert!(line.contains("/nonexistent/cert.pem"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[tokio::test]
    async fn a_self_signed_certificate_is_made_and_loaded() {
        let tls = Tls::load(&TlsSource::SelfSigned).await.expect("loads");
        let key = tls.store.current.read().expect("not poisoned").clone();
        assert_eq!(key.cert.len(), 1);
        key.keys_match().expect("the key is the certificate's");
    }
}
