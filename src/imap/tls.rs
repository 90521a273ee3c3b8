//! TLS for IMAP: rustls with the system's roots plus an optional internal CA, or a pin.
//!
//! Certificates are always verified. A site whose Exchange uses a certificate from an internal CA
//! names that CA in `ca_file`; a self-signed server is pinned with `pin_sha256` (see
//! [`super::pin`]); nothing turns verification off. A failed handshake says what to change:
//! an unknown issuer, a certificate for another name, an expired certificate, a changed pin.

use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::config::ServerConfig;

/// Builds the TLS client configuration for a server.
pub fn client_config(server: &ServerConfig) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("set up TLS")?;
    let config = if server.pin_sha256.is_empty() {
        builder.with_root_certificates(roots(server)?)
    } else {
        let verifier = super::pin::PinVerifier::new(&server.pin_sha256, provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
    };
    Ok(Arc::new(config.with_no_client_auth()))
}

/// The system's trust anchors plus `ca_file`.
fn roots(server: &ServerConfig) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A single unusable system certificate must not stop the others from being trusted.
        let _ = roots.add(cert);
    }
    if let Some(path) = &server.ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read ca_file {}", path.display()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.with_context(|| format!("ca_file {} is not valid PEM", path.display()))?;
            roots.add(cert).with_context(|| {
                format!("ca_file {} holds an unusable certificate", path.display())
            })?;
            added += 1;
        }
        anyhow::ensure!(added > 0, "ca_file {} holds no certificate", path.display());
    }
    Ok(roots)
}

/// Wraps a connected socket in TLS, verifying the server's certificate for `host`.
pub async fn wrap(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_string())
        .with_context(|| format!("`{host}` is not a valid TLS server name"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|err| anyhow::anyhow!("TLS handshake with {host} failed: {}", explain(&err, host)))
}

/// What a handshake failure means for the operator.
fn explain(err: &std::io::Error, host: &str) -> String {
    use rustls::CertificateError as Cert;
    let Some(tls) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    else {
        return err.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => {
            "the certificate is issued by an unknown CA; set ca_file to that CA's PEM file, or \
             pin_sha256 to the certificate's pin for a self-signed server"
                .into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForNameContext { presented, .. }) => {
            format!(
                "the certificate is for {}, not {host}; set host to one of those names",
                presented.join(", ")
            )
        }
        rustls::Error::InvalidCertificate(Cert::NotValidForName) => {
            format!("the certificate is not for {host}; set host to the name it was issued for")
        }
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "the certificate has expired; renew it on the server (check the clocks too)".into()
        }
        rustls::Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "the certificate is not valid yet; check this machine's clock".into()
        }
        other => other.to_string(),
    }
}
