//! The stream's health, watched from the actor: the lag to the stream's end (sampled every few
//! seconds), and — when no delivery arrived for a while — whether the stream still exists, has a
//! leader and a quorum, or moved under a live subscription. The broker's metadata updates tell
//! the subscription of moves and deletions at once; this idle check is the backstop for what no
//! update says (a lost quorum, a replica that went silent).
//!
//! Both ask on the process's long-lived query connections (`queries`: one per node, shared by
//! every partition), never on connections or subscriptions of their own: what they cost the
//! broker must not grow with partitions.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        Some(end.saturating_sub(self.lag_from()?))
    }

    /// Where the lag counts from: the last processed offset, or before this run processed
    /// anything, where it resumed.
    fn lag_from(&self) -> Option<u64> {
        self.last_processed()
            .or(self.tracker.stored.borrow().offset)
    }

    /// Seconds behind the stream's last message `end`: 0 when nothing follows what was
    /// processed; else how long ago the broker wrote the last processed message's chunk (the
    /// stream's tail is at most as new as now: an upper bound when the producer has paused,
    /// exact while it publishes). `None` when behind and nothing was processed yet.
    fn lag_seconds(&self, end: u64) -> Option<f64> {
        if self.lag_from().is_some_and(|at| end <= at) {
            return Some(0.0);
        }
        let written = self.metrics.last_processed_timestamp.get()?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        Some((now - written).max(0.0))
    }

    /// Samples the stream's end for the lag, on the process's query connections: StreamStats'
    /// `committed_chunk_id` (the first offset of the last chunk) when that is a chunk already
    /// processed — nothing follows; otherwise the offset of the last message, read with a
    /// short subscription at `last` (tracking chunks, which follow every store, are skipped), or
    /// the committed chunk's id if that read gets nothing. The offset lag is an offset
    /// difference: offset stores between take offsets too, so it is an upper bound on messages.
    pub(super) fn probe_stream_end(&mut self, ctx: &mut Context<Self>) {
        if self.probing_end || self.phase != Phase::Consuming {
            return;
        }
        self.probing_end = true;
        let subscription = self.subscription.clone();
        let at = self.lag_from();
        let probe = async move {
            let queries = subscription.queries();
            let stream = &subscription.stream;
            let Some(committed) = queries.committed_chunk_id(stream).await? else {
                return Ok(None);
            };
            if at.is_some_and(|at| committed <= at) {
                return Ok(Some((committed, true)));
            }
            Ok(match queries.last_offset(stream, PROBE_WAIT).await? {
                Some(last) => Some((last, true)),
                None => Some((committed, false)),
            })
        };
        ctx.spawn(probe.into_actor(self).map(|end: Result<_>, actor, _| {
            actor.probing_end = false;
            match end {
                Ok(Some((end, exact))) => {
                    actor.stream_end = Some(end);
                    let Some(lag) = actor.lag() else { return };
                    // Seconds only from an exact end, and for a member that consumes.
                    let seconds = (exact && actor.active)
                        .then(|| actor.lag_seconds(end))
                        .flatten();
                    if let Some(seconds) = seconds {
                        let behind = Duration::from_secs_f64(seconds);
                        actor.outcome.lag = Some(behind);
                        actor.outcome.max_lag = actor.outcome.max_lag.max(Some(behind));
                    }
                    shared::metrics::record_lag(&actor.subscription.stream, lag, seconds);
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
        let taken = self.taken();
        let check = async move {
            let queries = subscription.queries();
            let stream = &subscription.stream;
            let state = queries.stream_state(stream).await?;
            let quorum_lost = queries.quorum_lost(stream, state).await?;
            let end = match state {
                StreamState::Available { .. } if expecting && quorum_lost.is_none() => {
                    stream_end_beyond(&queries, stream, taken).await
                }
                _ => None,
            };
            Ok((state, quorum_lost, end))
        };
        ctx.spawn(
            check
                .into_actor(self)
                .map(|checked: Result<_>, actor, ctx| {
                    let stream = &actor.subscription.stream;
                    let mut beyond = None;
                    let checked = checked.map(|(state, quorum_lost, end)| {
                        if let Some(end) = end {
                            actor.stream_end = Some(end);
                            beyond = Some(end);
                        }
                        (state, quorum_lost)
                    });
                    // Decided on this check's own answer (the exact last offset), not on the lag
                    // probe's approximate sample.
                    let behind = actor.active
                        && actor.phase == Phase::Consuming
                        && actor.last_delivery_at.elapsed() >= IDLE_CHECK
                        && matches!((beyond, actor.taken()), (Some(end), Some(at)) if end > at);
                    if matches!(checked, Ok((StreamState::Available { .. }, None))) && behind {
                        // The subscription is alive but gets nothing, and no update said why.
                        actor.reconnect("no delivery while the stream holds more".into(), ctx);
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
                }),
        );
    }
}

impl ConsumerActor {
    /// The last offset this subscription took (or, right after an activation, the one before
    /// the first it may process).
    fn taken(&self) -> Option<u64> {
        self.last_taken
            .or(self.min_offset.map(|m| m.saturating_sub(1)))
    }
}

/// The offset of `stream`'s last message if the stream may hold more than `taken`; `None` when it
/// surely does not (or the answer is unknown: no decision is made on it).
///
/// StreamStats' `committed_chunk_id` is the first offset of the stream's last committed chunk.
/// Chunks are delivered whole and offsets only grow, so when it is not above `taken`, the last
/// chunk is one this subscription took and the stream holds nothing more: no further question.
/// When it is above, a chunk came after what was taken — but it may be a tracking chunk (the
/// offset this consumer stored), which no subscription delivers; then the exact last offset
/// decides, read with a short subscription at `last` on the query connection to the leader.
async fn stream_end_beyond(
    queries: &super::queries::Queries<'_>,
    stream: &str,
    taken: Option<u64>,
) -> Option<u64> {
    let committed = match queries.committed_chunk_id(stream).await {
        Ok(committed) => committed?,
        Err(err) => {
            tracing::debug!("stream check: {err}");
            return None;
        }
    };
    match taken {
        // Nothing taken: no decision to make, the sample serves the lag only.
        None => Some(committed),
        Some(at) if committed <= at => Some(committed),
        Some(_) => match queries.last_offset(stream, PROBE_WAIT).await {
            Ok(end) => end,
            Err(err) => {
                tracing::debug!("stream check: {err}");
                None
            }
        },
    }
}
