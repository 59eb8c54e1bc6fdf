//! A message's key for `ordering = "key"`: read from where `[processing] key` says
//! ([`KeySource`]), as bytes.
//!
//! The key only groups the deliveries of one running consumer (messages with equal keys are
//! processed one after another); it is never stored or sent, so its byte form only has to be
//! the same for equal values within one process. It is:
//!
//! - a string or symbol: its UTF-8 bytes;
//! - binary: the bytes themselves;
//! - an integer of any width: its decimal text (`42`, `-7`), a boolean `true`/`false`, a char
//!   its UTF-8 bytes, a UUID its lowercase hyphenated text — so `42` the integer and `"42"` the
//!   string are the same key;
//! - a float, a double or a timestamp (whose values `rabbitmq-stream-protocol` keeps private):
//!   its `Debug` text, such as `Double(OrderedFloat(1.5))`;
//! - a JSON body field: a string its UTF-8 bytes, a number, boolean, array or object its compact
//!   JSON text (`42`, `true`, `{"a":1}`).
//!
//! A message without the key — no such property, no properties at all, a body that is not
//! JSON (or not UTF-8), a pointer that finds nothing, a null value — gets the empty key, which
//! it shares with every other message without one: such messages are processed one after
//! another, in stream order, never dropped. (An empty string is the empty key too.)

use delivery::Message;
use rabbitmq_stream_client::types::{Properties, SimpleValue};
use shared::config::KeySource;

/// The key of `message`, read from `source`; the empty key if the message has none.
pub(crate) fn key_of(source: &KeySource, message: &Message) -> Vec<u8> {
    match source {
        KeySource::Property(name) => message
            .application_properties()
            .and_then(|properties| properties.get(name))
            .map(simple_value_key)
            .unwrap_or_default(),
        KeySource::MessageId => id_key(message.properties(), Id::Message),
        KeySource::CorrelationId => id_key(message.properties(), Id::Correlation),
        KeySource::Subject => message
            .properties()
            .and_then(|properties| properties.subject.as_deref())
            .map(|subject| subject.as_bytes().to_vec())
            .unwrap_or_default(),
        KeySource::BodyField(pointer) => body_field_key(message.data(), pointer),
    }
}

/// The key form of an application property's value (see the module doc).
fn simple_value_key(value: &SimpleValue) -> Vec<u8> {
    match value {
        SimpleValue::Null => Vec::new(),
        SimpleValue::Boolean(value) => value.to_string().into_bytes(),
        SimpleValue::Ubyte(value) => value.to_string().into_bytes(),
        SimpleValue::Ushort(value) => value.to_string().into_bytes(),
        SimpleValue::Uint(value) => value.to_string().into_bytes(),
        SimpleValue::Ulong(value) => value.to_string().into_bytes(),
        SimpleValue::Byte(value) => value.to_string().into_bytes(),
        SimpleValue::Short(value) => value.to_string().into_bytes(),
        SimpleValue::Int(value) => value.to_string().into_bytes(),
        SimpleValue::Long(value) => value.to_string().into_bytes(),
        SimpleValue::Char(value) => value.to_string().into_bytes(),
        SimpleValue::Uuid(value) => value.to_string().into_bytes(),
        SimpleValue::Binary(bytes) => bytes.clone(),
        SimpleValue::String(text) => text.as_bytes().to_vec(),
        SimpleValue::Symbol(symbol) => symbol.as_bytes().to_vec(),
        SimpleValue::Float(_) | SimpleValue::Double(_) | SimpleValue::Timestamp(_) => {
            format!("{value:?}").into_bytes()
        }
    }
}

/// Which AMQP id property.
#[derive(Debug, Clone, Copy)]
enum Id {
    Message,
    Correlation,
}

/// The key form of the message-id or correlation-id: the same as an application property of
/// the same type.
///
/// The protocol crate does not export the type of these ids (`MessageId`: ulong, long, uuid,
/// binary or string), but it implements `TryFrom<&MessageId>` for a reference to each variant's
/// value: the id is read through those.
fn id_key(properties: Option<&Properties>, which: Id) -> Vec<u8> {
    let Some(properties) = properties else {
        return Vec::new();
    };
    let id = match which {
        Id::Message => properties.message_id.as_ref(),
        Id::Correlation => properties.correlation_id.as_ref(),
    };
    let Some(id) = id else {
        return Vec::new();
    };
    if let Ok(text) = <&String>::try_from(id) {
        return text.as_bytes().to_vec();
    }
    if let Ok(bytes) = <&Vec<u8>>::try_from(id) {
        return bytes.clone();
    }
    if let Ok(number) = <&u64>::try_from(id) {
        return number.to_string().into_bytes();
    }
    if let Ok(number) = <&i64>::try_from(id) {
        return number.to_string().into_bytes();
    }
    if let Some(uuid) = variant(id, SimpleValue::Uuid) {
        return uuid.to_string().into_bytes();
    }
    // Only a variant added by a later protocol crate gets here.
    format!("{id:?}").into_bytes()
}

/// `id`'s value if it is of the type `constructor` wraps: names the UUID type, which this crate
/// does not depend on, through `SimpleValue::Uuid`.
fn variant<'a, I, T>(id: &'a I, _constructor: fn(T) -> SimpleValue) -> Option<&'a T>
where
    &'a T: TryFrom<&'a I>,
{
    <&T>::try_from(id).ok()
}

/// The key form of the field at `pointer` (RFC 6901) of a JSON body (see the module doc).
fn body_field_key(body: Option<&[u8]>, pointer: &str) -> Vec<u8> {
    let Some(body) = body else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    match json.pointer(pointer) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::String(text)) => text.as_bytes().to_vec(),
        Some(other) => other.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn property(name: &str) -> KeySource {
        KeySource::Property(name.to_owned())
    }

    fn body(pointer: &str) -> KeySource {
        KeySource::BodyField(pointer.to_owned())
    }

    fn with_property(name: &str, value: impl Into<SimpleValue>) -> Message {
        Message::builder()
            .application_properties()
            .insert(name, value)
            .message_builder()
            .build()
    }

    fn with_body(data: impl Into<Vec<u8>>) -> Message {
        Message::builder().body(data).build()
    }

    fn bare() -> Message {
        Message::builder().build()
    }

    #[test]
    fn string_property() {
        let message = with_property("customer", "c-17");
        assert_eq!(key_of(&property("customer"), &message), b"c-17");
    }

    #[test]
    fn property_names_are_exact() {
        let message = Message::builder()
            .application_properties()
            .insert("customer", "c-17")
            .insert("Customer", "other")
            .message_builder()
            .build();
        assert_eq!(key_of(&property("customer"), &message), b"c-17");
        assert_eq!(key_of(&property("Customer"), &message), b"other");
        assert_eq!(key_of(&property("CUSTOMER"), &message), b"");
    }

    #[test]
    fn numeric_properties_are_their_decimal_text() {
        for (value, expected) in [
            (SimpleValue::Int(42), "42"),
            (SimpleValue::Long(-7), "-7"),
            (SimpleValue::Ulong(u64::MAX), "18446744073709551615"),
            (SimpleValue::Uint(3), "3"),
            (SimpleValue::Ushort(4), "4"),
            (SimpleValue::Ubyte(5), "5"),
            (SimpleValue::Byte(-6), "-6"),
            (SimpleValue::Short(-300), "-300"),
        ] {
            let message = with_property("n", value.clone());
            assert_eq!(
                key_of(&property("n"), &message),
                expected.as_bytes(),
                "{value:?}"
            );
        }
    }

    #[test]
    fn an_integer_and_its_text_are_the_same_key() {
        let number = with_property("n", 42i32);
        let text = with_property("n", "42");
        assert_eq!(
            key_of(&property("n"), &number),
            key_of(&property("n"), &text)
        );
    }

    #[test]
    fn other_simple_properties() {
        let timestamp = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        let cases: [(SimpleValue, &[u8]); 7] = [
            (SimpleValue::Boolean(true), b"true"),
            (SimpleValue::Char('é'), "é".as_bytes()),
            (uuid_value(), UUID.as_bytes()),
            (
                SimpleValue::Binary(vec![0xff, 0x00, 0x80]),
                &[0xff, 0x00, 0x80],
            ),
            (SimpleValue::Symbol("sym".into()), b"sym"),
            (SimpleValue::String("ünï".to_owned()), "ünï".as_bytes()),
            (SimpleValue::Null, b""),
        ];
        for (value, expected) in cases {
            let message = with_property("p", value.clone());
            assert_eq!(key_of(&property("p"), &message), expected, "{value:?}");
        }

        // Floats and timestamps: a stable text, equal for equal values.
        for value in [
            SimpleValue::Float(1.5.into()),
            SimpleValue::Double(2.25.into()),
            SimpleValue::Timestamp(timestamp.into()),
        ] {
            let one = key_of(&property("p"), &with_property("p", value.clone()));
            let again = key_of(&property("p"), &with_property("p", value.clone()));
            assert!(!one.is_empty(), "{value:?}");
            assert_eq!(one, again, "{value:?}");
        }
        let one = key_of(
            &property("p"),
            &with_property("p", SimpleValue::Double(1.0.into())),
        );
        let two = key_of(
            &property("p"),
            &with_property("p", SimpleValue::Double(2.0.into())),
        );
        assert_ne!(one, two);
    }

    #[test]
    fn a_missing_property_is_the_empty_key() {
        assert_eq!(key_of(&property("customer"), &bare()), b"");
        let other = with_property("region", "eu");
        assert_eq!(key_of(&property("customer"), &other), b"");
    }

    const UUID: &str = "67e55044-10b1-426f-9247-bb680e5fe0c8";

    /// `UUID` as an AMQP uuid (the `uuid` crate is not a dependency: its type is inferred).
    fn uuid_value() -> SimpleValue {
        SimpleValue::Uuid(UUID.parse().unwrap())
    }

    #[test]
    fn message_id_of_each_type() {
        let SimpleValue::Uuid(uuid) = uuid_value() else {
            unreachable!()
        };
        let string = Message::builder()
            .properties()
            .message_id("order-1".to_owned())
            .message_builder()
            .build();
        let ulong = Message::builder()
            .properties()
            .message_id(42u64)
            .message_builder()
            .build();
        let long = Message::builder()
            .properties()
            .message_id(-42i64)
            .message_builder()
            .build();
        let binary = Message::builder()
            .properties()
            .message_id(vec![1u8, 2, 0xff])
            .message_builder()
            .build();
        let uuid = Message::builder()
            .properties()
            .message_id(uuid)
            .message_builder()
            .build();
        assert_eq!(key_of(&KeySource::MessageId, &string), b"order-1");
        assert_eq!(key_of(&KeySource::MessageId, &ulong), b"42");
        assert_eq!(key_of(&KeySource::MessageId, &long), b"-42");
        assert_eq!(key_of(&KeySource::MessageId, &binary), [1, 2, 0xff]);
        assert_eq!(key_of(&KeySource::MessageId, &uuid), UUID.as_bytes());
        // The correlation-id is another property.
        assert_eq!(key_of(&KeySource::CorrelationId, &string), b"");
    }

    #[test]
    fn correlation_id() {
        let message = Message::builder()
            .properties()
            .message_id("m-1".to_owned())
            .correlation_id("request-9".to_owned())
            .message_builder()
            .build();
        assert_eq!(key_of(&KeySource::CorrelationId, &message), b"request-9");
        assert_eq!(key_of(&KeySource::MessageId, &message), b"m-1");
        let numeric = Message::builder()
            .properties()
            .correlation_id(7u64)
            .message_builder()
            .build();
        assert_eq!(key_of(&KeySource::CorrelationId, &numeric), b"7");
    }

    #[test]
    fn subject() {
        let message = Message::builder()
            .properties()
            .subject("orders.eu")
            .message_builder()
            .build();
        assert_eq!(key_of(&KeySource::Subject, &message), b"orders.eu");
        assert_eq!(key_of(&KeySource::MessageId, &message), b"");
    }

    #[test]
    fn missing_amqp_properties_are_the_empty_key() {
        for source in [
            KeySource::MessageId,
            KeySource::CorrelationId,
            KeySource::Subject,
        ] {
            assert_eq!(key_of(&source, &bare()), b"", "{source:?}");
            let body_only = with_body(&b"{\"id\": 1}"[..]);
            assert_eq!(key_of(&source, &body_only), b"", "{source:?}");
            // Properties present, but not this one.
            let other = Message::builder()
                .properties()
                .reply_to("somewhere")
                .message_builder()
                .build();
            assert_eq!(key_of(&source, &other), b"", "{source:?}");
        }
    }

    #[test]
    fn body_string_field() {
        let message = with_body(r#"{"customer": "c-17", "amount": 3}"#);
        assert_eq!(key_of(&body("/customer"), &message), b"c-17");
    }

    #[test]
    fn body_nested_field() {
        let message = with_body(
            r#"{"order": {"customer": {"id": "c-17", "tier": 2}}, "items": [{"sku": "s-1"}]}"#,
        );
        assert_eq!(key_of(&body("/order/customer/id"), &message), b"c-17");
        assert_eq!(key_of(&body("/order/customer/tier"), &message), b"2");
        assert_eq!(key_of(&body("/items/0/sku"), &message), b"s-1");
        assert_eq!(key_of(&body("/items/1/sku"), &message), b"");
        assert_eq!(key_of(&body("/order/customer/name"), &message), b"");
        assert_eq!(key_of(&body("/order/nothing/id"), &message), b"");
    }

    #[test]
    fn body_pointer_escapes() {
        let message = with_body(r#"{"a/b": "slash", "m~n": "tilde"}"#);
        assert_eq!(key_of(&body("/a~1b"), &message), b"slash");
        assert_eq!(key_of(&body("/m~0n"), &message), b"tilde");
    }

    #[test]
    fn body_non_string_fields_are_compact_json() {
        let message = with_body(
            r#"{"n": 42, "neg": -1.5, "t": true, "a": [1, "x"], "o": {"k": 1}, "z": null, "e": ""}"#,
        );
        assert_eq!(key_of(&body("/n"), &message), b"42");
        assert_eq!(key_of(&body("/neg"), &message), b"-1.5");
        assert_eq!(key_of(&body("/t"), &message), b"true");
        assert_eq!(key_of(&body("/a"), &message), br#"[1,"x"]"#);
        assert_eq!(key_of(&body("/o"), &message), br#"{"k":1}"#);
        assert_eq!(key_of(&body("/z"), &message), b"", "null is no key");
        assert_eq!(key_of(&body("/e"), &message), b"", "an empty string");
        // A number and its text are the same key.
        let text = with_body(r#"{"n": "42"}"#);
        assert_eq!(key_of(&body("/n"), &text), b"42");
    }

    #[test]
    fn body_field_string_with_non_ascii() {
        let message = with_body(r#"{"name": "Zoë \u00e9"}"#);
        assert_eq!(key_of(&body("/name"), &message), "Zoë é".as_bytes());
    }

    #[test]
    fn a_body_without_the_field_is_the_empty_key() {
        // No body at all.
        assert_eq!(key_of(&body("/customer"), &bare()), b"");
        // Not JSON.
        assert_eq!(key_of(&body("/customer"), &with_body("plain text")), b"");
        // Not UTF-8.
        assert_eq!(
            key_of(&body("/customer"), &with_body(vec![0xff, 0xfe, 0x7b])),
            b""
        );
        // JSON, but with something else or not an object.
        assert_eq!(key_of(&body("/customer"), &with_body(r#"{"id": 1}"#)), b"");
        assert_eq!(key_of(&body("/customer"), &with_body("[1, 2]")), b"");
        assert_eq!(key_of(&body("/customer"), &with_body("17")), b"");
        // Empty.
        assert_eq!(key_of(&body("/customer"), &with_body(Vec::new())), b"");
        // Truncated.
        assert_eq!(
            key_of(&body("/customer"), &with_body(r#"{"customer": "c"#)),
            b""
        );
    }

    #[test]
    fn the_body_is_not_the_property_and_the_property_not_the_body() {
        let message = Message::builder()
            .application_properties()
            .insert("customer", "from-property")
            .message_builder()
            .body(r#"{"customer": "from-body"}"#)
            .build();
        assert_eq!(key_of(&property("customer"), &message), b"from-property");
        assert_eq!(key_of(&body("/customer"), &message), b"from-body");
    }
}
