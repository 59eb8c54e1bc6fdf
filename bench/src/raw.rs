//! The raw-client reference rows: publishing with `send` and a confirm callback, and consuming
//! with no stores or with the tutorial's pattern. They publish the producer library's bodies
//! ([`producer::wave_body`]) and count confirmations with its [`producer::Confirmations`], so
//! the reference does the same per-message work as our producer.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use futures::StreamExt;
use producer::{Confirmations, Settled};
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use rabbitmq_stream_client::Environment;
use shared::connection;

use crate::row::{deadline, Measured};

/// Give up on a raw publish when no confirmation arrived for this long.
const CONFIRM_STALL: Duration = Duration::from_secs(30);

/// The reference publish: the raw client's `send` with a confirm callback for each message, then
/// wait for every confirmation; timed from the first `send` to the last confirmation.
pub(crate) async fn publish(
    environment: &Environment,
    stream: &str,
    count: u64,
) -> Result<Measured> {
    publish_messages(environment, stream, count, |index| {
        Message::builder()
            .body(producer::wave_body(index, count))
            .build()
    })
    .await
}

/// [`publish`] of `count` messages built by `message(index)`, in index order.
pub(crate) async fn publish_messages(
    environment: &Environment,
    stream: &str,
    count: u64,
    message: impl Fn(u64) -> Message,
) -> Result<Measured> {
    let producer = environment
        .producer()
        .client_provided_name("bench raw producer")
        .build(stream)
        .await
        .with_context(|| format!("cannot create a raw producer on '{stream}'"))?;
    let confirmations = Confirmations::new();
    let started = Instant::now();
    for index in 0..count {
        producer
            .send(message(index), confirmations.callback())
            .await
            .with_context(|| format!("raw publish to '{stream}' failed"))?;
    }
    let settled = confirmations
        .wait_until(count, CONFIRM_STALL, || producer.is_closed())
        .await;
    let elapsed = started.elapsed();
    match settled {
        Settled::Enough => {}
        Settled::Lost => bail!(
            "raw publish: the connection was lost; {} of {count} confirmed",
            confirmations.confirmed()
        ),
        Settled::Stalled => bail!(
            "raw publish: no confirmation for {CONFIRM_STALL:?}; {} of {count} confirmed",
            confirmations.confirmed()
        ),
    }
    let failed = confirmations.rejected();
    if failed > 0 {
        bail!("raw publish: the broker did not confirm {failed} of {count} messages");
    }
    connection::close_within("the raw producer", producer.close()).await;
    Ok(Measured {
        rate: count as f64 / elapsed.as_secs_f64().max(1e-9),
        seconds: elapsed.as_secs_f64(),
        messages: count,
        ..Measured::default()
    })
}

/// The tutorial's pattern: a named consumer that awaits `store_offset` in its delivery loop every
/// `every` messages, run on a bounded prefix of the stream.
pub(crate) struct Tutorial {
    /// The consumer's name (what it stores under).
    pub(crate) name: String,
    /// A store every this many messages.
    pub(crate) every: u64,
    /// Stop after this many messages…
    pub(crate) max_messages: u64,
    /// …or after this long.
    pub(crate) max_time: Duration,
}

/// A raw consumer from the first message: without stores up to the marker (`tutorial` = `None`),
/// or the tutorial's pattern on a prefix. Timed from the first delivery to the last one processed.
pub(crate) async fn consume(
    environment: &Environment,
    stream: &str,
    count: u64,
    tutorial: Option<&Tutorial>,
) -> Result<Measured> {
    let mut builder = environment
        .consumer()
        .offset(OffsetSpecification::First)
        .client_provided_name("bench raw consumer");
    if let Some(tutorial) = tutorial {
        builder = builder.name(&tutorial.name);
    }
    let mut consumer = builder
        .build(stream)
        .await
        .with_context(|| format!("cannot create a raw consumer on '{stream}'"))?;
    let handle = consumer.handle();
    let mut first_at = None;
    let mut last_at = Instant::now();
    let mut messages = 0u64;
    let mut stores = 0u64;
    let mut marker = false;
    let consumed = tokio::time::timeout(deadline(count), async {
        while let Some(delivery) = consumer.next().await {
            let delivery = delivery.with_context(|| format!("consuming '{stream}' failed"))?;
            let started = *first_at.get_or_insert_with(Instant::now);
            messages += 1;
            marker = delivery.message().data().is_some_and(producer::is_marker);
            if let Some(tutorial) = tutorial {
                if messages.is_multiple_of(tutorial.every) || marker {
                    consumer
                        .store_offset(delivery.offset())
                        .await
                        .with_context(|| format!("store_offset on '{stream}' failed"))?;
                    stores += 1;
                }
                last_at = Instant::now();
                if messages >= tutorial.max_messages || last_at - started >= tutorial.max_time {
                    break;
                }
            }
            if marker {
                last_at = Instant::now();
                break;
            }
        }
        anyhow::Ok(())
    })
    .await;
    connection::close_within("the raw consumer", handle.close()).await;
    consumed.map_err(|_| {
        anyhow!(
            "raw consume of '{stream}' took longer than {:?}",
            deadline(count)
        )
    })??;
    if tutorial.is_none() && (!marker || messages != count) {
        bail!("raw consume of '{stream}' got {messages} of {count} messages (marker={marker})");
    }
    let seconds = first_at.map_or(0.0, |first| (last_at - first).as_secs_f64());
    Ok(Measured {
        rate: messages as f64 / seconds.max(1e-9),
        seconds,
        messages,
        stores: tutorial.map(|_| stores),
        ..Measured::default()
    })
}
