//! Configuration errors in words, each naming where the bad value came from ([`Sources`]): the
//! config crate's errors (unknown keys, wrong types, unknown names, TOML syntax) and our own
//! validation's (`key: why`), never with Rust's names for things.

use config::ConfigError;

use super::origin::{Origin, Sources};
use crate::error::Error;

/// `origin: text`, or `text` alone when the value is the built-in default.
fn at(origin: &Origin, text: &str) -> Error {
    match origin {
        Origin::Default => Error::Config(text.to_owned()),
        origin => Error::Config(format!("{origin}: {text}")),
    }
}

/// A validation error (`key: why`) with the origin of its key in front.
pub(crate) fn validation(err: Error, sources: &Sources) -> Error {
    let Error::Config(text) = err else {
        return err;
    };
    let key = text
        .split_once(": ")
        .map(|(key, _)| key)
        .filter(|key| looks_like_key(key));
    match key {
        Some(key) => at(&sources.of(key), &text),
        None => Error::Config(text),
    }
}

/// `section.key`, `section.sub.key` or `section.key[3]`.
fn looks_like_key(text: &str) -> bool {
    text.contains('.')
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._[]".contains(c))
}

/// An error of the config crate, reading the file (`file`) or turning the values into
/// settings.
pub(crate) fn config_error(err: ConfigError, sources: &Sources) -> Error {
    match err {
        // The one file read; the crate's own name for it may be relative to somewhere else.
        ConfigError::FileParse { cause, .. } => Error::Config(format!(
            "{}: {}",
            sources.file().display(),
            cause.to_string().trim_end()
        )),
        ConfigError::Type {
            origin,
            unexpected,
            expected,
            key,
        } => {
            let key = key.unwrap_or_default();
            let text = format!(
                "{key}: expected {}, found {}",
                expected_in_words(expected),
                found_in_words(&unexpected.to_string())
            );
            at(&sources.of_reported(&key, origin.as_deref()), &text)
        }
        ConfigError::At { error, origin, key } => {
            let inner = error.to_string();
            let key = key.unwrap_or_default();
            if let Some((field, expected)) = unknown_field(&inner) {
                let full = if key.is_empty() {
                    field.to_owned()
                } else {
                    format!("{key}.{field}")
                };
                let allowed = if key.is_empty() {
                    format!("the sections are {expected}")
                } else {
                    format!("[{key}] has {expected}")
                };
                let text = format!("unknown key `{full}`: {allowed}");
                return at(&sources.of_reported(&full, origin.as_deref()), &text);
            }
            let text = format!("{key}: {}", in_words(&inner));
            at(&sources.of_reported(&key, origin.as_deref()), &text)
        }
        ConfigError::Message(text) => match unknown_field(&text) {
            // A top-level key: `[brokr]`, `OFFSET_TRACKING__BROKR__HOST`.
            Some((field, expected)) => at(
                &sources.of(field),
                &format!("unknown key `{field}`: the sections are {expected}"),
            ),
            None => Error::Config(in_words(&text)),
        },
        other => Error::Config(other.to_string()),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`"): the field and
/// the list.
fn unknown_field(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("unknown field `")?;
    let (field, rest) = rest.split_once('`')?;
    let expected = rest
        .strip_prefix(", expected one of ")
        .or_else(|| rest.strip_prefix(", expected "))
        .unwrap_or("no keys");
    Some((field, expected))
}

/// The config crate's and serde's wording, in ours.
fn in_words(text: &str) -> String {
    // serde: "unknown variant `redis`, expected `broker` or `sqlite`" (the names are read with
    // `by_name`, so the allowed ones are listed).
    if let Some(rest) = text.strip_prefix("unknown variant `") {
        if let Some((value, expected)) = rest.split_once("`, expected ") {
            let expected = expected.strip_prefix("one of ").unwrap_or(expected);
            return format!("unknown value `{value}`: use {expected}");
        }
    }
    if let Some(rest) = text.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return format!("expected {}, found {found}", expected_in_words(expected));
        }
    }
    text.to_owned()
}

/// What was found, without the config crate's type names for numbers.
fn found_in_words(found: &str) -> String {
    let number = [
        "64-bit integer `",
        "64-bit unsigned integer `",
        "128-bit integer `",
        "128-bit unsigned integer `",
        "floating point `",
    ]
    .iter()
    .find_map(|prefix| found.strip_prefix(prefix)?.strip_suffix('`'));
    number.map_or_else(|| found.to_owned(), str::to_owned)
}

/// Expectations, with an example where the bare word does not say enough.
fn expected_in_words(expected: &str) -> String {
    match expected {
        "a duration" => "a duration such as \"250ms\", \"5s\" or \"1h 30m\"".into(),
        "an unsigned 16 bit integer" => "a whole number from 0 to 65535".into(),
        "an integer" => "a whole number".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_wording_becomes_ours() {
        assert_eq!(
            in_words("unknown variant `redis`, expected `broker` or `sqlite`"),
            "unknown value `redis`: use `broker` or `sqlite`"
        );
        assert_eq!(
            in_words("unknown variant `x`, expected one of `a`, `b`, `c`"),
            "unknown value `x`: use `a`, `b`, `c`"
        );
        assert_eq!(
            in_words("invalid value: string \"5\", expected a duration"),
            "expected a duration such as \"250ms\", \"5s\" or \"1h 30m\", found string \"5\""
        );
        assert_eq!(
            unknown_field("unknown field `portt`, expected one of `host`, `port`"),
            Some(("portt", "`host`, `port`"))
        );
        assert_eq!(found_in_words("64-bit unsigned integer `70000`"), "70000");
        assert_eq!(found_in_words("string \"x\""), "string \"x\"");
        assert!(looks_like_key("broker.hosts[1]"));
        assert!(!looks_like_key("configuration file x does not exist"));
    }
}
