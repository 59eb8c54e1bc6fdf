//! The configuration: `config.toml` (or `--config PATH`), overridden by
//! `OFFSET_TRACKING__<SECTION>__<KEY>` environment variables and by flags, read into typed,
//! validated settings.
//!
//! This module loads and resolves precedence, and checks the rules that tie sections together;
//! each section's schema and its own rules live in a file of their own (`broker`, `tls`, `stream`,
//! `producer`, `consumer`, `processing`); `pem` inspects the TLS files; `origin` knows where each
//! value came from (flag, environment variable, file line) and `explain` puts errors in words
//! naming it.

mod broker;
mod consumer;
mod explain;
pub mod management;
mod origin;
pub(crate) mod pem;
pub mod probe;
mod processing;
mod producer;
pub mod show;
mod stream;
mod tls;

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use broker::{BrokerSettings, Endpoint, Secret};
pub use consumer::{
    ConsumerSettings, OffsetStoreKind, SinkKind, TrackerSettings, MAX_INITIAL_CREDITS,
};
pub use origin::{try_parse_recording_origins, Origin};
pub use processing::{KeySource, KeySourceError, Ordering, ProcessingSettings, MAX_IN_FLIGHT};
pub use producer::ProducerSettings;
pub use stream::StreamSettings;
pub use tls::TlsSettings;

use crate::error::{Error, Result};

/// Prefix of the environment variables that override the file, e.g. `OFFSET_TRACKING__STREAM__NAME`.
pub const ENV_PREFIX: &str = "OFFSET_TRACKING";

/// Most partitions a super stream may have here.
pub const MAX_PARTITIONS: u32 = 1000;

/// The longest duration any setting takes: beyond it, time arithmetic would overflow and no
/// sensible value lies there.
pub const LONGEST: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `key`'s duration must lie in `min..=max`.
pub(crate) fn duration_within(
    key: &str,
    value: std::time::Duration,
    min: std::time::Duration,
    max: std::time::Duration,
) -> Result<()> {
    if value < min || value > max {
        return Err(Error::Config(format!(
            "{key}: {} is out of range: must be between {} and {}",
            humantime::format_duration(value),
            humantime::format_duration(min),
            humantime::format_duration(max)
        )));
    }
    Ok(())
}

/// `key`'s number must lie in `min..=max`.
pub(crate) fn number_within(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
    if value < min || value > max {
        return Err(Error::Config(format!(
            "{key}: {value} is out of range: must be between {min} and {max}"
        )));
    }
    Ok(())
}

/// Reads an enum field written as its name (`store = "sqlite"`) through serde's own reading of
/// names, so that an unknown one is reported with the allowed ones listed (the config crate's
/// enum reading names neither). Use with `#[serde(deserialize_with = "super::by_name")]`.
pub(crate) fn by_name<'de, D, T>(deserializer: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::de::{value::StringDeserializer, Error as _};
    let name = String::deserialize(deserializer)?;
    T::deserialize(StringDeserializer::<serde::de::value::Error>::new(name))
        .map_err(D::Error::custom)
}

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
    /// `[processing]`: how many deliveries are processed at once, and in what order.
    pub processing: ProcessingSettings,
    /// `[metrics]`: the consumer's Prometheus endpoint.
    pub metrics: MetricsSettings,
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve Prometheus metrics on this address (e.g. "127.0.0.1:9464" or "localhost:9464"); off
    /// when absent.
    pub listen: Option<crate::metrics::Listen>,
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
        let sources = origin::Sources::gather(&file, overrides);
        let mut builder = config::Config::builder()
            .add_source(config::File::from(file.as_path()).required(required))
            .add_source(
                // Values stay the strings they are (a password "0123" is not the number 123);
                // each key's type reads its own string, and `broker.hosts` splits on commas.
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(false),
            );
        for (key, value) in overrides {
            builder = builder
                .set_override(*key, value.as_str())
                .map_err(|e| explain::validation(Error::Config(format!("{key}: {e}")), &sources))?;
        }
        let source = builder
            .build()
            .map_err(|e| explain::config_error(e, &sources))?;
        let settings: Settings = source
            .try_deserialize()
            .map_err(|e| explain::config_error(e, &sources))?;
        settings
            .validate()
            .map_err(|e| explain::validation(e, &sources))?;
        Ok(settings)
    }

    /// Rejects values that parse but make no sense: each section's own rules, then the rules
    /// that tie sections together.
    pub fn validate(&self) -> Result<()> {
        self.broker.validate()?;
        self.stream.validate()?;
        self.producer.validate()?;
        self.consumer.validate()?;
        self.tracker.validate()?;
        self.processing.validate()?;
        let invalid = |key: &str, why: &str| Err(Error::Config(format!("{key}: {why}")));
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
        if self.consumer.sink == SinkKind::Sqlite && self.tracker.store != OffsetStoreKind::Sqlite {
            return invalid(
                "consumer.sink",
                "\"sqlite\" needs tracker.store = \"sqlite\": the offset must be read from where the messages are",
            );
        }
        if self.consumer.sink == SinkKind::Sqlite
            && (self.processing.max_in_flight != 1
                || self.processing.ordering != Ordering::Partition)
        {
            return invalid(
                "consumer.sink",
                "\"sqlite\" needs processing.max_in_flight = 1 and processing.ordering = \"partition\": \
                 its transactions are per batch, in stream order",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
