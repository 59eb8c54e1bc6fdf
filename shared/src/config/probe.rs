//! `config --check`: a connection probe that explains what it finds, one line a step, each `ok`
//! or `FAIL` with a hint — TCP reachable, the stream protocol answers (TLS too, when configured),
//! the credentials are accepted, the virtual host opens, the stream (or super stream and its
//! partitions) exists, and the management HTTP API answers at `broker.management_url`.
//!
//! The handshake's steps are told apart by our own delivery connection (`delivery`), which says
//! at which step it failed; the stream is then asked about on a client connection.

use std::fmt;

use delivery::{DeliveryError, QueryConnection};

use super::{BrokerSettings, Endpoint, OffsetStoreKind, Settings};
use crate::connection::{self, StreamState};
use crate::error::{Error, Result};

/// Which program asks: what each may rely on differs (the producer creates a missing stream; only
/// the consumer's `offsets` commands use the management API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    /// `producer config --check`.
    Producer,
    /// `consumer config --check`.
    Consumer,
}

/// A step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// It works.
    Ok,
    /// It does not, and the program needs it: the probe fails.
    Fail,
    /// It does not, but this program can do without it.
    Warn,
    /// Not tried: an earlier step failed.
    Skipped,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::Fail => "FAIL",
            Status::Warn => "warn",
            Status::Skipped => "--",
        })
    }
}

/// One step of the probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked ("TCP", "credentials", …).
    pub what: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub found: String,
    /// What to do about a failure.
    pub hint: Option<String>,
}

impl Check {
    /// A step that works.
    pub fn ok(what: &str, found: impl Into<String>) -> Self {
        Self::new(what, Status::Ok, found, None)
    }

    /// A step that does not, with what to do about it.
    pub fn fail(what: &str, found: impl Into<String>, hint: impl Into<String>) -> Self {
        Self::new(what, Status::Fail, found, Some(hint.into()))
    }

    pub(super) fn new(
        what: &str,
        status: Status,
        found: impl Into<String>,
        hint: Option<String>,
    ) -> Self {
        Self {
            what: what.to_owned(),
            status,
            found: found.into(),
            hint,
        }
    }
}

/// The handshake's steps, in order.
const TCP: &str = "TCP";
const TLS: &str = "TLS";
const PROTOCOL: &str = "stream protocol";
const CREDENTIALS: &str = "credentials";
const VHOST: &str = "virtual host";

/// Runs every step against `settings` and returns what each found.
pub async fn probe(settings: &Settings, program: Program) -> Vec<Check> {
    let broker = &settings.broker;
    let mut checks = Vec::new();
    let mut any_node_open = false;
    for endpoint in broker.endpoints() {
        let handshake = handshake(broker, &endpoint).await;
        any_node_open |= handshake.iter().all(|c| c.status == Status::Ok);
        checks.extend(handshake);
    }
    if any_node_open {
        checks.extend(stream_checks(settings, program).await);
    } else {
        let skipped = |what: &str| {
            Check::new(
                what,
                Status::Skipped,
                "not checked: no node let us in",
                None,
            )
        };
        checks.push(skipped("stream"));
    }
    checks.push(super::management::check(broker, program).await);
    checks
}

/// How many steps failed.
pub fn failures(checks: &[Check]) -> usize {
    checks.iter().filter(|c| c.status == Status::Fail).count()
}

/// The checks as text: `status  what  found`, a hint under each failure.
pub fn render(checks: &[Check]) -> String {
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    let mut out = String::new();
    for check in checks {
        out.push_str(&format!(
            "{:<4}  {:<width$}  {}\n",
            check.status.to_string(),
            check.what,
            check.found
        ));
        if let Some(hint) = &check.hint {
            out.push_str(&format!("{:<4}  {:<width$}  hint: {hint}\n", "", ""));
        }
    }
    out
}

/// TCP, TLS, the protocol, the credentials and the virtual host on one node: each step `ok` up to
/// the one that failed, the rest skipped.
async fn handshake(broker: &BrokerSettings, endpoint: &Endpoint) -> Vec<Check> {
    let tls = match connection::rustls_client_config_of(broker) {
        Ok(tls) => tls,
        Err(err) => {
            return vec![Check::fail(
                TLS,
                err.to_string(),
                "fix [broker.tls] (see `--help` and the README's TLS section)",
            )]
        }
    };
    let mut steps = vec![TCP];
    if tls.is_some() {
        steps.push(TLS);
    }
    steps.extend([PROTOCOL, CREDENTIALS, VHOST]);
    let options = connection::delivery_options(broker, tls, endpoint, "config --check");
    let (failed_at, found, hint) = match QueryConnection::open(&options).await {
        Ok(connection) => {
            drop(connection);
            return steps
                .into_iter()
                .map(|step| Check::ok(step, passed(step, broker, endpoint)))
                .collect();
        }
        Err(err) => explain(&err, broker, endpoint),
    };
    let mut checks = Vec::new();
    for step in steps {
        if step == failed_at {
            checks.push(Check::fail(step, found.clone(), hint.clone()));
        } else if checks.iter().any(|c: &Check| c.status == Status::Fail) {
            checks.push(Check::new(
                step,
                Status::Skipped,
                format!("not checked: {failed_at} failed"),
                None,
            ));
        } else {
            checks.push(Check::ok(step, passed(step, broker, endpoint)));
        }
    }
    checks
}

/// What a passed step says.
fn passed(step: &str, broker: &BrokerSettings, endpoint: &Endpoint) -> String {
    match step {
        TCP => format!("{endpoint} accepts connections"),
        TLS => format!("{endpoint}: the broker's certificate is trusted"),
        PROTOCOL => format!("{endpoint} speaks the RabbitMQ stream protocol"),
        CREDENTIALS => format!("user '{}' accepted", broker.username),
        _ => format!("'{}' opened", broker.virtual_host),
    }
}

/// The step a handshake failed at, what was found, and a hint.
fn explain(
    err: &DeliveryError,
    broker: &BrokerSettings,
    endpoint: &Endpoint,
) -> (&'static str, String, String) {
    let port_hint = format!(
        "is the broker running (`scripts/broker.sh up`), and is {} its stream port (5552; TLS \
         5551)? Set it with --host/--port, OFFSET_TRACKING__BROKER__PORT or broker.port",
        endpoint.port
    );
    let protocol_hint = format!(
        "something answers on {endpoint} but not the stream protocol: is it the AMQP port (5672) \
         or the management port (15672)? The stream port is 5552 (TLS 5551); a TLS listener \
         needs [broker.tls]"
    );
    let credentials_hint = "check broker.username and broker.password \
         (OFFSET_TRACKING__BROKER__USERNAME / OFFSET_TRACKING__BROKER__PASSWORD)"
        .to_owned();
    match err {
        DeliveryError::Connect { source, .. } => (
            TCP,
            format!("cannot connect to {endpoint}: {source}"),
            port_hint,
        ),
        DeliveryError::Timeout { step, after, .. } => {
            let found = format!(
                "no answer within {} (broker.connect_timeout) during {step}",
                humantime::format_duration(*after)
            );
            match *step {
                "TCP connect" => (
                    TCP,
                    found,
                    format!("a wrong host, or a firewall? {port_hint}"),
                ),
                "TLS handshake" => (
                    TLS,
                    found,
                    "is this port a TLS listener (5551 here)?".to_owned(),
                ),
                "SASL authenticate" => (CREDENTIALS, found, credentials_hint),
                "tune" | "open virtual host" => (VHOST, found, vhost_hint(broker)),
                _ => (PROTOCOL, found, protocol_hint),
            }
        }
        DeliveryError::Tls { source, .. } => (
            TLS,
            format!("TLS with {endpoint} failed: {source}"),
            "check broker.tls.ca_file (the CA that signed the broker's certificate) and that the \
             certificate names broker.host"
                .to_owned(),
        ),
        DeliveryError::Authentication { username, code, .. } => (
            CREDENTIALS,
            format!("user '{username}' refused ({code:?})"),
            credentials_hint,
        ),
        DeliveryError::Refused {
            operation: "open",
            code,
            ..
        } => (
            VHOST,
            format!("'{}' refused ({code:?})", broker.virtual_host),
            vhost_hint(broker),
        ),
        other => (PROTOCOL, crate::error::with_sources(other), protocol_hint),
    }
}

fn vhost_hint(broker: &BrokerSettings) -> String {
    format!(
        "does the virtual host '{}' exist, and may user '{}' use it? (broker.virtual_host)",
        broker.virtual_host, broker.username
    )
}

/// The stream, or the super stream and its partitions; for the consumer, its stored offset.
async fn stream_checks(settings: &Settings, program: Program) -> Vec<Check> {
    let name = &settings.stream.name;
    let client = match connection::client(&settings.broker, "config --check").await {
        Ok(client) => client,
        Err(err) => {
            return vec![Check::fail(
                "stream",
                err.to_string(),
                "see the lines above",
            )]
        }
    };
    let missing = |what: &str| match (program, settings.consumer.create_stream) {
        (Program::Producer, _) => Check::ok(
            what,
            format!("'{name}' does not exist yet: the producer creates it with [stream]"),
        ),
        (Program::Consumer, true) => Check::ok(
            what,
            format!("'{name}' does not exist yet: consumer.create_stream creates it"),
        ),
        (Program::Consumer, false) => Check::fail(
            what,
            format!("'{name}' does not exist"),
            "run the producer first, or check stream.name (--stream); --create-stream creates it",
        ),
    };
    let mut checks = Vec::new();
    let partitions = settings.stream.partitions;
    if partitions > 0 {
        checks.push(match connection::partitions(&client, name).await {
            Ok(Some(found)) if found.len() == partitions as usize => Check::ok(
                "partitions",
                format!(
                    "super stream '{name}': {} partitions ({} … {})",
                    found.len(),
                    found.first().map_or("", String::as_str),
                    found.last().map_or("", String::as_str)
                ),
            ),
            Ok(Some(found)) => Check::fail(
                "partitions",
                format!(
                    "super stream '{name}' has {} partitions, stream.partitions says {partitions}",
                    found.len()
                ),
                "set stream.partitions to what the super stream has",
            ),
            Ok(None) => missing("partitions"),
            Err(err) => Check::fail("partitions", err.to_string(), "see the lines above"),
        });
    } else {
        let state = connection::stream_state(&client, name).await;
        let exists = matches!(state, Ok(StreamState::Available { .. }));
        checks.push(match state {
            Ok(StreamState::Available { replicas }) => Check::ok(
                "stream",
                match replicas {
                    0 => format!("'{name}' exists, its leader is up (no replica online)"),
                    n => format!("'{name}' exists, its leader is up, {n} replica(s) online"),
                },
            ),
            Ok(StreamState::Unavailable) => Check::fail(
                "stream",
                format!("'{name}' exists but {}", connection::NO_LEADER),
                "wait for the cluster to elect a leader; check its nodes",
            ),
            Ok(StreamState::Missing) => missing("stream"),
            Err(err) => Check::fail("stream", err.to_string(), "see the lines above"),
        });
        // With tracker.store = "sqlite" the next run resumes from the database, not from the
        // broker's copy: the consumer checks that step itself (`config_command`'s `local`).
        if program == Program::Consumer
            && exists
            && settings.tracker.store == OffsetStoreKind::Broker
        {
            let consumer = &settings.consumer.name;
            checks.push(
                match connection::stored_offset(&client, consumer, name).await {
                    Ok(Some(offset)) => Check::ok(
                        "stored offset",
                        format!(
                            "'{consumer}' stored {offset}: the next run starts at {}",
                            offset + 1
                        ),
                    ),
                    Ok(None) => Check::ok(
                        "stored offset",
                        format!(
                            "none for '{consumer}': the next run attaches at consumer.offset = {}",
                            settings.consumer.offset
                        ),
                    ),
                    Err(err) => Check::fail("stored offset", err.to_string(), "see the error"),
                },
            );
        }
    }
    connection::close_within("the probe's connection", client.close()).await;
    checks
}

/// `config`: prints the effective configuration with each value's origin; with `check`, then
/// probes the broker, adds the steps the program checked itself (`local`: the consumer's SQLite
/// offsets), and fails (exit 1) when a step the program needs fails.
pub async fn config_command(
    settings: &Settings,
    file: Option<&std::path::Path>,
    overrides: &[(&str, String)],
    program: Program,
    check: bool,
    local: impl FnOnce() -> Vec<Check>,
) -> Result<()> {
    let sections = match program {
        Program::Producer => super::show::PRODUCER_SECTIONS,
        Program::Consumer => super::show::CONSUMER_SECTIONS,
    };
    let shown = super::show::effective(settings, file, overrides, sections);
    print(&super::show::render(file, &shown))?;
    if !check {
        return Ok(());
    }
    print(&format!("\nprobe of {}:\n", settings.broker.endpoint()))?;
    let mut checks = probe(settings, program).await;
    checks.extend(local());
    print(&render(&checks))?;
    match failures(&checks) {
        0 => Ok(()),
        n => Err(Error::Local(format!(
            "the probe failed: {n} check(s) FAIL (see the hints above)"
        ))),
    }
}

fn print(text: &str) -> Result<()> {
    match crate::runtime::stdout::write(text.as_bytes()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::Local(format!("cannot write to stdout: {err}")))
        }
        _ => Ok(()),
    }
}
