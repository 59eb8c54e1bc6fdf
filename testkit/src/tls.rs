//! TLS against the local broker: the port of its TLS stream listener, the throw-away CA and client
//! certificate `scripts/broker.sh up` made for it, settings that reach it, and a CA that signed
//! nothing of it.

use std::path::{Path, PathBuf};
use std::process::Command;

use shared::config::{BrokerSettings, TlsSettings};

use crate::broker::broker_root;

/// The port of the local broker's TLS stream listener (`scripts/broker.sh up` sets it up).
pub const TLS_PORT: u16 = 5551;

/// The throw-away TLS files `scripts/broker.sh up` made for the local broker's TLS listener.
pub struct BrokerTls {
    /// The CA that signed the broker's certificate (and the client's).
    pub ca_file: PathBuf,
    /// A client certificate the broker accepts.
    pub client_cert_file: PathBuf,
    /// Its key, in PKCS#8.
    pub client_key_file: PathBuf,
}

/// The local broker's TLS files, or a panic saying how to get them: tests never skip silently.
pub fn broker_tls() -> BrokerTls {
    let dir = broker_root().join("etc/rabbitmq/tls");
    let tls = BrokerTls {
        ca_file: dir.join("ca.pem"),
        client_cert_file: dir.join("client.pem"),
        client_key_file: dir.join("client-key.pem"),
    };
    for file in [&tls.ca_file, &tls.client_cert_file, &tls.client_key_file] {
        assert!(
            file.is_file(),
            "TLS tests need the local broker's TLS listener and its throw-away CA, but {} is \
             missing: run `scripts/broker.sh up` (it adds them; `scripts/broker.sh status` says \
             where they are)",
            file.display()
        );
    }
    tls
}

/// The test broker's TLS stream listener (localhost:5551), trusting the local broker's CA.
pub fn tls_broker() -> BrokerSettings {
    BrokerSettings {
        port: TLS_PORT,
        tls: Some(TlsSettings {
            ca_file: Some(broker_tls().ca_file),
            ..Default::default()
        }),
        ..crate::broker::broker()
    }
}

/// A freshly made, self-signed CA certificate that signed nothing the broker has, written to
/// `dir`: made with the host's `openssl`, or the broker root's when the host has none.
pub fn unrelated_ca(dir: &Path) -> PathBuf {
    let args = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=unrelated test CA",
        "-days",
        "1",
    ];
    let out = match Command::new("openssl").args(args).output() {
        Ok(out) => out,
        Err(_) => Command::new("chroot")
            .arg(broker_root())
            .arg("openssl")
            .args(args)
            .output()
            .unwrap(),
    };
    assert!(
        out.status.success() && out.stdout.starts_with(b"-----BEGIN CERTIFICATE-----"),
        "openssl could not make a CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("unrelated-ca.pem");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}
