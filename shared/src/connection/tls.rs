//! TLS to the broker: the client's configuration from `[broker.tls]`, and failed handshakes put
//! into words that name the files involved.

use rabbitmq_stream_client::error::ClientError;
use rabbitmq_stream_client::TlsConfiguration;
use rustls::CertificateError;

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use crate::config::pem::{read_certificates, read_pkcs8_key};
use crate::config::TlsSettings;
use crate::error::{Error, Result};

/// The client's TLS configuration for `[broker.tls]`: off when absent; the CA file (and the client
/// certificate) when given. `trust_everything` is the client's "enabled without roots", which
/// verifies neither the broker's certificate, nor its name, nor even the handshake's signature:
/// it warns, once per process.
pub fn tls_configuration(tls: Option<&TlsSettings>) -> Result<TlsConfiguration> {
    let Some(tls) = tls else {
        return Ok(TlsConfiguration::default());
    };
    let mut builder = TlsConfiguration::builder().enable(true);
    if let Some(ca_file) = &tls.ca_file {
        builder = builder.add_root_certificates(ca_file);
    } else if tls.trust_everything {
        warn_trust_everything();
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
        builder = builder.add_client_certificates_keys(cert, key);
    }
    builder
        .build()
        .map_err(|why| Error::Config(format!("broker.tls: {why}")))
}

/// The TLS error inside a client error, if it is one: a failed handshake comes back as an I/O
/// error wrapping it, a client certificate and key that do not match as a generic one.
pub fn tls_error(err: &ClientError) -> Option<&rustls::Error> {
    match err {
        ClientError::Tls(tls) => Some(tls),
        ClientError::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>(),
        ClientError::GenericError(generic) => generic.downcast_ref::<rustls::Error>(),
        _ => None,
    }
}

/// Puts a TLS error into words a user can act on.
pub fn describe_tls_error(err: &rustls::Error) -> String {
    use rustls::Error as Tls;
    match err {
        Tls::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => format!(
            "TLS handshake failed: the broker's certificate is not signed by the CA in \
             broker.tls.ca_file ({err})"
        ),
        Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "TLS handshake failed: the broker's certificate is not valid for the host name \
             connected to; use one its certificate names as broker.host ({err})"
        ),
        Tls::InvalidCertificate(_) => {
            format!("TLS handshake failed: the broker's certificate was rejected ({err})")
        }
        Tls::AlertReceived(_) => format!(
            "TLS handshake failed: the broker refused it ({err}); if it asks for a client \
             certificate, set broker.tls.client_cert_file and broker.tls.client_key_file"
        ),
        Tls::InvalidMessage(_)
        | Tls::InappropriateMessage { .. }
        | Tls::InappropriateHandshakeMessage { .. } => format!(
            "TLS handshake failed: the other end does not speak TLS ({err}); is broker.port the \
             broker's TLS stream listener (stream.listeners.ssl, usually 5551)?"
        ),
        Tls::InconsistentKeys(_) | Tls::NoCertificatesPresented => format!(
            "TLS: broker.tls.client_cert_file and broker.tls.client_key_file do not make a \
             certificate and its key ({err})"
        ),
        other => format!("TLS error: {other}"),
    }
}

/// A failed connection attempt with `[broker.tls]` set, in words naming the files involved;
/// `None` when the failure has nothing to do with TLS.
pub fn describe_tls_connect_error(
    err: &ClientError,
    tls: &TlsSettings,
    endpoint: &str,
) -> Option<String> {
    let ca = match &tls.ca_file {
        Some(path) => format!("broker.tls.ca_file = {}", path.display()),
        None => "broker.tls.trust_everything = true".to_owned(),
    };
    match err {
        err if tls_error(err).is_some() => tls_error(err)
            .map(describe_tls_error)
            .map(|reason| format!("{reason} [{ca}]")),
        // The other end closed the connection in the middle of the TLS handshake.
        ClientError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => Some(format!(
            "TLS handshake failed: {endpoint} closed the connection during it ({io}); is that \
             the broker's TLS stream listener (stream.listeners.ssl, usually 5551)? [{ca}]"
        )),
        // With TLS 1.3 the broker checks the client certificate after the client thinks the
        // handshake is done: a refused certificate looks like a closed connection.
        ClientError::ConnectionClosed => Some(match &tls.client_cert_file {
            Some(cert) => format!(
                "the broker closed the connection right after the TLS handshake: did it refuse \
                 the client certificate (broker.tls.client_cert_file = {}), or are the \
                 credentials or virtual host wrong? [{ca}]",
                cert.display()
            ),
            None => format!(
                "the broker closed the connection right after the TLS handshake: does it require \
                 a client certificate (broker.tls.client_cert_file), or are the credentials or \
                 virtual host wrong? [{ca}]"
            ),
        }),
        _ => None,
    }
}

/// [`rustls_client_config`] of `[broker.tls]` when it is set: TLS for connections of our own.
pub fn rustls_client_config_of(
    broker: &crate::config::BrokerSettings,
) -> Result<Option<Arc<ClientConfig>>> {
    broker.tls.as_ref().map(rustls_client_config).transpose()
}

/// The rustls configuration for `[broker.tls]`, for connections of our own (the consumer's
/// delivery path): the CA file's roots (or, with `trust_everything`, no verification at all,
/// with the same warning as [`tls_configuration`]) and the client certificate when given.
pub fn rustls_client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("broker.tls: {e}")))?;
    let builder = match &tls.ca_file {
        Some(ca_file) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certificates("ca_file", ca_file)? {
                roots.add(cert).map_err(|e| {
                    Error::Config(format!(
                        "broker.tls.ca_file: {} holds a certificate not usable as a CA: {e}",
                        ca_file.display()
                    ))
                })?;
            }
            builder.with_root_certificates(roots)
        }
        // Validation refuses a missing CA file without trust_everything.
        None => {
            warn_trust_everything();
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(TrustEverything(provider)))
        }
    };
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => builder
            .with_client_auth_cert(
                read_certificates("client_cert_file", cert)?,
                read_pkcs8_key(key)?,
            )
            .map_err(|e| {
                Error::Config(format!(
                    "broker.tls.client_cert_file and client_key_file: {}",
                    describe_tls_error(&e)
                ))
            })?,
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The warning `trust_everything` deserves, once per process.
fn warn_trust_everything() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "broker.tls.trust_everything = true: the broker's certificate is NOT verified, \
             anyone on the way can pose as the broker; for development only, set \
             broker.tls.ca_file instead"
        )
    });
}

/// `trust_everything`: accepts any certificate for any name (development only).
#[derive(Debug)]
struct TrustEverything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for TrustEverything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
