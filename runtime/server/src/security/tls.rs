//! TLS for the Kafka listeners and the admin listener (rustls with the
//! aws-lc provider, TLS 1.2 and 1.3).
//!
//! Three server configurations come from one certificate and key: without
//! client certificates (admin API, and Kafka listeners when no client CA is
//! set), requiring one (SSL listeners with `tls-client-ca`: mTLS) and
//! accepting one (SASL_SSL listeners with `tls-client-ca`, which
//! authenticate with SASL).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::settings::{SecurityProtocol, SecuritySettings};

/// A TLS file that cannot be used. Not retriable: the file or the settings
/// have to change.
#[derive(Debug, thiserror::Error)]
#[error("TLS: {path}: {reason}")]
pub struct TlsError {
    /// The file (certificate, key or CA).
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

fn err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The broker's TLS acceptors.
#[derive(Clone)]
pub struct Tls {
    plain: TlsAcceptor,
    client_required: Option<TlsAcceptor>,
    client_optional: Option<TlsAcceptor>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(path, e))?;
    if certs.is_empty() {
        return Err(err(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

impl Tls {
    /// Loads the certificate, key and client CA the settings name; `None`
    /// when no certificate is set (validation made sure nothing needs one).
    pub fn load(s: &SecuritySettings) -> Result<Option<Tls>, TlsError> {
        let (Some(cert_path), Some(key_path)) = (&s.tls_cert, &s.tls_key) else {
            return Ok(None);
        };
        let chain = certs(cert_path)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| err(key_path, e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = |verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>| {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| err(cert_path, e))?;
            let builder = match verifier {
                Some(v) => builder.with_client_cert_verifier(v),
                None => builder.with_no_client_auth(),
            };
            builder
                .with_single_cert(chain.clone(), key.clone_key())
                .map(|c| TlsAcceptor::from(Arc::new(c)))
                .map_err(|e| err(cert_path, format!("certificate and key do not fit: {e}")))
        };
        let plain = config(None)?;
        let (client_required, client_optional) = match &s.tls_client_ca {
            None => (None, None),
            Some(ca_path) => {
                let mut roots = RootCertStore::empty();
                for c in certs(ca_path)? {
                    roots.add(c).map_err(|e| err(ca_path, e))?;
                }
                let roots = Arc::new(roots);
                let required =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .build()
                        .map_err(|e| err(ca_path, e))?;
                let optional = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| err(ca_path, e))?;
                (Some(config(Some(required))?), Some(config(Some(optional))?))
            }
        };
        Ok(Some(Tls {
            plain,
            client_required,
            client_optional,
        }))
    }

    /// The acceptor for a Kafka listener speaking `protocol` (`None` for
    /// the protocols without TLS).
    pub fn for_kafka(&self, protocol: SecurityProtocol) -> Option<TlsAcceptor> {
        match protocol {
            SecurityProtocol::Ssl => Some(self.client_required.as_ref().unwrap_or(&self.plain)),
            SecurityProtocol::SaslSsl => Some(self.client_optional.as_ref().unwrap_or(&self.plain)),
            SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext => None,
        }
        .cloned()
    }

    /// The acceptor for the admin listener (no client certificates).
    pub fn for_admin(&self) -> TlsAcceptor {
        self.plain.clone()
    }
}

/// The principal of a TLS client: `User:<certificate subject>`, or `None`
/// without a client certificate.
pub fn client_principal(conn: &rustls::ServerConnection) -> Option<String> {
    let cert = conn.peer_certificates()?.first()?;
    match vigil_auth::x509::subject(cert.as_ref()) {
        Ok(subject) => Some(format!("User:{subject}")),
        Err(e) => {
            // rustls verified the certificate, so this is our DER walk
            // meeting something it does not know; the client stays
            // anonymous rather than being refused.
            tracing::warn!(error = %e, "cannot read a client certificate's subject");
            None
        }
    }
}
