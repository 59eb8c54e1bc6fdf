//! `consumer`: attaches to the stream as a named consumer — after its stored offset if it has one,
//! else at the configured position — processes messages until the marker, and leaves the tracker
//! to store its progress on the broker.

use std::process::ExitCode;

use clap::Parser;
use consumer::{Handler, SqliteSink, TutorialHandler};
use shared::cli::{push, CommonArgs};
use shared::config::{Settings, SinkKind};
use shared::error::Result;
use shared::offset_spec::show_offset as show;
use shared::{runtime, OffsetSpec};
use tokio_util::sync::CancellationToken;
use tracker::Database;

/// Consume a stream as a named consumer until the marker: from where the last run stopped if
/// the broker holds an offset for the name, else from the configured position.
#[derive(Debug, Parser)]
#[command(version, after_help = shared::cli::EXIT_CODES)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,

    /// Where to attach when no offset is stored for the name: first, last, next, an offset, or
    /// timestamp:<RFC 3339> (consumer.offset) [default: first]
    #[arg(long, value_name = "SPEC", env = "OFFSET_TRACKING__CONSUMER__OFFSET")]
    offset: Option<OffsetSpec>,

    /// Consumer name: the broker stores its offset under it (consumer.name) [default: consumer-1]
    #[arg(
        long,
        value_name = "NAME",
        env = "OFFSET_TRACKING__CONSUMER__NAME",
        global = true
    )]
    name: Option<String>,

    /// Ignore the stored offset this once and attach at --offset (e.g. `--replay --offset first`
    /// re-reads the stream from its start); stores then go on from what this run processes
    #[arg(long)]
    replay: bool,

    #[command(subcommand)]
    command: Option<Command>,

    /// Store after this many processed messages; 0 turns it off
    /// (tracker.store_every_messages) [default: 10]
    #[arg(
        long,
        value_name = "N",
        env = "OFFSET_TRACKING__TRACKER__STORE_EVERY_MESSAGES"
    )]
    store_every_messages: Option<u64>,

    /// Store when this much time passed with progress, e.g. 5s; 0s turns it off
    /// (tracker.store_every) [default: 5s]
    #[arg(
        long,
        value_name = "DURATION",
        env = "OFFSET_TRACKING__TRACKER__STORE_EVERY"
    )]
    store_every: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Read or change a consumer's stored offset (`--name`, `--stream` select it)
    Offsets {
        #[command(subcommand)]
        action: OffsetsAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum OffsetsAction {
    /// The stored offset, the stream's first and last offsets, and the lag; "none stored" is a
    /// normal answer
    Show,
    /// Store an offset as the last processed one: the next run starts right after it
    Set {
        /// An offset; `last` (skip the backlog); or `timestamp:<RFC 3339>`, which stores the
        /// offset before the first message the broker delivers for that time (chunk
        /// granularity, as the broker attaches). To re-read from the very start, run the
        /// consumer with --replay instead: RabbitMQ cannot store an offset before 0
        #[arg(long, value_name = "TARGET")]
        to: consumer::offsets::Target,
    },
}

impl Cli {
    fn settings(&self) -> shared::Result<Settings> {
        let mut own = vec![];
        push(&mut own, "consumer.offset", &self.offset);
        push(&mut own, "consumer.name", &self.name);
        push(
            &mut own,
            "tracker.store_every_messages",
            &self.store_every_messages,
        );
        push(&mut own, "tracker.store_every", &self.store_every);
        self.common.load(own)
    }
}

fn main() -> ExitCode {
    shared::telemetry::init();
    runtime::exit_on_panic(delivery::panic_is_contained);
    let cli: Cli = shared::cli::parse();
    let settings = match cli.settings() {
        Ok(settings) => settings,
        Err(err) => return runtime::fail(&err),
    };
    match cli.command {
        None => runtime::run(consume(settings, cli.replay, cli.common.summary_json)),
        Some(Command::Offsets {
            action: OffsetsAction::Show,
        }) => runtime::run(consumer::offsets::show(settings)),
        Some(Command::Offsets {
            action: OffsetsAction::Set { to },
        }) => runtime::run(consumer::offsets::set(settings, to)),
    }
}

/// The tutorial's run: [`consumer::run`] with the [`TutorialHandler`] (or the SQLite sink),
/// stopped by SIGINT/SIGTERM, ending with the summary line.
async fn consume(settings: Settings, replay: bool, summary_json: bool) -> Result<()> {
    let service = settings.consumer.single_active;
    match settings.consumer.sink {
        SinkKind::None => {
            let handlers = |partition: Option<&str>| {
                Ok(TutorialHandler::new(partition.map(str::to_owned), service))
            };
            consume_with(settings, handlers, replay, summary_json).await
        }
        SinkKind::Sqlite => {
            let (path, stream, name) = (
                settings.tracker.sqlite_path.clone(),
                settings.stream.name.clone(),
                settings.consumer.name.clone(),
            );
            let handlers =
                move |_: Option<&str>| Ok(SqliteSink::new(Database::open(&path, &stream, &name)?));
            consume_with(settings, handlers, replay, summary_json).await
        }
    }
}

async fn consume_with<H, F>(
    settings: Settings,
    handlers: F,
    replay: bool,
    summary_json: bool,
) -> Result<()>
where
    H: Handler,
    F: FnMut(Option<&str>) -> Result<H>,
{
    let shutdown = CancellationToken::new();
    let deadline = consumer::shutdown_deadline(&settings);
    let run = consumer::run(&settings, handlers, replay, shutdown.clone());
    let report = runtime::until_stopped(run, &shutdown, deadline).await?;
    for partition in &report.partitions {
        let outcome = &partition.outcome;
        let seconds = outcome.elapsed.as_secs_f64();
        let on = if report.partitions.len() > 1 {
            format!("partition={} ", partition.stream)
        } else {
            String::new()
        };
        tracing::info!(
            "summary: {on}messages={} seconds={seconds:.3} msg_per_s={:.0} first_offset={} last_offset={} stored_offset={} stores={} store_errors={} reconnects={} failovers={} max_interruption_ms={} marker={}",
            outcome.messages,
            outcome.messages as f64 / seconds.max(1e-9),
            show(outcome.first_offset),
            show(outcome.last_offset),
            show(outcome.stored_offset),
            partition.tracker.stores,
            partition.tracker.store_errors,
            outcome.reconnects,
            outcome.failovers,
            outcome.max_interruption.as_millis(),
            outcome.reached_marker,
        );
    }
    if summary_json {
        report.summary().print_json();
    }
    if report.partitions.len() > 1 {
        tracing::info!(
            "summary: total messages={} partitions={} markers={}",
            report.messages(),
            report.partitions.len(),
            report
                .partitions
                .iter()
                .filter(|p| p.outcome.reached_marker)
                .count()
        );
    }
    Ok(())
}
