//! `[processing]`: how many deliveries an async handler works on at once, in what order, and how
//! long to wait for them when stopping, with its validation.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::{duration_within, number_within, LONGEST};
use crate::error::{Error, Result};

/// Most deliveries of one stream a handler may process at once.
pub const MAX_IN_FLIGHT: u32 = 10_000;

/// `[processing]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessingSettings {
    /// How many deliveries of one stream (each partition of a super stream has its own) an async
    /// handler processes at once, 1 to [`MAX_IN_FLIGHT`]; 1: strictly one after another.
    pub max_in_flight: u32,
    /// Which deliveries may be processed at the same time.
    #[serde(deserialize_with = "super::by_name")]
    pub ordering: Ordering,
    /// With `ordering = "key"`: where a message's key is read from.
    pub key: Option<KeySource>,
    /// On shutdown, at the marker and on a consumer-group handover: how long to wait for the
    /// deliveries already being processed; past it they are abandoned and only the finished ones
    /// count (are stored).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 1,
            ordering: Ordering::Partition,
            key: None,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

impl ProcessingSettings {
    /// Rejects `[processing]` values that parse but cannot work.
    pub fn validate(&self) -> Result<()> {
        number_within(
            "processing.max_in_flight",
            self.max_in_flight.into(),
            1,
            MAX_IN_FLIGHT.into(),
        )?;
        duration_within(
            "processing.drain_timeout",
            self.drain_timeout,
            Duration::ZERO,
            LONGEST,
        )?;
        match (self.ordering, &self.key) {
            (Ordering::Key, None) => Err(Error::Config(format!(
                "processing.key: ordering = \"key\" needs a key source: one of {KEY_SOURCE_FORMS}"
            ))),
            (Ordering::Key, Some(_)) | (_, None) => Ok(()),
            (ordering, Some(_)) => Err(Error::Config(format!(
                "processing.key: only used with ordering = \"key\" (ordering is \"{ordering}\")"
            ))),
        }
    }
}

/// `[processing] ordering`: which deliveries may be processed at the same time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// In stream order, one at a time per partition: parallel only across the partitions of a
    /// super stream.
    #[default]
    Partition,
    /// Messages with the same key one after another, in stream order; different keys in
    /// parallel (needs `key`).
    Key,
    /// Any order.
    Unordered,
}

impl fmt::Display for Ordering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ordering::Partition => "partition",
            Ordering::Key => "key",
            Ordering::Unordered => "unordered",
        })
    }
}

/// The forms a key source is written in, for error messages.
const KEY_SOURCE_FORMS: &str = "property:<name>, message-id, correlation-id, subject or \
     body:<JSON pointer> (e.g. body:/customer/id)";

/// `[processing] key`: where a message's key is read from. Written as its [`fmt::Display`] form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub enum KeySource {
    /// `property:<name>`: this AMQP application property.
    Property(String),
    /// `message-id`: the AMQP message-id property.
    MessageId,
    /// `correlation-id`: the AMQP correlation-id property.
    CorrelationId,
    /// `subject`: the AMQP subject property.
    Subject,
    /// `body:<JSON pointer>`: this field of a JSON body, an RFC 6901 pointer such as
    /// `/customer/id`.
    BodyField(String),
}

/// Why a key source could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySourceError(String);

impl fmt::Display for KeySourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; expected {KEY_SOURCE_FORMS}", self.0)
    }
}

impl std::error::Error for KeySourceError {}

impl FromStr for KeySource {
    type Err = KeySourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "message-id" => return Ok(KeySource::MessageId),
            "correlation-id" => return Ok(KeySource::CorrelationId),
            "subject" => return Ok(KeySource::Subject),
            _ => {}
        }
        if let Some(name) = text.strip_prefix("property:") {
            if name.trim().is_empty() {
                return Err(KeySourceError(format!(
                    "`{text}` names no application property"
                )));
            }
            return Ok(KeySource::Property(name.to_owned()));
        }
        if let Some(pointer) = text.strip_prefix("body:") {
            check_json_pointer(pointer)
                .map_err(|why| KeySourceError(format!("`{text}`: {why}")))?;
            return Ok(KeySource::BodyField(pointer.to_owned()));
        }
        Err(KeySourceError(format!("`{text}` is not a key source")))
    }
}

/// An RFC 6901 pointer to a field: starts with '/', and '~' only as `~0` or `~1`.
fn check_json_pointer(pointer: &str) -> std::result::Result<(), &'static str> {
    if !pointer.starts_with('/') {
        return Err("a JSON pointer starts with '/'");
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("in a JSON pointer '~' must be followed by 0 or 1");
        }
    }
    Ok(())
}

impl TryFrom<String> for KeySource {
    type Error = KeySourceError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Property(name) => write!(f, "property:{name}"),
            KeySource::MessageId => f.write_str("message-id"),
            KeySource::CorrelationId => f.write_str("correlation-id"),
            KeySource::Subject => f.write_str("subject"),
            KeySource::BodyField(pointer) => write!(f, "body:{pointer}"),
        }
    }
}
