//! Certificate pinning for a self-signed on-premises Exchange.
//!
//! Many on-premises Exchange servers still present the self-signed certificate setup made, or
//! one from an internal CA nobody can export. `pin_sha256` trusts exactly one key instead: the
//! SHA-256 of the certificate's SubjectPublicKeyInfo (survives a renewal with the same key) or
//! of the whole certificate, in base64 or hex. With a pin, the chain, the name and the dates
//! are not checked: the pin is a stronger statement than any of them. The handshake signature
//! is still verified, so only the holder of the pinned key can complete it.

use std::sync::Arc;

use anyhow::{bail, Result};
use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// Accepts a server whose end-entity certificate matches a pin.
#[derive(Debug)]
pub struct PinVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl PinVerifier {
    /// A verifier for these pins (see [`parse_pin`]); errors name the pin that is malformed.
    pub fn new(pins: &[String], provider: Arc<CryptoProvider>) -> Result<PinVerifier> {
        let pins = pins.iter().map(|p| parse_pin(p)).collect::<Result<_>>()?;
        Ok(PinVerifier { pins, provider })
    }
}

/// Reads a pin: 64 hex digits (colons allowed, as openssl prints them) or 32 bytes in base64.
pub fn parse_pin(text: &str) -> Result<[u8; 32]> {
    let compact: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes = if compact.len() == 64 && compact.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&compact[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| anyhow::anyhow!("pin_sha256 `{text}` is neither hex nor base64"))?
    };
    match <[u8; 32]>::try_from(bytes) {
        Ok(pin) => Ok(pin),
        Err(_) => bail!("pin_sha256 `{text}` is not a SHA-256 (32 bytes)"),
    }
}

/// The base64 SHA-256 of a certificate's public key: what to write in `pin_sha256`.
pub fn spki_pin(cert: &[u8]) -> Option<String> {
    let spki = spki(cert)?;
    Some(base64::engine::general_purpose::STANDARD.encode(Sha256::digest(spki)))
}

/// The DER SubjectPublicKeyInfo inside a DER certificate (RFC 5280 4.1): the seventh field of
/// tbsCertificate, counting the optional `[0]` version.
fn spki(cert: &[u8]) -> Option<&[u8]> {
    let (_, certificate, _) = der_element(cert)?;
    let (_, tbs, _) = der_element(certificate)?;
    let mut rest = tbs;
    let mut index = 0;
    while !rest.is_empty() {
        let (tag, _, whole) = der_element(rest)?;
        let field = if index == 0 && tag != 0xa0 { 1 } else { index };
        if field == 6 {
            return Some(whole);
        }
        index = field + 1;
        rest = &rest[whole.len()..];
    }
    None
}

/// One DER element at the start of `data`: (tag, contents, the whole element).
fn der_element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *data.first()?;
    let first = *data.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = data.get(2..2 + count)?;
        let len = bytes.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        (len, 2 + count)
    };
    let end = header.checked_add(len)?;
    Some((tag, data.get(header..end)?, data.get(..end)?))
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let whole: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        let key: Option<[u8; 32]> = spki(end_entity).map(|s| Sha256::digest(s).into());
        if self.pins.iter().any(|p| *p == whole || Some(*p) == key) {
            return Ok(ServerCertVerified::assertion());
        }
        let presented = spki_pin(end_entity).unwrap_or_else(|| "(unreadable)".into());
        Err(rustls::Error::General(format!(
            "the server's certificate matches no pin_sha256 (its key's pin is {presented}); \
             if the server's certificate was replaced on purpose, update pin_sha256"
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_read_as_hex_or_base64() {
        let bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
        let hex: String = bytes.iter().map(|b| format!("{b:02X}")).collect();
        let colons: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let cases = [
            (hex.clone(), Some(bytes)),
            (colons.join(":"), Some(bytes)),
            (b64, Some(bytes)),
            ("abcd".to_string(), None),
            (hex[..62].to_string(), None),
            ("not a pin!".to_string(), None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_pin(&text).ok(), expected, "for {text}");
        }
    }

    #[test]
    fn der_lengths_in_short_and_long_form() {
        let short = [0x30, 0x02, 0x05, 0x00, 0xff];
        assert_eq!(der_element(&short), Some((0x30, &short[2..4], &short[..4])));
        let mut long = vec![0x04, 0x81, 0x80];
        long.extend([7u8; 0x80]);
        let (tag, contents, whole) = der_element(&long).unwrap();
        assert_eq!((tag, contents.len(), whole.len()), (0x04, 0x80, 0x83));
        assert_eq!(der_element(&[0x30, 0x05, 0x00]), None, "truncated");
    }
}
