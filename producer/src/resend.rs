//! Reconnection and resending for one lane. A named producer (`producer.name`) gives the lane's
//! message at position `i` the publishing id `base + i`, where `base` follows the broker's last
//! id for that name. When the connection is lost it reconnects (through a fresh environment: the
//! node it knew may be the one lost), asks the broker which id it holds last, and resends from
//! the next one: the broker's deduplication drops anything it already has, so no message is
//! written twice and none is lost. It gives up after `producer.reconnect_timeout`.
//!
//! An unnamed producer cannot resend safely: a lost connection fails the wave with the count of
//! unconfirmed messages.

use std::sync::atomic::Ordering;

use shared::connection;
use shared::error::Result;
use shared::retry::{Backoff, FIRST_PAUSE};

use crate::attempt::{not_confirmed, publish_range, Attempt, Start};
use crate::confirm::Confirmations;
use crate::connect::LaneTarget;
use crate::progress::LaneProgress;

/// What one lane did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LaneReport {
    pub(crate) confirmed: u64,
    pub(crate) reconnects: u64,
}

/// Publishes the whole lane, reconnecting and resending as the module documentation says.
pub(crate) async fn publish_lane(
    mut target: LaneTarget,
    progress: &LaneProgress,
) -> Result<LaneReport> {
    let count = target.lane.messages();
    let label = target.lane.label();
    let named = target.name.is_some();
    let mut reconnects = 0;
    let mut base = None;
    // After a lost connection: the pauses before each attempt, until producer.reconnect_timeout.
    let mut backoff: Option<Backoff> = None;
    loop {
        if backoff.is_some() {
            // The node the environment knew may be the one lost: find one that answers.
            match connection::environment(&target.broker, "producer").await {
                Ok(environment) => target.environment = environment,
                Err(err) => tracing::info!("{label}{err}"),
            }
        }
        let confirmations = Confirmations::new();
        let connecting = shared::retry::patiently(target.settings.reconnect_timeout, || {
            target.connect(confirmations.clone())
        });
        let (mut producer, next_id) = match connecting.await {
            Ok(connected) => connected,
            Err(err) => {
                let Some(pauses) = backoff.as_mut() else {
                    return Err(err);
                };
                let Some(pause) = pauses.next_pause() else {
                    return Err(not_confirmed(
                        count,
                        progress.confirmed.load(Ordering::Acquire),
                        format!(
                            "{label}gave up reconnecting after {} (producer.reconnect_timeout): {err}",
                            humantime::format_duration(target.settings.reconnect_timeout)
                        ),
                    ));
                };
                tracing::info!(
                    "{label}{err}; trying again in {}",
                    humantime::format_duration(pause)
                );
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        if reconnects > 0 {
            tracing::info!(
                "{label}reconnected; the broker holds up to publishing id {}",
                next_id.saturating_sub(1)
            );
        }
        // Message at position i of the lane has id base + i; after a reconnect, resume at the
        // broker's last id + 1.
        let base = *base.get_or_insert(next_id);
        let first = if named {
            next_id.saturating_sub(base).min(count)
        } else {
            0
        };
        progress.confirmed.store(first, Ordering::Release);
        let start = Start { base, first };
        let attempt = publish_range(&target, &mut producer, &confirmations, progress, start).await;
        producer.close().await;
        match attempt? {
            Attempt::Done => {
                return Ok(LaneReport {
                    confirmed: count,
                    reconnects,
                })
            }
            Attempt::Lost(reason) if named => {
                tracing::warn!(
                    "{label}{reason}; reconnecting to resend what the broker does not hold"
                );
                let pauses =
                    backoff.insert(Backoff::for_(target.settings.reconnect_timeout));
                reconnects += 1;
                tokio::time::sleep(pauses.next_pause().unwrap_or(FIRST_PAUSE)).await;
            }
            Attempt::Lost(reason) => {
                return Err(not_confirmed(
                    count,
                    progress.confirmed.load(Ordering::Acquire),
                    format!(
                        "{label}{reason}; set producer.name to let the producer resend without duplicates"
                    ),
                ))
            }
        }
    }
}
