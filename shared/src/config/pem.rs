//! Inspecting the TLS files `[broker.tls]` names, before the client reads them: the client panics
//! on a key file that is not PKCS#8 and says little about a bad certificate file.

use std::path::Path;

use crate::error::{Error, Result};

/// The certificates in the PEM file `path`, at least one, or an error naming `key`.
pub(crate) fn read_certificates(
    key: &str,
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let invalid = |why: String| Error::Config(format!("broker.tls.{key}: {why}"));
    if !path.is_file() {
        return Err(invalid(format!("{} does not exist", path.display())));
    }
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// Checks that `path` holds an unencrypted PKCS#8 key: the client reads no other format (and
/// panics on a file without one).
pub(crate) fn check_pkcs8_key(path: &Path) -> Result<()> {
    use rustls::pki_types::pem::PemObject;
    let invalid = |why: String| Err(Error::Config(format!("broker.tls.client_key_file: {why}")));
    if !path.is_file() {
        return invalid(format!("{} does not exist", path.display()));
    }
    let first = rustls::pki_types::PrivatePkcs8KeyDer::pem_file_iter(path)
        .map_err(|e| e.to_string())
        .and_then(|mut keys| keys.next().transpose().map_err(|e| e.to_string()));
    match first {
        Ok(Some(_)) => Ok(()),
        Err(e) => invalid(format!("cannot read {}: {e}", path.display())),
        Ok(None) => {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let found = [
                ("-----BEGIN RSA PRIVATE KEY-----", "a PKCS#1 RSA key"),
                ("-----BEGIN EC PRIVATE KEY-----", "a SEC1 EC key"),
                (
                    "-----BEGIN ENCRYPTED PRIVATE KEY-----",
                    "an encrypted PKCS#8 key",
                ),
            ]
            .into_iter()
            .find(|(header, _)| text.contains(header))
            .map_or("no private key", |(_, what)| what);
            invalid(format!(
                "{} holds {found}, but the client reads only unencrypted PKCS#8 keys \
                 (-----BEGIN PRIVATE KEY-----); convert it with \
                 `openssl pkcs8 -topk8 -nocrypt -in {0} -out {0}.pk8`",
                path.display()
            ))
        }
    }
}

/// The unencrypted PKCS#8 key in `path` (checked by [`check_pkcs8_key`] first).
pub(crate) fn read_pkcs8_key(path: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    check_pkcs8_key(path)?;
    rustls::pki_types::PrivatePkcs8KeyDer::from_pem_file(path)
        .map(Into::into)
        .map_err(|e| {
            Error::Config(format!(
                "broker.tls.client_key_file: cannot read {}: {e}",
                path.display()
            ))
        })
}
