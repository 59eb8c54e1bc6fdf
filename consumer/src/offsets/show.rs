//! `consumer offsets show`: for each consumer name and stream (or partition), the stored offset,
//! the stream's bounds and the consumer's lag in messages and in time, as a table or as JSON.

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use shared::error::Result;
use shared::offset_spec::show_offset;

use super::admin::Admin;
use super::scan::{Seen, COUNT_BUDGET, READ_AT_ONCE};

/// One consumer on one stream (or partition): a row of the table, an object of the JSON.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    consumer: String,
    stream: String,
    /// The super stream the partition belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    super_stream: Option<String>,
    /// `broker` or `sqlite`: where the consumer resumes from.
    store: &'static str,
    /// The offset the consumer resumes after (`null`: nothing stored).
    stored_offset: Option<u64>,
    /// With the SQLite store, what the broker holds (kept for other tools, never resumed from).
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_offset: Option<u64>,
    first_offset: Option<u64>,
    last_offset: Option<u64>,
    /// Messages after the stored offset up to the last one (`null`: nothing stored).
    lag_messages: Option<u64>,
    /// `false`: counting took too long, and `lag_messages` is the offset difference, an upper
    /// bound (offsets also number the stream's tracking entries).
    lag_messages_exact: bool,
    /// Seconds between the chunk of the message at the stored offset and the stream's last chunk.
    lag_seconds: Option<f64>,
}

/// How `show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// An aligned table for people.
    Table,
    /// A JSON array of objects, one per consumer and stream, for machines.
    Json,
}

/// `consumer offsets show`.
pub(super) async fn show(admin: &Admin, names: &[String], output: Output) -> Result<()> {
    let per_stream: Vec<Vec<Row>> = futures::stream::iter(&admin.streams)
        .map(|stream| rows_of(admin, names, stream))
        .buffered(READ_AT_ONCE)
        .try_collect()
        .await?;
    let rows: Vec<Row> = per_stream.into_iter().flatten().collect();
    match output {
        Output::Json => {
            let json = serde_json::to_string_pretty(&rows).map_err(|e| {
                shared::Error::Internal(format!("cannot write the rows as JSON: {e}"))
            })?;
            let _ = shared::outln!("{json}");
        }
        Output::Table => print_table(admin, &rows),
    }
    Ok(())
}

/// The rows of `stream`, one per name.
async fn rows_of(admin: &Admin, names: &[String], stream: &str) -> Result<Vec<Row>> {
    let scanner = admin.scanner();
    let first = scanner.first(stream).await?;
    let last = scanner.last(stream).await?;
    let mut rows = vec![];
    for name in names {
        rows.push(row(admin, name, stream, first, last).await?);
    }
    Ok(rows)
}

async fn row(
    admin: &Admin,
    name: &str,
    stream: &str,
    first: Option<Seen>,
    last: Option<Seen>,
) -> Result<Row> {
    let stored = admin.stored(name, stream).await?;
    let broker_offset = if admin.uses_sqlite() {
        admin.broker_stored(name, stream).await?
    } else {
        None
    };
    let (lag_messages, lag_messages_exact, lag_seconds) = match (stored, last) {
        (None, _) => (None, true, None),
        (Some(_), None) => (Some(0), true, Some(0.0)),
        (Some(stored), Some(last)) if stored >= last.offset => (Some(0), true, Some(0.0)),
        (Some(stored), Some(last)) => {
            let scanner = admin.scanner();
            let count = scanner.count(stream, stored, last.offset).await?;
            let messages = if count.complete {
                count.messages
            } else {
                last.offset - stored
            };
            let at = scanner.at(stream, stored).await?;
            let seconds = at.map(|at| (last.timestamp_ms - at.timestamp_ms).max(0) as f64 / 1000.0);
            (Some(messages), count.complete, seconds)
        }
    };
    Ok(Row {
        consumer: name.to_owned(),
        stream: stream.to_owned(),
        super_stream: admin
            .partitioned
            .then(|| admin.settings.stream.name.clone()),
        store: admin.store_kind(),
        stored_offset: stored,
        broker_offset,
        first_offset: first.map(|s| s.offset),
        last_offset: last.map(|s| s.offset),
        lag_messages,
        lag_messages_exact,
        lag_seconds,
    })
}

fn print_table(admin: &Admin, rows: &[Row]) {
    let sqlite = admin.uses_sqlite();
    let mut header = vec![
        "CONSUMER",
        if admin.partitioned {
            "PARTITION"
        } else {
            "STREAM"
        },
        "STORE",
        "STORED",
    ];
    if sqlite {
        header.push("BROKER");
    }
    header.extend(["FIRST", "LAST", "LAG", "LAG TIME"]);
    let mut table = vec![header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()];
    for row in rows {
        let mut cells = vec![
            row.consumer.clone(),
            row.stream.clone(),
            row.store.to_owned(),
            show_offset(row.stored_offset),
        ];
        if sqlite {
            cells.push(show_offset(row.broker_offset));
        }
        cells.extend([
            show_offset(row.first_offset),
            show_offset(row.last_offset),
            match (row.lag_messages, row.lag_messages_exact) {
                (None, _) => "-".to_owned(),
                (Some(n), true) => n.to_string(),
                (Some(n), false) => format!("<={n}"),
            },
            row.lag_seconds
                .map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s")),
        ]);
        table.push(cells);
    }
    let columns = table.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for cells in &table {
        let line: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = shared::outln!("{}", line.join("  ").trim_end());
    }
    if rows.iter().any(|r| r.stored_offset.is_none()) {
        let _ = shared::outln!(
            "(none: nothing stored; the next run starts at consumer.offset = {})",
            admin.settings.consumer.offset
        );
    }
    if rows.iter().any(|r| !r.lag_messages_exact) {
        let _ = shared::outln!(
            "(<=N: counting took over {}s; N is the offset difference, an upper bound)",
            COUNT_BUDGET.as_secs()
        );
    }
}
