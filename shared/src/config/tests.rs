//! Loading, precedence and validation of the whole configuration.

use super::*;
use crate::offset_spec::OffsetSpec;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

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
    assert_eq!(s.processing, d.processing);
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
    let rsa = pem_file("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
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

#[test]
fn endpoints_read_host_names_ipv4_and_bracketed_ipv6() {
    let read = |text: &str| text.parse::<Endpoint>();
    let ipv6 = read("[::1]:5552").unwrap();
    assert_eq!((ipv6.host.as_str(), ipv6.port), ("::1", 5552));
    assert_eq!(ipv6.to_string(), "[::1]:5552");
    let named = read(" rabbit-1.example:5553 ").unwrap();
    assert_eq!(
        (named.host.as_str(), named.port),
        ("rabbit-1.example", 5553)
    );
    assert_eq!(named.to_string(), "rabbit-1.example:5553");
    let ipv4 = read("127.0.0.1:5561").unwrap();
    assert_eq!((ipv4.host.as_str(), ipv4.port), ("127.0.0.1", 5561));
    for bad in [
        "::1:5552",
        "localhost",
        "localhost:0",
        "localhost:99999",
        ":5552",
        "user@host:5552",
        "host:5552/path",
        "[::1]",
    ] {
        assert!(read(bad).is_err(), "{bad} was accepted: {:?}", read(bad));
    }
}

#[test]
fn numbers_and_durations_outside_their_range_are_refused_naming_the_key() {
    for (toml, key) in [
        (
            "[tracker]\nstore_every_messages = 9223372036854775807",
            "tracker.store_every_messages",
        ),
        ("[tracker]\nstore_every = \"1ns\"", "tracker.store_every"),
        (
            "[tracker]\nstore_every = \"400years\"",
            "tracker.store_every",
        ),
        ("[producer]\nbatch_size = 4000000000", "producer.batch_size"),
        (
            "[producer]\nmax_unconfirmed = 4000000000",
            "producer.max_unconfirmed",
        ),
        (
            "[producer]\nconfirm_timeout = \"10000years\"",
            "producer.confirm_timeout",
        ),
        (
            "[producer]\nreconnect_timeout = \"10000years\"",
            "producer.reconnect_timeout",
        ),
        (
            "[consumer]\nreconnect_timeout = \"10000years\"",
            "consumer.reconnect_timeout",
        ),
        (
            "[consumer]\ninitial_credits = 0",
            "consumer.initial_credits",
        ),
        (
            "[consumer]\ninitial_credits = 101",
            "consumer.initial_credits",
        ),
        (
            "[broker]\nconnect_timeout = \"0s\"",
            "broker.connect_timeout",
        ),
        ("[broker]\nheartbeat = \"10000years\"", "broker.heartbeat"),
        (
            "[processing]\nmax_in_flight = 0",
            "processing.max_in_flight",
        ),
        (
            "[processing]\nmax_in_flight = 10001",
            "processing.max_in_flight",
        ),
        (
            "[processing]\ndrain_timeout = \"10000years\"",
            "processing.drain_timeout",
        ),
    ] {
        let f = file_with(toml);
        let err = Settings::load(Some(f.path())).unwrap_err();
        assert!(
            matches!(&err, Error::Config(text) if text.contains(key) && text.contains("range")),
            "{toml}: {err}"
        );
        assert_eq!(err.exit_code(), 2);
    }
    // "0s" still turns the time trigger off; the limits themselves are allowed.
    let f = file_with("[tracker]\nstore_every = \"0s\"\nstore_every_messages = 1000000000");
    assert!(Settings::load(Some(f.path())).is_ok());
    let f = file_with("[processing]\nmax_in_flight = 10000\ndrain_timeout = \"0s\"");
    assert!(Settings::load(Some(f.path())).is_ok());
}

#[test]
fn processing_defaults_to_one_delivery_at_a_time_in_stream_order() {
    let d = Settings::default().processing;
    assert_eq!(
        d,
        ProcessingSettings {
            max_in_flight: 1,
            ordering: Ordering::Partition,
            key: None,
            drain_timeout: Duration::from_secs(30),
        }
    );
    assert!(d.validate().is_ok());
    // An empty section is the defaults too.
    let f = file_with("[processing]\n");
    assert_eq!(Settings::load(Some(f.path())).unwrap().processing, d);
}

#[test]
fn reads_the_processing_section() {
    let f = file_with(
        r#"
            [processing]
            max_in_flight = 64
            ordering = "key"
            key = "body:/customer/id"
            drain_timeout = "2s"
            "#,
    );
    let p = Settings::load(Some(f.path())).unwrap().processing;
    assert_eq!(p.max_in_flight, 64);
    assert_eq!(p.ordering, Ordering::Key);
    assert_eq!(p.key, Some(KeySource::BodyField("/customer/id".into())));
    assert_eq!(p.drain_timeout, Duration::from_secs(2));

    let f = file_with("[processing]\nmax_in_flight = 8\nordering = \"unordered\"\n");
    let p = Settings::load(Some(f.path())).unwrap().processing;
    assert_eq!((p.max_in_flight, p.ordering), (8, Ordering::Unordered));
    assert_eq!(p.key, None);
}

#[test]
fn every_key_source_form_parses_and_displays_back() {
    for (text, source) in [
        ("property:customer", KeySource::Property("customer".into())),
        (
            "property:x-order id",
            KeySource::Property("x-order id".into()),
        ),
        ("message-id", KeySource::MessageId),
        ("correlation-id", KeySource::CorrelationId),
        ("subject", KeySource::Subject),
        (
            "body:/customer/id",
            KeySource::BodyField("/customer/id".into()),
        ),
        (
            "body:/a~1b/~0c/0",
            KeySource::BodyField("/a~1b/~0c/0".into()),
        ),
    ] {
        assert_eq!(text.parse::<KeySource>(), Ok(source.clone()), "{text}");
        assert_eq!(source.to_string(), text);
    }
    // Surrounding blanks and the case of the fixed names do not matter.
    assert_eq!(" Message-ID ".parse(), Ok(KeySource::MessageId));
}

#[test]
fn bad_key_sources_are_refused_naming_processing_key_and_the_forms() {
    for bad in [
        "property:",
        "property: ",
        "body:customer",
        "body:",
        "body:/a~2",
        "nope",
        "",
    ] {
        let err = bad.parse::<KeySource>().unwrap_err().to_string();
        assert!(
            err.contains("property:<name>") && err.contains("body:<JSON pointer>"),
            "{bad:?}: {err}"
        );
        let f = file_with(&format!(
            "[processing]\nordering = \"key\"\nkey = {bad:?}\n"
        ));
        let err = Settings::load(Some(f.path())).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        let err = err.to_string();
        assert!(
            err.contains("processing.key") && err.contains("message-id, correlation-id"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn processing_key_goes_with_ordering_key_and_only_with_it() {
    for (text, expected) in [
        (
            "[processing]\nordering = \"key\"\n",
            "processing.key: ordering = \"key\" needs a key source: one of property:<name>",
        ),
        (
            "[processing]\nordering = \"unordered\"\nkey = \"subject\"\n",
            "processing.key: only used with ordering = \"key\" (ordering is \"unordered\")",
        ),
        (
            "[processing]\nkey = \"subject\"\n",
            "processing.key: only used with ordering = \"key\" (ordering is \"partition\")",
        ),
        ("[processing]\nordering = \"random\"\n", "ordering"),
        ("[processing]\nmax_inflight = 2\n", "max_inflight"),
    ] {
        let f = file_with(text);
        let err = Settings::load(Some(f.path())).unwrap_err();
        assert_eq!(err.exit_code(), 2, "{text:?}: {err}");
        assert!(err.to_string().contains(expected), "{text:?}: {err}");
    }
    let f = file_with("[processing]\nordering = \"key\"\nkey = \"property:customer\"\n");
    assert!(Settings::load(Some(f.path())).is_ok());
}

#[test]
fn the_sqlite_sink_needs_one_delivery_at_a_time_in_stream_order() {
    let sqlite = "[consumer]\nsink = \"sqlite\"\n[tracker]\nstore = \"sqlite\"\n";
    for processing in [
        "max_in_flight = 2",
        "ordering = \"unordered\"",
        "ordering = \"key\"\nkey = \"message-id\"",
    ] {
        let f = file_with(&format!("{sqlite}[processing]\n{processing}\n"));
        let err = Settings::load(Some(f.path())).unwrap_err().to_string();
        assert!(
            err.contains("consumer.sink")
                && err.contains("processing.max_in_flight = 1")
                && err.contains("processing.ordering = \"partition\""),
            "{processing}: {err}"
        );
    }
    let f = file_with(&format!(
        "{sqlite}[processing]\nmax_in_flight = 1\nordering = \"partition\"\n"
    ));
    assert!(Settings::load(Some(f.path())).is_ok());
}

/// The error of loading `text` as the configuration file, and the file's path.
fn error_of(text: &str) -> (String, String) {
    let f = file_with(text);
    let err = Settings::load(Some(f.path())).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{text:?}: {err}");
    (err.to_string(), f.path().display().to_string())
}

#[test]
fn errors_in_the_file_name_the_file_and_line_once() {
    for (text, expected) in [
        (
            "[tracker]\nstore_every = \"soon\"\n",
            ":2: tracker.store_every: expected a duration such as \"250ms\"",
        ),
        (
            "# a comment\n[broker]\nhost = \"h\"\nportt = 1\n",
            ":4: unknown key `broker.portt`: [broker] has `host`, `port`",
        ),
        (
            "[brokr]\nhost = \"x\"\n",
            ":1: unknown key `brokr`: the sections are `broker`",
        ),
        (
            "[broker]\nport = \"many\"\n",
            ":2: broker.port: expected a whole number, found string \"many\"",
        ),
        (
            "[producer]\n\nmessage_count = 0\n",
            ":3: producer.message_count: must be at least 1",
        ),
    ] {
        let (err, path) = error_of(text);
        assert!(
            err.starts_with(&format!("configuration error: {path}{expected}")),
            "{text:?} gave {err:?}"
        );
        assert_eq!(err.matches(&path).count(), 1, "{err}");
    }
    // TOML syntax: the file once, and the parser's line and column.
    let (err, path) = error_of("[broker\n");
    assert!(
        err.starts_with(&format!(
            "configuration error: {path}: TOML parse error at line 1"
        )),
        "{err}"
    );
    assert_eq!(err.matches(&path).count(), 1, "{err}");
}

#[test]
fn unknown_names_list_the_allowed_ones_in_our_words() {
    for (text, expected) in [
        (
            "[tracker]\nstore = \"redis\"\n",
            "tracker.store: unknown value `redis`: use `broker` or `sqlite`",
        ),
        (
            "[consumer]\nsink = \"redis\"\n",
            "consumer.sink: unknown value `redis`: use `none` or `sqlite`",
        ),
        (
            "[processing]\nordering = \"random\"\n",
            "processing.ordering: unknown value `random`: use `partition`, `key`, `unordered`",
        ),
        (
            "[broker]\nhosts = 5\n",
            "broker.hosts: expected a list of \"host:port\" strings",
        ),
        (
            "[metrics]\nlisten = \"nope\"\n",
            "metrics.listen: expected an address and a port",
        ),
    ] {
        let (err, _) = error_of(text);
        assert!(err.contains(expected), "{text:?} gave {err:?}");
        for internal in ["enum ", "variant", "untagged", "Kind", "invalid type"] {
            assert!(!err.contains(internal), "{text:?} gave {err:?}");
        }
    }
}

#[test]
fn the_amqp_and_management_ports_are_recognised() {
    for (text, expected) in [
        (
            "[broker]\nport = 5672\n",
            ":2: broker.port: 5672 is RabbitMQ's AMQP port; streams listen on 5552",
        ),
        (
            "[broker]\nhosts = [\"a:5552\", \"b:5672\"]\n",
            ":2: broker.hosts[1]: 'b:5672': 5672 is RabbitMQ's AMQP port; streams listen on 5552",
        ),
        (
            "[broker]\nport = 15672\n",
            ":2: broker.port: 15672 is RabbitMQ's management",
        ),
    ] {
        let (err, path) = error_of(text);
        assert!(
            err.starts_with(&format!("configuration error: {path}{expected}")),
            "{text:?} gave {err:?}"
        );
    }
    // With broker.hosts, broker.port is not used.
    let f = file_with("[broker]\nport = 5672\nhosts = [\"a:5552\"]\n");
    assert!(Settings::load(Some(f.path())).is_ok());
}

#[test]
fn an_override_is_named_as_such_never_as_the_file() {
    let f = file_with("[tracker]\nstore_every = \"1s\"\n");
    let path = f.path().display().to_string();
    for (key, value, expected) in [
        (
            "tracker.store_every",
            "5",
            "override tracker.store_every=5: tracker.store_every: expected a duration",
        ),
        (
            "broker.port",
            "5672",
            "override broker.port=5672: broker.port: 5672 is RabbitMQ's AMQP port",
        ),
        (
            "broker.portt",
            "1",
            "override broker.portt=1: unknown key `broker.portt`",
        ),
    ] {
        let loaded = Settings::load_with(Some(f.path()), &[(key, value.to_owned())]);
        let err = loaded.unwrap_err().to_string();
        assert!(err.contains(expected), "{key}={value} gave {err:?}");
        assert!(
            !err.contains(&path),
            "{key}={value} blamed the file: {err:?}"
        );
    }
}
