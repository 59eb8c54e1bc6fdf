//! The configuration: `config.toml` (or `--config PATH`), overridden by `OFFSET_TRACKING__<SECTION>__<KEY>`
//! environment variables, read into typed, validated settings.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::offset_spec::OffsetSpec;

/// Prefix of the environment variables that override the file, e.g. `OFFSET_TRACKING__STREAM__NAME`.
pub const ENV_PREFIX: &str = "OFFSET_TRACKING";

/// Most partitions a super stream may have here.
pub const MAX_PARTITIONS: u32 = 1000;

/// The file read when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "config.toml";

/// All settings, one field per `config.toml` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// `[broker]`: where and how to connect.
    pub broker: BrokerSettings,
    /// `[stream]`: the stream and its retention.
    pub stream: StreamSettings,
    /// `[producer]`: the wave to publish.
    pub producer: ProducerSettings,
    /// `[consumer]`: who consumes and from where.
    pub consumer: ConsumerSettings,
    /// `[tracker]`: how often offsets are stored.
    pub tracker: TrackerSettings,
    /// `[metrics]`: the consumer's Prometheus endpoint.
    pub metrics: MetricsSettings,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve Prometheus metrics on this address (e.g. "127.0.0.1:9464"); off when absent.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[broker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// Host of the broker's stream listener.
    pub host: String,
    /// Port of the broker's stream listener (5552 by default).
    pub port: u16,
    /// User name.
    pub username: String,
    /// Password; never printed.
    pub password: Secret,
    /// Virtual host.
    pub virtual_host: String,
    /// How long to wait for a connection to open.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Behind a load balancer: the client connects again and again until it lands on the node
    /// it wants (the stream's leader or a replica). Bounded here by `connect_timeout` × 3 per
    /// producer or consumer (the client's own loop has no bound).
    pub load_balancer_mode: bool,
    /// Heartbeat interval asked of the broker; a link silent for 4 heartbeats is dead.
    #[serde(with = "humantime_serde")]
    pub heartbeat: Duration,
    /// `[broker.tls]`: TLS to the broker's TLS stream listener; absent (the default), plain TCP.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Several nodes of a cluster, as `"host:port"`: each connection tries them in order until one
    /// answers. When set, it replaces `host` and `port`.
    pub hosts: Vec<String>,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 5552,
            username: "guest".into(),
            password: Secret("guest".into()),
            virtual_host: "/".into(),
            connect_timeout: Duration::from_secs(10),
            load_balancer_mode: false,
            heartbeat: Duration::from_secs(10),
            tls: None,
            hosts: Vec::new(),
        }
    }
}

/// One node to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port of its stream listener.
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (host, port) = text
            .trim()
            .rsplit_once(':')
            .ok_or_else(|| format!("'{text}' is not host:port"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{text}': the port must be between 1 and 65535"))?;
        if host.trim().is_empty() {
            return Err(format!("'{text}': the host is empty"));
        }
        Ok(Self {
            host: host.trim().to_owned(),
            port,
        })
    }
}

impl BrokerSettings {
    /// The nodes to try, in order: `hosts` if set, else `host:port`. Call after `validate`.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        if self.hosts.is_empty() {
            return vec![Endpoint {
                host: self.host.clone(),
                port: self.port,
            }];
        }
        self.hosts.iter().filter_map(|h| h.parse().ok()).collect()
    }

    /// The nodes, for messages: `host:port`, or `a:1, b:2, …`.
    pub fn endpoint(&self) -> String {
        let all: Vec<String> = self.endpoints().iter().map(Endpoint::to_string).collect();
        all.join(", ")
    }
}

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

/// The certificates in the PEM file `path`, at least one, or an error naming `key`.
fn read_certificates(
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
fn check_pkcs8_key(path: &Path) -> Result<()> {
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

/// A password: `Debug` and `Display` print `***`, so it never reaches a log or an error.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it: the broker handshake.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// `[stream]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSettings {
    /// Name of the stream.
    pub name: String,
    /// Retention by size, in bytes (the tutorial's 2 GB).
    pub max_length_bytes: u64,
    /// Retention by age, e.g. "7days"; none by default.
    #[serde(with = "humantime_serde")]
    pub max_age: Option<Duration>,
    /// Size of the stream's segment files, in bytes; the broker's default when absent.
    pub max_segment_size_bytes: Option<u64>,
    /// On a cluster: how many nodes hold the stream (leader and replicas), the broker's
    /// `x-initial-cluster-size`; the broker's default (every node) when absent.
    pub initial_cluster_size: Option<u32>,
    /// 0: `name` is a plain stream. N > 0: `name` is a super stream of N partitions,
    /// `name-0` … `name-{N-1}`.
    pub partitions: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            name: "stream-offset-tracking-rust".into(),
            max_length_bytes: 2_000_000_000,
            max_age: None,
            max_segment_size_bytes: None,
            initial_cluster_size: None,
            partitions: 0,
        }
    }
}

/// `[producer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerSettings {
    /// How many messages one run publishes: `hello0` … and the last one `marker{n-1}`.
    pub message_count: u64,
    /// Most messages published but not yet confirmed at any time (bounds memory).
    pub max_unconfirmed: u32,
    /// Most messages sent to the broker in one publish frame (the broker writes about one chunk
    /// per frame; larger chunks mean fewer offset stores per message for consumers).
    pub batch_size: u32,
    /// Give up when no confirmation arrived for this long.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// A name turns on deduplication: after a lost connection the producer resends what the
    /// broker does not hold, and nothing is written twice. Unnamed, a lost connection fails the run.
    pub name: Option<String>,
    /// With a name: keep trying to reconnect for this long.
    #[serde(with = "humantime_serde")]
    pub reconnect_timeout: Duration,
    /// With `stream.partitions`: the routing key of message `i`, with `{index}` replaced by `i`;
    /// its murmur3 hash (as every RabbitMQ stream client computes it) chooses the partition.
    pub routing_key: String,
}

impl Default for ProducerSettings {
    fn default() -> Self {
        Self {
            message_count: 100,
            max_unconfirmed: 10_000,
            batch_size: 100,
            confirm_timeout: Duration::from_secs(30),
            name: None,
            reconnect_timeout: Duration::from_secs(60),
            routing_key: "{index}".into(),
        }
    }
}

/// `[consumer]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerSettings {
    /// The consumer's name: the key under which the broker stores its offset.
    pub name: String,
    /// Where to attach when no offset is stored for `name`.
    pub offset: OffsetSpec,
    /// After losing the subscription (connection lost, broker restart), keep trying to subscribe
    /// again for this long before giving up.
    #[serde(with = "humantime_serde")]
    pub reconnect_timeout: Duration,
    /// Where processed messages go besides the tutorial's processing.
    pub sink: SinkKind,
    /// Join the consumer group `name`: the broker keeps one active consumer per partition (per
    /// stream, for a plain stream) among the processes with this name. A member runs until
    /// stopped (SIGINT/SIGTERM) rather than ending at the marker.
    pub single_active: bool,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            name: "consumer-1".into(),
            offset: OffsetSpec::First,
            reconnect_timeout: Duration::from_secs(60),
            sink: SinkKind::None,
            single_active: false,
        }
    }
}

/// `[tracker]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackerSettings {
    /// Store after this many processed messages; 0 turns the count trigger off.
    pub store_every_messages: u64,
    /// Store when this much time passed with progress; "0s" turns the time trigger off.
    #[serde(with = "humantime_serde")]
    pub store_every: Duration,
    /// Where offsets are kept, and read from to resume.
    pub store: OffsetStoreKind,
    /// The SQLite database, with `store = "sqlite"`.
    pub sqlite_path: std::path::PathBuf,
}

impl Default for TrackerSettings {
    fn default() -> Self {
        Self {
            store_every_messages: 10,
            store_every: Duration::from_secs(5),
            store: OffsetStoreKind::Broker,
            sqlite_path: "offsets.sqlite".into(),
        }
    }
}

/// `[tracker] store`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetStoreKind {
    /// Server-side offset tracking on the broker.
    #[default]
    Broker,
    /// The application's SQLite database (`sqlite_path`); the broker is still updated, for
    /// admin tools, but never read to resume.
    Sqlite,
}

/// `[consumer] sink`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    /// The tutorial's processing only.
    #[default]
    None,
    /// Each processed batch into the SQLite table `messages`, with its offset, in one transaction
    /// (needs `tracker.store = "sqlite"`): exactly-once effects.
    Sqlite,
}

impl Settings {
    /// Reads `path` (or `config.toml` in the working directory if present), then the
    /// `OFFSET_TRACKING__…` environment, and validates the result.
    ///
    /// An explicit `path` must exist; the default file may be absent (built-in defaults apply).
    pub fn load(path: Option<&Path>) -> Result<Self> {
        Self::load_with(path, &[])
    }

    /// Like [`Settings::load`], with `overrides` (`("section.key", value)`, from command-line
    /// flags) above everything else. The one place that resolves precedence:
    /// flag > environment > file > built-in default.
    pub fn load_with(path: Option<&Path>, overrides: &[(&str, String)]) -> Result<Self> {
        let (file, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        if required && !file.is_file() {
            return Err(Error::Config(format!(
                "configuration file {} does not exist",
                file.display()
            )));
        }
        let mut builder = config::Config::builder()
            .add_source(config::File::from(file.as_path()).required(required))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    .list_separator(",")
                    .with_list_parse_key("broker.hosts"),
            );
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| Error::Config(format!("{key}: {e}")))?;
        }
        let source = builder
            .build()
            .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
        let settings: Settings = source
            .try_deserialize()
            .map_err(|e| Error::Config(format!("{}: {e}", file.display())))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("{key}: {why}")));
        if self.broker.host.trim().is_empty() {
            return invalid("broker.host", "must not be empty");
        }
        if self.broker.port == 0 {
            return invalid("broker.port", "must be between 1 and 65535");
        }
        if self.broker.connect_timeout.is_zero() {
            return invalid("broker.connect_timeout", "must be more than 0s");
        }
        if self.broker.heartbeat.as_secs() == 0 || self.broker.heartbeat.as_secs() > u32::MAX as u64
        {
            return invalid("broker.heartbeat", "must be at least 1s");
        }
        for (i, host) in self.broker.hosts.iter().enumerate() {
            if let Err(why) = host.parse::<Endpoint>() {
                return Err(Error::Config(format!("broker.hosts[{i}]: {why}")));
            }
        }
        if let Some(tls) = &self.broker.tls {
            for endpoint in self.broker.endpoints() {
                tls.validate(&endpoint.host)?;
            }
        }
        if self.stream.name.trim().is_empty() {
            return invalid("stream.name", "must not be empty");
        }
        if self.stream.name.len() > 255 {
            return invalid("stream.name", "must be at most 255 bytes");
        }
        if self.stream.max_length_bytes == 0 {
            return invalid("stream.max_length_bytes", "must be more than 0");
        }
        if self.stream.initial_cluster_size == Some(0) {
            return invalid(
                "stream.initial_cluster_size",
                "must be at least 1, or absent",
            );
        }
        if self.stream.partitions > MAX_PARTITIONS {
            return invalid(
                "stream.partitions",
                &format!("must be at most {MAX_PARTITIONS} (0: a plain stream)"),
            );
        }
        if self.stream.partitions > 0 && self.stream.name.len() > 255 - 11 {
            return invalid(
                "stream.name",
                "must be at most 244 bytes with partitions (room for the partition's suffix)",
            );
        }
        if !self.producer.routing_key.contains("{index}") {
            return invalid(
                "producer.routing_key",
                "must contain {index} (e.g. \"{index}\" or \"order-{index}\"): a key without it sends every message to one partition",
            );
        }
        if self.producer.message_count == 0 {
            return invalid("producer.message_count", "must be at least 1 (the marker)");
        }
        if self.producer.batch_size == 0 {
            return invalid("producer.batch_size", "must be at least 1");
        }
        if self.producer.max_unconfirmed == 0 {
            return invalid("producer.max_unconfirmed", "must be at least 1");
        }
        if self.producer.confirm_timeout.is_zero() {
            return invalid("producer.confirm_timeout", "must be more than 0s");
        }
        if self
            .producer
            .name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty() || n.len() > 255)
        {
            return invalid("producer.name", "must be 1 to 255 bytes, or absent");
        }
        if self.consumer.single_active && self.consumer.name.trim().is_empty() {
            return invalid(
                "consumer.name",
                "single_active = true needs a name: the group's members share it",
            );
        }
        if self.consumer.single_active && self.tracker.store == OffsetStoreKind::Sqlite {
            return invalid(
                "consumer.single_active",
                "needs tracker.store = \"broker\": a group hands over through the broker's offsets, \
                 and one member cannot read another's SQLite file",
            );
        }
        if self.stream.partitions > 0
            && (self.tracker.store == OffsetStoreKind::Sqlite
                || self.consumer.sink == SinkKind::Sqlite)
        {
            return invalid(
                "stream.partitions",
                "super streams keep their offsets on the broker: set tracker.store = \"broker\" \
                 and consumer.sink = \"none\" (SQLite offsets are for plain streams)",
            );
        }
        if self.consumer.name.trim().is_empty() {
            return invalid(
                "consumer.name",
                "must not be empty: the broker stores offsets under this name",
            );
        }
        if self.consumer.sink == SinkKind::Sqlite && self.tracker.store != OffsetStoreKind::Sqlite {
            return invalid(
                "consumer.sink",
                "\"sqlite\" needs tracker.store = \"sqlite\": the offset must be read from where the messages are",
            );
        }
        if self.consumer.name.len() > 255 {
            return invalid("consumer.name", "must be at most 255 bytes");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn the_shipped_config_matches_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config.toml");
        let s = Settings::load(Some(&shipped)).unwrap();
        let d = Settings::default();
        assert_eq!(s.broker.endpoint(), d.broker.endpoint());
        assert_eq!(s.stream.name, d.stream.name);
        assert_eq!(s.stream.max_length_bytes, d.stream.max_length_bytes);
        assert_eq!(s.producer.message_count, d.producer.message_count);
        assert_eq!(s.consumer.name, d.consumer.name);
        assert_eq!(s.consumer.offset, d.consumer.offset);
        assert_eq!(
            s.tracker.store_every_messages,
            d.tracker.store_every_messages
        );
        assert_eq!(s.tracker.store_every, d.tracker.store_every);
    }

    #[test]
    fn reads_every_section() {
        let f = file_with(
            r#"
            [broker]
            host = "h"
            port = 1234
            password = "s3cret"
            [stream]
            name = "s"
            max_age = "1h"
            max_segment_size_bytes = 500000
            [producer]
            message_count = 7
            [consumer]
            name = "c"
            offset = 42
            [tracker]
            store_every_messages = 0
            store_every = "250ms"
            "#,
        );
        let s = Settings::load(Some(f.path())).unwrap();
        assert_eq!(s.broker.endpoint(), "h:1234");
        assert_eq!(s.broker.password.expose(), "s3cret");
        assert_eq!(s.stream.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(s.stream.max_segment_size_bytes, Some(500_000));
        assert_eq!(s.producer.message_count, 7);
        assert_eq!(s.consumer.offset, OffsetSpec::Offset(42));
        assert_eq!(s.tracker.store_every_messages, 0);
        assert_eq!(s.tracker.store_every, Duration::from_millis(250));
    }

    #[test]
    fn reads_the_scaling_out_keys_and_names_bad_ones() {
        let f = file_with(
            r#"
            [broker]
            hosts = ["a:5561", "b:5562"]
            [stream]
            partitions = 3
            initial_cluster_size = 2
            [producer]
            routing_key = "order-{index}"
            [consumer]
            single_active = true
            "#,
        );
        let s = Settings::load(Some(f.path())).unwrap();
        let endpoints: Vec<String> = s.broker.endpoints().iter().map(|e| e.to_string()).collect();
        assert_eq!(endpoints, ["a:5561", "b:5562"]);
        assert_eq!(s.broker.endpoint(), "a:5561, b:5562");
        assert_eq!(s.stream.partitions, 3);
        assert_eq!(s.stream.initial_cluster_size, Some(2));
        assert_eq!(s.producer.routing_key, "order-{index}");
        assert!(s.consumer.single_active);

        for (text, key) in [
            ("[broker]\nhosts = [\"a:1\", \"b\"]", "broker.hosts[1]"),
            ("[broker]\nhosts = [\"a:0\"]", "broker.hosts[0]"),
            (
                "[stream]\ninitial_cluster_size = 0",
                "stream.initial_cluster_size",
            ),
            ("[stream]\npartitions = 100000", "stream.partitions"),
            ("[producer]\nrouting_key = \"k\"", "producer.routing_key"),
            (
                "[stream]\npartitions = 2\n[tracker]\nstore = \"sqlite\"",
                "stream.partitions",
            ),
            (
                "[consumer]\nsingle_active = true\n[tracker]\nstore = \"sqlite\"",
                "consumer.single_active",
            ),
        ] {
            let f = file_with(text);
            let err = Settings::load(Some(f.path())).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_wrong_types_and_bad_specs_name_the_key() {
        let cases = [
            (
                "[tracker]\nstore_every_mesages = 5\n",
                "store_every_mesages",
            ),
            ("[brokr]\nhost = \"x\"\n", "brokr"),
            ("[broker]\nport = \"many\"\n", "port"),
            ("[tracker]\nstore_every = \"soon\"\n", "store_every"),
            ("[consumer]\noffset = \"fist\"\n", "offset"),
            ("[consumer]\nname = \"\"\n", "consumer.name"),
            ("[producer]\nmessage_count = 0\n", "producer.message_count"),
            ("[broker\n", "config"),
        ];
        for (text, key) in cases {
            let f = file_with(text);
            let err = Settings::load(Some(f.path())).unwrap_err().to_string();
            assert!(
                err.contains(key),
                "{text:?} gave {err:?}, which does not name {key}"
            );
        }
    }

    #[test]
    fn a_missing_explicit_file_is_an_error() {
        let err = Settings::load(Some(Path::new("/nonexistent/x.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.toml"), "{err}");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let f = file_with("[broker]\npassword = \"hunter2\"\n");
        let s = Settings::load(Some(f.path())).unwrap();
        let shown = format!("{s:?} {}", s.broker.password);
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"));
    }

    /// A CA certificate (its key thrown away): the TLS checks parse it as the client would.
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBpTCCAUugAwIBAgIUdvyNyYey7p2ze2phCeXw2M39NZMwCgYIKoZIzj0EAwIw\n\
JzElMCMGA1UEAwwcb2Zmc2V0LXRyYWNraW5nIHVuaXQtdGVzdCBDQTAgFw0yNjEx\n\
MjUxMjE3NTlaGA8yMTI2MTEwMTEyMTc1OVowJzElMCMGA1UEAwwcb2Zmc2V0LXRy\n\
YWNraW5nIHVuaXQtdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKqU\n\
NOQGPRPImDyq4nAcV4+zLXs0VeHRHjTzt9Dy99ki4HHyhkdffajkmR2Q8uArkm0a\n\
APcY+Y1FiDT/XGig2+GjUzBRMB0GA1UdDgQWBBRHWW9gOJ3S31OWGUWm8Qu1zyt3\n\
GjAfBgNVHSMEGDAWgBRHWW9gOJ3S31OWGUWm8Qu1zyt3GjAPBgNVHRMBAf8EBTAD\n\
AQH/MAoGCCqGSM49BAMCA0gAMEUCIG0Gw4nhVxKa5u8Q1NZh/4sl5ffyfvUMVO07\n\
RwVjJjoiAiEAiXECc9fETkFGA26DfKdghpalzJBloa0WPK7AUS2F5HE=\n\
-----END CERTIFICATE-----\n\
";

    /// A PKCS#8 key as far as the file format goes (the checks read the PEM label, not the key).
    const PKCS8_KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

    fn pem_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn reads_and_checks_the_tls_table() {
        let (ca, cert, key) = (pem_file(TEST_CA), pem_file(TEST_CA), pem_file(PKCS8_KEY));
        let f = file_with(&format!(
            "[broker]\nport = 5551\n[broker.tls]\nca_file = {:?}\nclient_cert_file = {:?}\n\
             client_key_file = {:?}\n",
            ca.path(),
            cert.path(),
            key.path()
        ));
        let s = Settings::load(Some(f.path())).unwrap();
        let tls = s.broker.tls.unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(ca.path()));
        assert_eq!(tls.client_key_file.as_deref(), Some(key.path()));
        assert!(!tls.trust_everything);

        let f = file_with("[broker.tls]\ntrust_everything = true\n");
        assert!(
            Settings::load(Some(f.path()))
                .unwrap()
                .broker
                .tls
                .unwrap()
                .trust_everything
        );
        assert!(Settings::default().broker.tls.is_none());
    }

    #[test]
    fn tls_mistakes_are_configuration_errors_naming_the_key() {
        let ca = pem_file(TEST_CA);
        let key = pem_file(PKCS8_KEY);
        let sec1 = pem_file("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        let rsa =
            pem_file("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
        let garbled = pem_file("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let (ca, key, sec1, rsa, garbled) = (
            ca.path(),
            key.path(),
            sec1.path(),
            rsa.path(),
            garbled.path(),
        );
        let cases = [
            ("[broker.tls]\n".to_owned(), "broker.tls.ca_file: missing"),
            (format!("[broker.tls]\nca_file = {:?}\n", "/nonexistent/ca.pem"), "broker.tls.ca_file: /nonexistent/ca.pem does not exist"),
            (format!("[broker.tls]\nca_file = {key:?}\n"), "broker.tls.ca_file"),
            (format!("[broker.tls]\nca_file = {garbled:?}\n"), "broker.tls.ca_file"),
            (format!("[broker.tls]\nca_file = {ca:?}\ntrust_everything = true\n"), "broker.tls.trust_everything"),
            (format!("[broker.tls]\nca_file = {ca:?}\nclient_cert_file = {ca:?}\n"), "broker.tls.client_key_file: missing"),
            (format!("[broker.tls]\nca_file = {ca:?}\nclient_key_file = {key:?}\n"), "broker.tls.client_cert_file: missing"),
            (format!("[broker.tls]\nca_file = {ca:?}\nclient_cert_file = {ca:?}\nclient_key_file = {sec1:?}\n"), "broker.tls.client_key_file"),
            (format!("[broker.tls]\nca_file = {ca:?}\nclient_cert_file = {ca:?}\nclient_key_file = {rsa:?}\n"), "PKCS#8"),
            (format!("[broker.tls]\nca_file = {ca:?}\nclient_cert_file = {ca:?}\nclient_key_file = {:?}\n", "/nonexistent/key.pem"), "broker.tls.client_key_file: /nonexistent/key.pem does not exist"),
            (format!("[broker.tls]\ntrust_everything = true\nclient_cert_file = {ca:?}\nclient_key_file = {key:?}\n"), "broker.tls.client_cert_file"),
            (format!("[broker]\nhost = \"bad..host\"\n[broker.tls]\nca_file = {ca:?}\n"), "broker.host"),
            (format!("[broker.tls]\nca = {ca:?}\n"), "ca"),
        ];
        for (text, expected) in cases {
            let f = file_with(&text);
            let err = Settings::load(Some(f.path())).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{text:?} gave {err}");
            assert!(
                err.to_string().contains(expected),
                "{text:?} gave {err:?}, which does not say {expected:?}"
            );
        }
    }
}
