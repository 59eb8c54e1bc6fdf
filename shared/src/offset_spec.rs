//! Where a consumer attaches when no offset is stored: `first`, `last`, `next`, a number, or
//! `timestamp:<RFC 3339>`.

use std::fmt;
use std::str::FromStr;

use rabbitmq_stream_client::types::OffsetSpecification;
use serde::Deserialize;

/// The configured attach position (`[consumer] offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The first message still in the stream.
    First,
    /// The last chunk of the stream (chunk granularity, as the broker attaches).
    Last,
    /// Only messages published after attaching.
    Next,
    /// This offset (the broker trims earlier messages of its chunk).
    Offset(u64),
    /// The first chunk at or after this time, in milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The client library's equivalent.
    pub fn to_client(self) -> OffsetSpecification {
        match self {
            OffsetSpec::First => OffsetSpecification::First,
            OffsetSpec::Last => OffsetSpecification::Last,
            OffsetSpec::Next => OffsetSpecification::Next,
            OffsetSpec::Offset(n) => OffsetSpecification::Offset(n),
            OffsetSpec::Timestamp(ms) => OffsetSpecification::Timestamp(ms),
        }
    }
}

/// An optional offset for people: the number, or `none`.
pub fn show_offset(offset: Option<u64>) -> String {
    offset.map_or_else(|| "none".into(), |o| o.to_string())
}

/// Why an offset specification could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSpecError(String);

impl fmt::Display for OffsetSpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected first, last, next, an offset (a whole number) or timestamp:<RFC 3339>, e.g. timestamp:2026-11-25T10:00:00Z",
            self.0
        )
    }
}

impl std::error::Error for OffsetSpecError {}

impl FromStr for OffsetSpec {
    type Err = OffsetSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "first" => return Ok(OffsetSpec::First),
            "last" => return Ok(OffsetSpec::Last),
            "next" => return Ok(OffsetSpec::Next),
            _ => {}
        }
        if let Some(time) = text.strip_prefix("timestamp:") {
            let parsed = chrono::DateTime::parse_from_rfc3339(time.trim())
                .map_err(|e| OffsetSpecError(format!("`{time}` is not an RFC 3339 time ({e})")))?;
            return Ok(OffsetSpec::Timestamp(parsed.timestamp_millis()));
        }
        text.parse::<u64>()
            .map(OffsetSpec::Offset)
            .map_err(|_| OffsetSpecError(format!("`{text}` is not an offset specification")))
    }
}

impl fmt::Display for OffsetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffsetSpec::First => f.write_str("first"),
            OffsetSpec::Last => f.write_str("last"),
            OffsetSpec::Next => f.write_str("next"),
            OffsetSpec::Offset(n) => write!(f, "{n}"),
            OffsetSpec::Timestamp(ms) => match chrono::DateTime::from_timestamp_millis(*ms) {
                Some(t) => write!(f, "timestamp:{}", t.to_rfc3339()),
                None => write!(f, "timestamp:{ms}ms"),
            },
        }
    }
}

/// TOML may hold `offset = 42` as well as `offset = "42"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawOffsetSpec {
    Number(u64),
    Text(String),
}

impl<'de> Deserialize<'de> for OffsetSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match RawOffsetSpec::deserialize(deserializer) {
            Ok(RawOffsetSpec::Number(n)) => Ok(OffsetSpec::Offset(n)),
            Ok(RawOffsetSpec::Text(text)) => text.parse().map_err(serde::de::Error::custom),
            Err(_) => Err(serde::de::Error::custom(OffsetSpecError(
                "not a string or a whole number".into(),
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!("first".parse(), Ok(OffsetSpec::First));
        assert_eq!(" LAST ".parse(), Ok(OffsetSpec::Last));
        assert_eq!("next".parse(), Ok(OffsetSpec::Next));
        assert_eq!("42".parse(), Ok(OffsetSpec::Offset(42)));
        assert_eq!(
            "timestamp:1970-01-01T00:00:01.5Z".parse(),
            Ok(OffsetSpec::Timestamp(1500))
        );
        assert_eq!(
            "timestamp:2026-11-25T12:00:00+01:00".parse(),
            Ok(OffsetSpec::Timestamp(1_795_604_400_000))
        );
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        for bad in ["", "-1", "firstt", "timestamp:yesterday", "1.5"] {
            let err = bad.parse::<OffsetSpec>().unwrap_err().to_string();
            assert!(err.contains("expected first, last, next"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_what_it_parses() {
        for text in [
            "first",
            "last",
            "next",
            "7",
            "timestamp:2026-11-25T11:00:00+00:00",
        ] {
            let spec: OffsetSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text);
        }
    }
}
