//! Checks `listen.tls` files the way the listener will load them, so a wrong file is a config
//! error naming it (exit 2 from `check` and `run`) and not a panic inside pingora's listener
//! (it panics when a certificate or key cannot be loaded). `storage.tls` (NATS) files get the
//! same checks, so they fail at `check` rather than at the first connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Which file a problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
}

/// Loads the certificate chain and the key as PEM and checks that they belong together.
pub fn check(cert: &Path, key: &Path) -> Result<(), (TlsFile, String)> {
    let shown = |p: &Path| format!("{:?}", p.display().to_string());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| {
            (
                TlsFile::Cert,
                format!("{} is not a PEM certificate file: {e}", shown(cert)),
            )
        })?;
    if chain.is_empty() {
        return Err((
            TlsFile::Cert,
            format!(
                "{} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)",
                shown(cert)
            ),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        (
            TlsFile::Key,
            format!("{} holds no PEM private key: {e}", shown(key)),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| (TlsFile::Key, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| {
            (
                TlsFile::Key,
                format!(
                    "{} does not fit the certificate in {}: {e}",
                    shown(key),
                    shown(cert)
                ),
            )
        })?;
    Ok(())
}

/// Loads a PEM file of certificates to trust (`storage.tls.ca`); it must hold at least one.
pub fn check_ca(ca: &Path) -> Result<(), String> {
    let shown = format!("{:?}", ca.display().to_string());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("{shown} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----`)"
        ));
    }
    Ok(())
}
