//! The stream's health, watched from the actor: the lag to the stream's end (sampled every few
//! seconds), and — when no delivery arrived for a while — whether the stream still exists, has a
//! leader and a quorum, or moved under a live subscription. The broker's metadata updates tell
//! the subscription of moves and deletions at once; this idle check is the backstop for what no
//! update says (a lost quorum, a replica that went silent).

use std::time::{Duration, Instant};

use actix::prelude::*;
use shared::connection::{self, StreamState};
use shared::error::{Error, Result};

use super::actor::{ConsumerActor, Phase};

/// How long a stream-end probe waits for the last chunk.
const PROBE_WAIT: Duration = Duration::from_millis(300);

/// How often the stream's end is sampled for the lag.
pub(super) const LAG_PROBE_EVERY: Duration = Duration::from_secs(5);

/// After this long without a delivery, check that the stream still exists.
pub(super) const IDLE_CHECK: Duration = Duration::from_secs(5);

impl ConsumerActor {
    /// Offsets between the last processed message and the stream's end, as last sampled.
    pub(super) fn lag(&self) -> Option<u64> {
        let end = self.stream_end?;
        // Before this run processed anything, it is behind from where it resumed.
        let at = self
            .last_processed()
            .or(self.tracker.stored.borrow().offset)?;
        Some(end.saturating_sub(at))
    }

    /// Samples the stream's last offset for the lag, on a subscription of its own.
    pub(super) fn probe_stream_end(&mut self, ctx: &mut Context<Self>) {
        if self.probing_end || self.phase != Phase::Consuming {
            return;
        }
        self.probing_end = true;
        let subscription = self.subscription.clone();
        let probe = async move { subscription.stream_end(PROBE_WAIT).await };
        ctx.spawn(probe.into_actor(self).map(|end, actor, _| {
            actor.probing_end = false;
            match end {
                Ok(Some(end)) => {
                    actor.stream_end = Some(end);
                    if let Some(lag) = actor.lag() {
                        shared::metrics::record_lag(&actor.subscription.stream, lag);
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::debug!("lag probe: {err}"),
            }
        }));
    }

    /// Idle for a while: is the stream still there, and available?
    pub(super) fn check_stream(&mut self, ctx: &mut Context<Self>) {
        if self.phase != Phase::Consuming
            || self.last_delivery_at.elapsed() < IDLE_CHECK
            || self.last_check_at.elapsed() < IDLE_CHECK
        {
            return;
        }
        self.last_check_at = Instant::now();
        let subscription = self.subscription.clone();
        // Only an active subscription is expected to receive what the stream holds.
        let expecting = self.active;
        let check = async move {
            let client = connection::client(&subscription.broker, "stream check").await?;
            let state = connection::stream_state(&client, &subscription.stream).await;
            connection::close_within("a stream check connection", client.close()).await;
            let state = state?;
            let quorum_lost = connection::quorum_lost(&subscription.broker, state).await?;
            let end = match state {
                StreamState::Available { .. } if expecting && quorum_lost.is_none() => subscription
                    .stream_end(PROBE_WAIT)
                    .await
                    .unwrap_or_default(),
                _ => None,
            };
            Ok((state, quorum_lost, end))
        };
        ctx.spawn(check.into_actor(self).map(|checked: Result<_>, actor, ctx| {
            let stream = &actor.subscription.stream;
            let checked = checked.map(|(state, quorum_lost, end)| {
                if let Some(end) = end {
                    actor.stream_end = Some(end);
                }
                (state, quorum_lost)
            });
            let behind = actor.active
                && actor.phase == Phase::Consuming
                && actor.last_delivery_at.elapsed() >= IDLE_CHECK
                && matches!(
                    (actor.stream_end, actor.last_taken.or(actor.min_offset.map(|m| m.saturating_sub(1)))),
                    (Some(end), Some(at)) if end > at
                );
            if matches!(checked, Ok((StreamState::Available { .. }, None))) && behind {
                // The subscription is alive but gets nothing, and no update said why.
                actor.reconnect(
                    "no delivery while the stream holds more".into(),
                    ctx,
                );
                return;
            }
            let unavailable = match checked {
                Ok((StreamState::Missing, _)) => {
                    let err = Error::StreamDeleted {
                        stream: stream.clone(),
                    };
                    actor.finish(Some(err), ctx);
                    return;
                }
                Ok((StreamState::Unavailable, _)) => Some(connection::NO_LEADER.to_owned()),
                Ok((StreamState::Available { .. }, quorum_lost)) => quorum_lost,
                // A broker we cannot reach now: the subscription's own failure will tell.
                Err(err) => {
                    tracing::debug!("stream check: {err}");
                    return;
                }
            };
            match unavailable {
                Some(why) if !actor.unavailable => {
                    tracing::warn!("stream {stream}: {why}; waiting for it to come back");
                    actor.unavailable = true;
                }
                Some(_) => {}
                None => {
                    if std::mem::take(&mut actor.unavailable) {
                        tracing::info!("stream {stream} is available again");
                    }
                }
            }
        }));
    }
}
