//! `[broker]`: where the broker is and how to log in — nodes, credentials, timeouts — and its
//! validation. `[broker.tls]` is in the `tls` module beside it.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::{duration_within, TlsSettings};
use crate::error::{Error, Result};

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
    #[serde(deserialize_with = "list_or_commas")]
    pub hosts: Vec<String>,
    /// The broker's management HTTP API (`http://host:15672`), which `consumer offsets set` and
    /// `import` ask whether a consumer of the name is connected; absent (the default), derived
    /// from the first node's host and port 15672. Logs in with `username` and `password`.
    pub management_url: Option<String>,
}

/// A list of strings, from a TOML list or from one comma-separated string (an environment
/// variable: `OFFSET_TRACKING__BROKER__HOSTS=a:5552,b:5552`).
fn list_or_commas<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrCommas {
        List(Vec<String>),
        Commas(String),
    }
    // The untagged enum's own error names it; say what is expected instead.
    let value = ListOrCommas::deserialize(deserializer).map_err(|_| {
        serde::de::Error::custom(
            "expected a list of \"host:port\" strings, or one string of them separated by commas",
        )
    })?;
    Ok(match value {
        ListOrCommas::List(list) => list,
        ListOrCommas::Commas(text) => text
            .split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect(),
    })
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
            management_url: None,
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
        if self.host.contains(':') {
            // An IPv6 address: brackets keep its colons apart from the port's.
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    /// `host:port`, `1.2.3.4:port` or `[IPv6]:port`, read as the authority of a URL (the `url`
    /// crate's parser); the IPv6 address loses its brackets.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim();
        if text.matches(':').count() > 1 && !text.starts_with('[') {
            return Err(format!(
                "'{text}': an IPv6 address needs brackets, e.g. [::1]:5552"
            ));
        }
        let url = url::Url::parse(&format!("rabbitmq-stream://{text}"))
            .map_err(|e| format!("'{text}' is not host:port ({e})"))?;
        if !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(format!(
                "'{text}' is not host:port (only a host and a port, e.g. localhost:5552 or \
                 [::1]:5552)"
            ));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(url::Host::Ipv4(address)) => address.to_string(),
            Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
            _ => return Err(format!("'{text}': the host is empty")),
        };
        let port = url
            .port()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("'{text}': the port must be between 1 and 65535"))?;
        Ok(Self { host, port })
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

    /// The management HTTP API's base URL: `management_url`, else `http://<first node's
    /// host>:15672`. Call after `validate`.
    pub fn management_url(&self) -> String {
        if let Some(url) = &self.management_url {
            return url.trim_end_matches('/').to_owned();
        }
        let host = self
            .endpoints()
            .first()
            .map_or_else(|| self.host.clone(), |node| node.host.clone());
        if host.contains(':') {
            format!("http://[{host}]:{DEFAULT_MANAGEMENT_PORT}")
        } else {
            format!("http://{host}:{DEFAULT_MANAGEMENT_PORT}")
        }
    }

    /// Rejects `[broker]` (and `[broker.tls]`) values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("broker.{key}: {why}")));
        if self.host.trim().is_empty() {
            return invalid("host", "must not be empty");
        }
        if self.port == 0 {
            return invalid("port", "must be between 1 and 65535");
        }
        if let Some(why) = other_listener(self.port).filter(|_| self.hosts.is_empty()) {
            return invalid("port", why);
        }
        duration_within(
            "broker.connect_timeout",
            self.connect_timeout,
            Duration::from_millis(1),
            Duration::from_secs(3600),
        )?;
        duration_within(
            "broker.heartbeat",
            self.heartbeat,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        for (i, host) in self.hosts.iter().enumerate() {
            let why = match host.parse::<Endpoint>() {
                Err(why) => why,
                Ok(node) => match other_listener(node.port) {
                    Some(why) => format!("'{host}': {why}"),
                    None => continue,
                },
            };
            return Err(Error::Config(format!("broker.hosts[{i}]: {why}")));
        }
        if let Some(url) = &self.management_url {
            check_management_url(url)
                .map_err(|why| Error::Config(format!("broker.management_url: '{url}': {why}")))?;
        }
        if let Some(tls) = &self.tls {
            for endpoint in self.endpoints() {
                tls.validate(&endpoint.host)?;
            }
        }
        Ok(())
    }
}

/// The management plugin's HTTP port, for the derived `management_url`.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 15672;

/// `broker.management_url` must be a plain `http://host[:port][/prefix]` URL: no credentials
/// (they come from `username` and `password`, and a URL gets printed), no query; `https` is not
/// supported by the HTTP client built in (no TLS in it).
fn check_management_url(text: &str) -> std::result::Result<(), String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(
                "https is not supported: use http (on loopback or a trusted network, \
                        e.g. through an SSH tunnel)"
                    .into(),
            )
        }
        other => return Err(format!("the scheme must be http, not {other}")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the host is empty".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not hold credentials: broker.username and broker.password are used".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(())
}

/// What listens on `port` on a RabbitMQ node when it is not the stream protocol: the usual
/// mistake of pointing a stream client at the AMQP or management port.
fn other_listener(port: u16) -> Option<&'static str> {
    match port {
        5672 => Some("5672 is RabbitMQ's AMQP port; streams listen on 5552"),
        5671 => {
            Some("5671 is RabbitMQ's AMQP-over-TLS port; streams listen on 5552 (with TLS, 5551)")
        }
        15672 => Some("15672 is RabbitMQ's management (HTTP) port; streams listen on 5552"),
        _ => None,
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

#[cfg(test)]
mod management_url_tests {
    use super::*;

    #[test]
    fn the_management_url_is_derived_from_the_first_node_or_checked() {
        let mut broker = BrokerSettings::default();
        assert_eq!(broker.management_url(), "http://localhost:15672");
        broker.hosts = vec!["[::1]:5561".into(), "b:5562".into()];
        assert_eq!(broker.management_url(), "http://[::1]:15672");
        broker.management_url = Some("http://mgmt.example:8080/rabbit/".into());
        assert!(broker.validate().is_ok());
        assert_eq!(broker.management_url(), "http://mgmt.example:8080/rabbit");
        for bad in [
            "https://h:15671",
            "ftp://h",
            "http://guest:guest@h:15672",
            "http://h:15672/?x=1",
            "localhost:15672x",
        ] {
            broker.management_url = Some(bad.into());
            let err = broker.validate().unwrap_err().to_string();
            assert!(err.contains("broker.management_url"), "{bad}: {err}");
        }
    }
}
