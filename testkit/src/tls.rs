//! A throwaway certificate authority for TLS tests, made with the `openssl` tool.
//!
//! rustls refuses a self-signed CA certificate used directly as a server certificate, so
//! [`TestCa`] makes what a real site has: a CA and a leaf (`CA:FALSE`, `serverAuth`, SAN
//! `DNS:imap.postroom.test, IP:127.0.0.1`) signed by it. Pins are computed by `openssl` too, so
//! a test that compares them with postroom's own computation checks two implementations
//! against each other. The files live in a temporary directory deleted with the value.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

/// The DNS name in the leaf certificate, besides `IP:127.0.0.1`.
pub const LEAF_DNS_NAME: &str = "imap.postroom.test";

/// A CA and one server certificate it signed.
#[derive(Debug)]
pub struct TestCa {
    dir: TempDir,
}

impl TestCa {
    /// Makes a fresh CA and leaf (P-256 keys, valid for two days).
    pub fn new() -> Result<TestCa> {
        let dir = tempfile::Builder::new().prefix("postroom-ca-").tempdir()?;
        let ext = format!(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=DNS:{LEAF_DNS_NAME},IP:127.0.0.1\n"
        );
        std::fs::write(dir.path().join("leaf.ext"), ext)?;
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=postroom test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "leaf.key",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=imap.postroom.test",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        ];
        for args in steps {
            openssl(dir.path(), args)?;
        }
        Ok(TestCa { dir })
    }

    /// The CA certificate (PEM): what `ca_file` points at.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server certificate (PEM).
    pub fn leaf_pem(&self) -> PathBuf {
        self.dir.path().join("leaf.pem")
    }

    /// The server's private key (PEM).
    pub fn leaf_key(&self) -> PathBuf {
        self.dir.path().join("leaf.key")
    }

    /// The base64 SHA-256 of the leaf's SubjectPublicKeyInfo, as `openssl` computes it.
    pub fn spki_pin(&self) -> Result<String> {
        pipeline(
            self.dir.path(),
            "openssl x509 -in leaf.pem -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | openssl base64 -A",
        )
    }

    /// The hex SHA-256 of the whole leaf certificate (DER), as `openssl` computes it.
    pub fn cert_sha256_hex(&self) -> Result<String> {
        pipeline(
            self.dir.path(),
            "openssl x509 -in leaf.pem -outform der | openssl dgst -sha256 -r | cut -d' ' -f1",
        )
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run openssl (apt-get install openssl)")?;
    if !output.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn pipeline(dir: &Path, script: &str) -> Result<String> {
    let output = Command::new("sh")
        .args(["-c", &format!("set -e; {script}")])
        .current_dir(dir)
        .output()
        .context("cannot run sh")?;
    if !output.status.success() {
        bail!(
            "`{script}` failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}
