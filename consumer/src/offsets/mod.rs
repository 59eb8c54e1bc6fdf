//! `consumer offsets show|set|export|import`: what `kafka-consumer-groups --describe /
//! --reset-offsets` is for Kafka users. Reads and moves the offsets a consumer resumes from — in
//! the store it resumes from (`tracker.store`: the broker, or the SQLite database) — for one or
//! several consumer names (`--name a,b`), on a stream or on each partition of a super stream
//! (`stream.partitions`).
//!
//! - `admin` — the connection, the streams, reading and writing stored offsets.
//! - `scan` — reading the stream itself (bounds, chunk timestamps, counting messages).
//! - `show` — the table and the JSON.
//! - `target` — what `set` is asked for.
//! - `plan` — what a move means for one consumer on one stream, checked before anything changes.
//! - `set` — the `set` verb; refusing while a consumer is connected; carrying plans out.
//! - `active` — the management API's list of connected consumers.
//! - `transfer` — the `export` and `import` verbs; `files` — their CSV and JSON files.

mod active;
mod admin;
mod files;
mod plan;
mod scan;
mod set;
mod show;
mod target;
mod transfer;

use std::path::PathBuf;

use shared::config::probe::Check;
use shared::config::{OffsetStoreKind, Settings};
use shared::error::{Error, Result};

pub use show::Output;
pub use target::{Move, Shift, Target};

use admin::Admin;

const SHOW_EXAMPLE: &str = "\
Lag counts the messages after the stored offset, read from the stream up to its last message:
stored offsets are entries of the stream's log too, and are not counted. If counting takes over
10 s, LAG shows <=N: the offset difference, an upper bound. LAG TIME is the difference between the
broker's timestamps of the last chunk and of the chunk holding the stored offset.

Example:
  $ consumer offsets show --name consumer-1,audit
  CONSUMER    STREAM                       STORE   STORED  FIRST  LAST  LAG  LAG TIME
  consumer-1  stream-offset-tracking-rust  broker  150     0      203   50   12.0s
  audit       stream-offset-tracking-rust  broker  99      0      203   100  40.5s
  $ consumer offsets show --output json";

const SET_EXAMPLE: &str = "\
Refuses while a consumer of the name is connected to the stream (asked of the management API,
broker.management_url), and when that API cannot be reached: --force skips the check.

Examples:
  $ consumer offsets set --to last --dry-run
  $ consumer offsets set --shift-by -100       # replay the last 100 messages processed
  $ consumer offsets set --to timestamp:2026-12-03T00:00:00Z --name audit";

const EXPORT_EXAMPLE: &str = "\
Example:
  $ consumer offsets export --file offsets.csv --name consumer-1,audit
  exported 2 offsets (on the broker) to offsets.csv";

const IMPORT_EXAMPLE: &str = "\
Each offset is stored under its own consumer name, or under the name of --name (or of
OFFSET_TRACKING__CONSUMER__NAME): then the file must hold one consumer's offsets. Every offset is checked (stream known, not past its end) before any is stored.

Example:
  $ consumer offsets import --file offsets.csv --name consumer-2 --dry-run";

/// The `consumer offsets` verbs. `--name` takes a comma-separated list of consumer names here.
#[derive(Debug, clap::Subcommand)]
pub enum OffsetsAction {
    /// For each consumer name and stream (or partition): the stored offset, the stream's first
    /// and last offsets, and the lag in messages and in time; "none stored" is a normal answer
    #[command(after_help = SHOW_EXAMPLE)]
    Show {
        /// `table` for people, `json` for machines
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Move the stored offset (the last processed one): the next run starts right after it
    #[command(after_help = SET_EXAMPLE)]
    Set {
        /// `first` (before the first message: re-read everything still in the stream), `last`
        /// (skip the backlog), an offset, or `timestamp:<RFC 3339>` (before the first message
        /// the broker delivers for that time: chunk granularity, as the broker attaches).
        /// RabbitMQ cannot store an offset before 0: when the first message is at 0, `first`
        /// works with the SQLite store and consumer.offset = "first" (it removes the offset);
        /// on the broker, run the consumer once with --replay --offset first instead
        #[arg(
            long,
            value_name = "TARGET",
            required_unless_present = "shift_by",
            conflicts_with = "shift_by"
        )]
        to: Option<Target>,
        /// Move by N messages from the stored offset: -N replays the last N processed, +N skips
        /// the next N (messages are counted; tracking entries are not)
        #[arg(long, value_name = "±N", allow_negative_numbers = true)]
        shift_by: Option<Shift>,
        /// Print before -> after and how many messages would be replayed or skipped; change
        /// nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask the management API whether a consumer of the name is connected
        #[arg(long)]
        force: bool,
    },
    /// Write the stored offsets of the consumer names to a file (CSV or JSON, by its extension)
    #[command(after_help = EXPORT_EXAMPLE)]
    Export {
        /// The file to write: `.csv` or `.json`
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
    },
    /// Store the offsets of a file written by `export` (onto another name with --name)
    #[command(after_help = IMPORT_EXAMPLE)]
    Import {
        /// The file to read: `.csv` or `.json`
        #[arg(long, value_name = "PATH")]
        file: PathBuf,
        /// Print before -> after for each offset; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Do not ask the management API whether a consumer of the name is connected
        #[arg(long)]
        force: bool,
    },
}

/// Runs one verb. `named` is the `--name` given on the command line or in the environment (for
/// `import`: the name to store under); the others use `consumer.name`, a comma-separated list.
pub async fn run(settings: Settings, action: OffsetsAction, named: Option<String>) -> Result<()> {
    let names = names_of(&settings.consumer.name);
    let admin = Admin::connect(settings).await?;
    let done = match action {
        OffsetsAction::Show { output } => show::show(&admin, &names, output).await,
        OffsetsAction::Set {
            to,
            shift_by,
            dry_run,
            force,
        } => {
            let movement = match (to, shift_by) {
                (Some(target), _) => Move::To(target),
                (None, Some(Shift(n))) => Move::Shift(n),
                (None, None) => {
                    return Err(Error::Usage("set needs --to or --shift-by".into()));
                }
            };
            set::set(&admin, &names, movement, dry_run, force).await
        }
        OffsetsAction::Export { file } => transfer::export(&admin, &names, &file).await,
        OffsetsAction::Import {
            file,
            dry_run,
            force,
        } => transfer::import(&admin, named.as_deref(), &file, dry_run, force).await,
    };
    admin.close().await;
    done
}

/// The consumer names of a comma-separated list, each once, in order.
fn names_of(list: &str) -> Vec<String> {
    let mut names: Vec<String> = vec![];
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// `config --check`'s step for the SQLite store (`tracker.store = "sqlite"`), where the next run
/// resumes from the database rather than from the broker's copy: what it holds for
/// `consumer.name`, or that the first run can create it. `None` with the broker store (the probe
/// reads the broker's copy itself).
pub fn resume_check(settings: &Settings) -> Option<Check> {
    const WHAT: &str = "stored offset";
    if settings.tracker.store != OffsetStoreKind::Sqlite {
        return None;
    }
    let path = &settings.tracker.sqlite_path;
    let (name, stream) = (&settings.consumer.name, &settings.stream.name);
    let attach = format!("attaches at consumer.offset = {}", settings.consumer.offset);
    if !path.exists() {
        let folder = match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder,
            _ => std::path::Path::new("."),
        };
        return Some(if folder.is_dir() {
            Check::ok(
                WHAT,
                format!(
                    "no database at {} yet: the first run creates it and {attach}",
                    path.display()
                ),
            )
        } else {
            Check::fail(
                WHAT,
                format!(
                    "{} does not exist: no database can be created there",
                    folder.display()
                ),
                "create the folder, or set tracker.sqlite_path to a path in an existing one",
            )
        });
    }
    let stored = tracker::Database::open(path, stream, name).and_then(|db| db.stored_offset());
    Some(match stored {
        Ok(Some(offset)) => Check::ok(
            WHAT,
            format!(
                "'{name}' stored {offset} in {}: the next run starts at {}",
                path.display(),
                offset + 1
            ),
        ),
        Ok(None) => Check::ok(
            WHAT,
            format!(
                "none for '{name}' in {}: the next run {attach}",
                path.display()
            ),
        ),
        Err(err) => Check::fail(
            WHAT,
            err.to_string(),
            "tracker.sqlite_path must be this consumer's database on this stream, or a new file",
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_comma_separated_list_each_once() {
        assert_eq!(names_of("a"), ["a"]);
        assert_eq!(names_of(" a , b,a,,"), ["a", "b"]);
    }
}
