//! TLS for IMAP: rustls with the system's roots plus an optional internal CA.
//!
//! Certificates are always verified. A site whose Exchange uses a certificate from an internal CA
//! names that CA in `ca_file`; nothing turns verification off.

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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
        .map_err(|err| {
            anyhow::anyhow!(
            "TLS handshake with {host} failed: {err}; if the server uses a certificate from an \
             internal CA, set ca_file to that CA's PEM file"
        )
        })
}
