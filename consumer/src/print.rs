//! `consumer --print`: each message as a line on stdout through a `--format` template
//! ([`PrintHandler`], [`Format`]), and `--max-messages N` ([`Limit`], around any handler): stop
//! cleanly after N messages, storing them.
//!
//! A message counts as processed once its line is written: a reader that leaves
//! (`consumer --print | head -5`) stops the run, and only what was written before is stored
//! (see `shared::runtime::stdout`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use shared::error::{Error, Result};
use shared::runtime::stdout;
use tokio_util::sync::CancellationToken;

use crate::handler::{Delivery, Handled, Handler};

/// The placeholders a `--format` template knows, for help and errors.
pub const PLACEHOLDERS: &str = "{offset} {timestamp} {timestamp_ms} {stream} {size} {body}";

/// `--format`'s default: offset, timestamp and body, tab-separated (`cut -f3` is the body).
pub const DEFAULT_FORMAT: &str = "{offset}\\t{timestamp}\\t{body}";

/// A parsed `--format` template: text with placeholders — `{offset}`; `{timestamp}` (when the
/// broker wrote the message's chunk, RFC 3339 UTC with milliseconds); `{timestamp_ms}` (the same
/// in milliseconds since the Unix epoch); `{stream}` (the stream, or the partition); `{size}`
/// (the body's length in bytes); `{body}` (escaped: see [`escape_body`]). `{{` and `}}` are
/// braces, `\t`, `\n` and `\\` a tab, a newline and a backslash. Each message's line ends with a
/// newline of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Offset,
    Timestamp,
    TimestampMs,
    Stream,
    Size,
    Body,
}

impl Default for Format {
    fn default() -> Self {
        // The default template is a constant that parses.
        DEFAULT_FORMAT.parse().unwrap_or(Self { parts: vec![] })
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(template: &str) -> std::result::Result<Self, String> {
        let mut parts = vec![];
        let mut text = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek().copied()) {
                ('{', Some('{')) | ('}', Some('}')) => {
                    chars.next();
                    text.push(c);
                }
                ('\\', Some(escaped @ ('t' | 'n' | '\\'))) => {
                    chars.next();
                    text.push(match escaped {
                        't' => '\t',
                        'n' => '\n',
                        _ => '\\',
                    });
                }
                ('{', _) => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!(
                            "`{{{name}` is not closed: write `{{{{` for a brace"
                        ));
                    }
                    let part = match name.as_str() {
                        "offset" => Part::Offset,
                        "timestamp" => Part::Timestamp,
                        "timestamp_ms" => Part::TimestampMs,
                        "stream" => Part::Stream,
                        "size" => Part::Size,
                        "body" => Part::Body,
                        _ => {
                            return Err(format!(
                                "unknown placeholder {{{name}}}: the template knows {PLACEHOLDERS} \
                                 ({{{{ and }}}} for braces)"
                            ))
                        }
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(part);
                }
                ('}', _) => return Err("a lone `}`: write `}}` for a brace".into()),
                _ => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Self { parts })
    }
}

impl Format {
    /// Appends `delivery`'s line (of `stream`), newline included, to `out`.
    pub fn render(&self, delivery: &Delivery, stream: &str, out: &mut String) {
        let body = delivery.message().data().unwrap_or_default();
        for part in &self.parts {
            // Writing into a String cannot fail.
            let _ = match part {
                Part::Text(text) => out.write_str(text),
                Part::Offset => write!(out, "{}", delivery.offset()),
                Part::Timestamp => {
                    let ms = u64::try_from(delivery.chunk_timestamp_ms()).unwrap_or_default();
                    let at = UNIX_EPOCH + Duration::from_millis(ms);
                    write!(out, "{}", humantime::format_rfc3339_millis(at))
                }
                Part::TimestampMs => write!(out, "{}", delivery.chunk_timestamp_ms()),
                Part::Stream => out.write_str(stream),
                Part::Size => write!(out, "{}", body.len()),
                Part::Body => {
                    escape_body(body, out);
                    Ok(())
                }
            };
        }
        out.push('\n');
    }
}

/// Appends `body` to `out` so that it stays on one line and nothing is lost: UTF-8 text as it
/// is, except `\` → `\\`, newline, carriage return and tab → `\n`, `\r`, `\t`, other control
/// characters → `\u{…}`; bytes that are not UTF-8 → `\xNN`. A message without a body prints
/// nothing.
pub fn escape_body(body: &[u8], out: &mut String) {
    for chunk in body.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// `consumer --print`: writes each message's line ([`Format`]) to stdout, a batch at a time;
/// stops after the marker (a body starting with `marker`), like the tutorial's handler — except
/// in a consumer group (`service`), which goes on. A batch counts as processed once written;
/// a reader gone stops the run with nothing of that batch processed.
#[derive(Debug)]
pub struct PrintHandler {
    format: Arc<Format>,
    stream: String,
    service: bool,
}

impl PrintHandler {
    /// Prints the messages of `stream` (the stream, or the partition) with `format`.
    pub fn new(format: Arc<Format>, stream: String, service: bool) -> Self {
        Self {
            format,
            stream,
            service,
        }
    }
}

impl Handler for PrintHandler {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        let marker = (!self.service)
            .then(|| {
                deliveries.iter().position(|delivery| {
                    delivery
                        .message()
                        .data()
                        .is_some_and(shared::marker::is_marker)
                })
            })
            .flatten();
        let upto = marker.map_or(deliveries.len(), |at| at + 1);
        let mut lines = String::new();
        for delivery in &deliveries[..upto] {
            self.format.render(delivery, &self.stream, &mut lines);
        }
        match stdout::write(lines.as_bytes()) {
            Ok(()) => Ok(Handled {
                processed: upto,
                stop: marker.is_some(),
            }),
            // The reader left: stop, storing what was written before.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(Handled {
                processed: 0,
                stop: true,
            }),
            Err(err) => Err(Error::Local(format!("cannot write to stdout: {err}"))),
        }
    }
}

/// `--max-messages N` around any handler: passes on at most N messages in all — a budget shared
/// by every partition's handler — then stops the run (`done`: the other partitions stop too), the
/// N stored as usual.
pub struct Limit<H> {
    inner: H,
    remaining: Arc<AtomicU64>,
    done: CancellationToken,
}

impl<H: Handler> Limit<H> {
    /// `inner`, sharing the budget `remaining` (create it with N); cancels `done` once it is
    /// spent.
    pub fn new(inner: H, remaining: Arc<AtomicU64>, done: CancellationToken) -> Self {
        Self {
            inner,
            remaining,
            done,
        }
    }
}

impl<H: Handler> Handler for Limit<H> {
    fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
        let wanted = deliveries.len() as u64;
        let claimed = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                Some(left - left.min(wanted))
            })
            .map_or(0, |left| left.min(wanted));
        if claimed == 0 {
            self.done.cancel();
            return Ok(Handled {
                processed: 0,
                stop: true,
            });
        }
        let take = usize::try_from(claimed).unwrap_or(deliveries.len());
        let handled = self.inner.handle(&deliveries[..take])?;
        // What the inner handler did not use (it stopped early) goes back to the others.
        let unused = take.saturating_sub(handled.processed) as u64;
        self.remaining.fetch_add(unused, Ordering::AcqRel);
        let spent = self.remaining.load(Ordering::Acquire) == 0;
        if spent {
            self.done.cancel();
        }
        Ok(Handled {
            processed: handled.processed,
            stop: handled.stop || spent,
        })
    }

    fn stopped(&mut self) {
        self.inner.stopped();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::Message;

    fn delivery(offset: u64, body: &[u8]) -> Delivery {
        Delivery::new(
            offset,
            1_764_720_000_123,
            Message::builder().body(body.to_vec()).build(),
        )
    }

    fn line(template: &str, delivery: &Delivery) -> String {
        let format: Format = template.parse().unwrap();
        let mut out = String::new();
        format.render(delivery, "s", &mut out);
        out
    }

    #[test]
    fn every_placeholder_renders() {
        let d = delivery(42, b"hello");
        assert_eq!(
            line(
                "{offset} {timestamp} {timestamp_ms} {stream} {size} {body}",
                &d
            ),
            "42 2025-12-03T00:00:00.123Z 1764720000123 s 5 hello\n"
        );
        assert_eq!(
            line(DEFAULT_FORMAT, &d),
            "42\t2025-12-03T00:00:00.123Z\thello\n"
        );
        assert_eq!(line("{{{offset}}}\\\\", &d), "{42}\\\n");
    }

    #[test]
    fn a_bad_template_is_refused_naming_the_problem() {
        let err = "{offset} {bdy}".parse::<Format>().unwrap_err();
        assert!(err.contains("{bdy}") && err.contains("{body}"), "{err}");
        assert!("{offset".parse::<Format>().is_err());
        assert!("a } b".parse::<Format>().is_err());
    }

    #[test]
    fn bodies_stay_on_one_line_and_lose_nothing() {
        let mut out = String::new();
        escape_body(b"caf\xc3\xa9 \xff\xfe\ttab\nnl\\ \x01", &mut out);
        assert_eq!(out, "café \\xff\\xfe\\ttab\\nnl\\\\ \\u{1}");
        let mut none = String::new();
        escape_body(b"", &mut none);
        assert_eq!(none, "");
    }

    struct Count(usize);

    impl Handler for Count {
        fn handle(&mut self, deliveries: &[Delivery]) -> Result<Handled> {
            self.0 += deliveries.len();
            Ok(Handled::all(deliveries.len()))
        }
    }

    #[test]
    fn the_limit_passes_on_n_messages_in_all_then_stops_every_partition() {
        let batch: Vec<Delivery> = (0..10).map(|i| delivery(i, b"x")).collect();
        let remaining = Arc::new(AtomicU64::new(14));
        let done = CancellationToken::new();
        let mut one = Limit::new(Count(0), remaining.clone(), done.clone());
        let mut two = Limit::new(Count(0), remaining.clone(), done.clone());
        assert_eq!(one.handle(&batch).unwrap(), Handled::all(10));
        assert!(!done.is_cancelled());
        let last = two.handle(&batch).unwrap();
        assert_eq!((last.processed, last.stop), (4, true));
        assert!(done.is_cancelled());
        assert_eq!(one.inner.0 + two.inner.0, 14);
        let after = one.handle(&batch).unwrap();
        assert_eq!((after.processed, after.stop), (0, true));
    }
}

/// The consumer's output flags: `--print`, `--format`, `--max-messages`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PrintArgs {
    /// Print each message on stdout instead of the tutorial's lines: offset, timestamp and body,
    /// tab-separated (see --format); stops at the marker like the tutorial. Only the messages
    /// go to stdout then
    #[arg(long)]
    pub print: bool,

    /// With --print (implies it): each message's line, from the placeholders {offset},
    /// {timestamp} (the chunk's, RFC 3339 UTC), {timestamp_ms}, {stream} (or partition), {size}
    /// (body bytes), {body} (newlines, tabs, backslashes, control characters and bytes that
    /// are not UTF-8 escaped as \n \t \\ \u{..} \xNN); {{ and }} are braces, \t \n a tab and a
    /// newline [default: {offset}\t{timestamp}\t{body}]
    #[arg(long, value_name = "TEMPLATE")]
    pub format: Option<Format>,

    /// Stop cleanly after N messages (over every partition), storing them
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_messages: Option<u64>,
}

impl PrintArgs {
    /// The format to print with, if messages are printed.
    pub fn printing(&self) -> Option<Format> {
        match (&self.format, self.print) {
            (Some(format), _) => Some(format.clone()),
            (None, true) => Some(Format::default()),
            (None, false) => None,
        }
    }
}
