//! `[broker.tls]`: the TLS settings and the rules for which files go together; what the files
//! hold is checked by the `pem` module.

use std::path::PathBuf;

use serde::Deserialize;

use super::pem::{check_pkcs8_key, read_certificates};
use crate::error::{Error, Result};

/// `[broker.tls]`: TLS to the broker's TLS stream listener (RabbitMQ's `stream.listeners.ssl`,
/// usually port 5551: set `broker.port` too). Relative paths are relative to the working directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) the broker's certificate must be signed by.
    pub ca_file: Option<PathBuf>,
    /// PEM file with a client certificate, for a broker that asks for one; needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM file with the client certificate's key, unencrypted PKCS#8 (`BEGIN PRIVATE KEY`).
    pub client_key_file: Option<PathBuf>,
    /// Development only: encrypt but verify nothing about the broker (no CA, no host name), so
    /// anyone on the way can pose as it. Logs a warning when used; excludes `ca_file`.
    pub trust_everything: bool,
}

impl TlsSettings {
    /// Rejects a TLS set-up the client would refuse, panic on, or silently weaken: which files
    /// go together, that each exists and holds what the client reads, and that `host` can be
    /// checked against the broker's certificate.
    pub fn validate(&self, host: &str) -> Result<()> {
        let invalid =
            |key: &str, why: String| Err(Error::Config(format!("broker.tls.{key}: {why}")));
        if rustls::pki_types::ServerName::try_from(host).is_err() {
            return Err(Error::Config(format!(
                "broker.host: '{host}' is neither a DNS name nor an IP address, which TLS needs \
                 to check the broker's certificate"
            )));
        }
        match (&self.ca_file, self.trust_everything) {
            (None, false) => {
                return invalid(
                    "ca_file",
                    "missing: name the CA that signed the broker's certificate (or, for \
                     development only, set broker.tls.trust_everything = true)"
                        .into(),
                )
            }
            (Some(_), true) => {
                return invalid(
                    "trust_everything",
                    "true verifies nothing, so it cannot go with broker.tls.ca_file: remove one"
                        .into(),
                )
            }
            _ => {}
        }
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => {
                return invalid(
                    "client_key_file",
                    "missing: client_cert_file needs it".into(),
                )
            }
            (None, Some(_)) => {
                return invalid(
                    "client_cert_file",
                    "missing: client_key_file needs it".into(),
                )
            }
            (Some(_), Some(_)) if self.trust_everything => {
                return invalid(
                    "client_cert_file",
                    "the client presents a certificate only when it verifies the broker's: \
                     set ca_file instead of trust_everything"
                        .into(),
                )
            }
            _ => {}
        }
        if let Some(path) = &self.ca_file {
            let certs = read_certificates("ca_file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for (i, cert) in certs.into_iter().enumerate() {
                if let Err(e) = roots.add(cert) {
                    return invalid(
                        "ca_file",
                        format!(
                            "certificate {} in {} is not usable as a CA: {e}",
                            i + 1,
                            path.display()
                        ),
                    );
                }
            }
        }
        if let Some(path) = &self.client_cert_file {
            read_certificates("client_cert_file", path)?;
        }
        if let Some(path) = &self.client_key_file {
            check_pkcs8_key(path)?;
        }
        Ok(())
    }
}
