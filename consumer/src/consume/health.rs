//! The stream's health, watched from the actor: the lag to the stream's end (sampled every few
//! seconds), and — when no delivery arrived for a while — whether the stream still exists, has a
//! leader and a quorum, or moved under a live subscription. The broker's metadata updates tell
//! the subscription of moves and deletions at once; this idle check is the backstop for what no
//! update says (a lost quorum, a replica that went silent).
//!
//! Both ask on the process's long-lived query connections (`queries`: one per node, shared by
//! every partition), never on connections or subscriptions of their own: what they cost the
//! broker must not grow with partitions.

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

    /// Samples the stream's end for the lag: the first offset of its last committed chunk
    /// (StreamStats on the process's query connection). That is not the last offset — the
    /// chunk's other records, and a tracking chunk (a stored offset) counts too — so the lag is
    /// a gauge, off by up to a chunk; the idle check does not rely on it.
    pub(super) fn probe_stream_end(&mut self, ctx: &mut Context<Self>) {
        if self.probing_end || self.phase != Phase::Consuming {
            return;
        }
        self.probing_end = true;
        let subscription = self.subscription.clone();
        let probe = async move {
            subscription
                .queries()
                .committed_chunk_id(&subscription.stream)
                .await
        };
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
