//! The sub-entry wave: the same `hello0` … `marker{n-1}` bodies as the producer's wave, written
//! as sub-entry batches of [`PER_BATCH`] (what the Java, Go, .NET and Python clients write with
//! sub-entry batching) by testkit's writer ([`SubEntryPublisher`]), uncompressed or compressed.

use std::time::Instant;

use anyhow::{Context as _, Result};
use shared::config::BrokerSettings;
use testkit::peer::sub_entries::{amqp, Compression, SubEntryPublisher};

use crate::row::Measured;

/// Messages per sub-entry batch.
pub(crate) const PER_BATCH: u64 = 100;

/// Batches handed to the writer at once (it waits for their confirms before the next call).
const BATCHES_PER_CALL: u64 = 1_000;

/// Writes `count` messages to `stream` as sub-entry batches of [`PER_BATCH`] compressed with
/// `codec`, and waits for every confirm; timed from the connection to the last confirm
/// (message encoding and compression included).
pub(crate) async fn publish(
    broker: &BrokerSettings,
    stream: &str,
    count: u64,
    codec: Compression,
) -> Result<Measured> {
    let broker = broker.clone();
    let stream = stream.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut publisher = SubEntryPublisher::connect_to(&broker, &stream)
            .with_context(|| format!("cannot publish sub-entries to '{stream}'"))?;
        let mut next = 0u64;
        while next < count {
            let end = count.min(next + BATCHES_PER_CALL * PER_BATCH);
            let batches: Vec<Vec<Vec<u8>>> = (next..end)
                .step_by(PER_BATCH as usize)
                .map(|first| {
                    (first..end.min(first + PER_BATCH))
                        .map(|index| amqp(producer::wave_body(index, count).as_bytes()))
                        .collect()
                })
                .collect();
            publisher
                .publish_sub_entries(codec, &batches)
                .with_context(|| format!("publishing {codec} sub-entries to '{stream}' failed"))?;
            next = end;
        }
        publisher
            .close()
            .with_context(|| format!("closing the sub-entry publisher of '{stream}'"))?;
        let seconds = started.elapsed().as_secs_f64();
        Ok(Measured {
            rate: count as f64 / seconds.max(1e-9),
            seconds,
            messages: count,
            ..Measured::default()
        })
    })
    .await
    .context("the sub-entry publisher's thread failed")?
}
