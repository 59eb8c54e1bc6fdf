//! `producer config` / `consumer config`: the effective configuration, one key a line, each with
//! where its value came from (a flag, an environment variable, `file:line`, or the built-in
//! default, as [`origin`](super::origin) works it out) and secrets shown as `***`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::origin::Sources;
use super::{Settings, DEFAULT_CONFIG_FILE};

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// `section.key`.
    pub key: &'static str,
    /// The value as `config.toml` would write it (`***` for a secret).
    pub value: String,
    /// Where it came from, in words (`--port 5553`, `OFFSET_TRACKING__BROKER__HOST=h`,
    /// `config.toml:3`, `built-in default`).
    pub origin: String,
}

/// The sections a program reads: the producer's or the consumer's.
pub const PRODUCER_SECTIONS: &[&str] = &["broker", "stream", "producer", "metrics"];
/// See [`PRODUCER_SECTIONS`].
pub const CONSUMER_SECTIONS: &[&str] = &[
    "broker",
    "stream",
    "consumer",
    "tracker",
    "processing",
    "metrics",
];

/// Every key of `sections` with its value in `settings` (as loaded from `file`, the
/// environment and `overrides`, the flags) and its origin.
pub fn effective(
    settings: &Settings,
    file: Option<&Path>,
    overrides: &[(&str, String)],
    sections: &[&str],
) -> Vec<Shown> {
    let file = config_file(file);
    let sources = Sources::gather(&file, overrides);
    values(settings)
        .into_iter()
        .filter(|(key, _)| {
            key.split('.')
                .next()
                .is_some_and(|section| sections.contains(&section))
        })
        .map(|(key, value)| Shown {
            key,
            value,
            origin: sources.of(key).to_string(),
        })
        .collect()
}

/// The configuration file a load reads: `file`, else `config.toml` in the working directory.
pub fn config_file(file: Option<&Path>) -> PathBuf {
    file.map_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE), Path::to_path_buf)
}

/// The listing as text: which file was read, then a column each for key, value and origin.
pub fn render(file: Option<&Path>, shown: &[Shown]) -> String {
    let path = config_file(file);
    let read = if path.is_file() {
        "read"
    } else {
        "absent: not read"
    };
    let key_width = shown.iter().map(|s| s.key.len()).max().unwrap_or(0);
    let value_width = shown
        .iter()
        .map(|s| s.value.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    let mut out = format!(
        "configuration file: {} ({read})\nprecedence: flag > environment > file > built-in default\n\n",
        path.display()
    );
    out.push_str(&format!(
        "{:key_width$}  {:value_width$}  from\n",
        "key", "value"
    ));
    for line in shown {
        out.push_str(&format!(
            "{:key_width$}  {:value_width$}  {}\n",
            line.key, line.value, line.origin
        ));
    }
    out
}

/// Every key's value as `config.toml` writes it. Listed by hand: a key added to the settings
/// must be added here too (the test below checks the count).
fn values(s: &Settings) -> Vec<(&'static str, String)> {
    let text = |v: &str| format!("{v:?}");
    let duration = |d: Duration| format!("\"{}\"", humantime::format_duration(d));
    let none = || "(none)".to_owned();
    let optional = |v: Option<String>| v.unwrap_or_else(none);
    let path = |p: &Option<PathBuf>| optional(p.as_ref().map(|p| text(&p.display().to_string())));
    let name = |debug: String| text(&debug.to_lowercase());
    let b = &s.broker;
    let tls = b.tls.clone().unwrap_or_default();
    vec![
        ("broker.host", text(&b.host)),
        ("broker.port", b.port.to_string()),
        ("broker.hosts", list(&b.hosts)),
        ("broker.username", text(&b.username)),
        ("broker.password", b.password.to_string()),
        ("broker.virtual_host", text(&b.virtual_host)),
        ("broker.connect_timeout", duration(b.connect_timeout)),
        ("broker.heartbeat", duration(b.heartbeat)),
        (
            "broker.load_balancer_mode",
            b.load_balancer_mode.to_string(),
        ),
        (
            "broker.management_url",
            optional(b.management_url.as_deref().map(text)),
        ),
        ("broker.tls.ca_file", path(&tls.ca_file)),
        ("broker.tls.client_cert_file", path(&tls.client_cert_file)),
        ("broker.tls.client_key_file", path(&tls.client_key_file)),
        (
            "broker.tls.trust_everything",
            tls.trust_everything.to_string(),
        ),
        ("stream.name", text(&s.stream.name)),
        (
            "stream.max_length_bytes",
            s.stream.max_length_bytes.to_string(),
        ),
        ("stream.max_age", optional(s.stream.max_age.map(duration))),
        (
            "stream.max_segment_size_bytes",
            optional(s.stream.max_segment_size_bytes.map(|n| n.to_string())),
        ),
        (
            "stream.initial_cluster_size",
            optional(s.stream.initial_cluster_size.map(|n| n.to_string())),
        ),
        ("stream.partitions", s.stream.partitions.to_string()),
        (
            "producer.message_count",
            s.producer.message_count.to_string(),
        ),
        (
            "producer.max_unconfirmed",
            s.producer.max_unconfirmed.to_string(),
        ),
        ("producer.batch_size", s.producer.batch_size.to_string()),
        (
            "producer.confirm_timeout",
            duration(s.producer.confirm_timeout),
        ),
        (
            "producer.name",
            optional(s.producer.name.as_deref().map(text)),
        ),
        (
            "producer.reconnect_timeout",
            duration(s.producer.reconnect_timeout),
        ),
        ("producer.routing_key", text(&s.producer.routing_key)),
        ("consumer.name", text(&s.consumer.name)),
        ("consumer.offset", text(&s.consumer.offset.to_string())),
        (
            "consumer.reconnect_timeout",
            duration(s.consumer.reconnect_timeout),
        ),
        (
            "consumer.single_active",
            s.consumer.single_active.to_string(),
        ),
        (
            "consumer.initial_credits",
            s.consumer.initial_credits.to_string(),
        ),
        (
            "consumer.create_stream",
            s.consumer.create_stream.to_string(),
        ),
        ("consumer.sink", name(format!("{:?}", s.consumer.sink))),
        (
            "tracker.store_every_messages",
            s.tracker.store_every_messages.to_string(),
        ),
        ("tracker.store_every", duration(s.tracker.store_every)),
        ("tracker.store", name(format!("{:?}", s.tracker.store))),
        (
            "tracker.sqlite_path",
            text(&s.tracker.sqlite_path.display().to_string()),
        ),
        (
            "processing.max_in_flight",
            s.processing.max_in_flight.to_string(),
        ),
        (
            "processing.ordering",
            text(&s.processing.ordering.to_string()),
        ),
        (
            "processing.key",
            optional(s.processing.key.as_ref().map(|k| text(&k.to_string()))),
        ),
        (
            "processing.drain_timeout",
            duration(s.processing.drain_timeout),
        ),
        (
            "metrics.listen",
            optional(s.metrics.listen.as_ref().map(|a| text(&a.to_string()))),
        ),
    ]
}

/// A TOML array of strings, or `(none)`.
fn list(items: &[String]) -> String {
    if items.is_empty() {
        return "(none)".into();
    }
    let quoted: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_listed_once_and_the_password_never() {
        let mut settings = Settings::default();
        settings.broker.password = super::super::Secret::new("hunter2");
        let all = values(&settings);
        let mut keys: Vec<&str> = all.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), all.len(), "a key listed twice");
        assert_eq!(all.len(), 43);
        let shown = render(None, &effective(&settings, None, &[], CONSUMER_SECTIONS));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("broker.password"), "{shown}");
        assert!(!shown.contains("producer.batch_size"), "{shown}");
    }
}
