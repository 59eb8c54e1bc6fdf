//! A run's summary, typed: our binaries (started with [`crate::process::our_binary`]) end a
//! successful run with one JSON line on stderr ([`shared::summary::RunSummary`]); tests read its
//! figures from there, never from the human `summary:` log line.

use std::process::Output;

use shared::summary::{PartitionSummary, RunSummary, JSON_PREFIX};

use crate::process::stderr_of;

/// The summary the run printed (its last `summary-json:` line on stderr); fails the test, showing
/// the stderr, when there is none.
pub fn summary_of(out: &Output) -> RunSummary {
    let stderr = stderr_of(out);
    RunSummary::find(&stderr).unwrap_or_else(|| {
        panic!(
            "no `{JSON_PREFIX}{{…}}` summary line on stderr (exit {:?}; `our_binary` asks for it \
             with {}=1, and only a successful run prints it):\n{stderr}",
            out.status,
            shared::summary::JSON_ENV
        )
    })
}

/// What the run did on `stream` (a plain stream, or one partition of a super stream), from
/// [`summary_of`]; fails the test, showing the summary and the stderr, when it did not consume it.
pub fn partition_of(out: &Output, stream: &str) -> PartitionSummary {
    let summary = summary_of(out);
    match summary.partition(stream) {
        Some(partition) => partition.clone(),
        None => panic!(
            "the run's summary has no partition {stream}: {summary:?}\nstderr:\n{}",
            stderr_of(out)
        ),
    }
}
