//! Consumer groups (`consumer.single_active`): the broker's consumer updates, which arrive in
//! order on the subscription's own connection, between its chunks. Becoming active, the member
//! reads the group's stored offset (retrying until `consumer.reconnect_timeout`; a member that
//! cannot read it never starts from a guess) and resumes right after it; becoming inactive, it
//! drops what it had not processed yet and flushes the tracker — which stores and reads the
//! offset back — before it answers the broker, so the next member starts right after it.

use actix::prelude::*;
use delivery::StartAt;
use shared::connection;
use shared::error::{Error, Result};
use shared::offset_spec::show_offset;
use shared::retry::Backoff;
use tokio::sync::oneshot;
use tracker::{Activate, Deactivate};

use super::actor::ConsumerActor;
use super::subscription::{start_at, start_position, Subscription};

/// The group's stored offset for the subscription's name and stream: `Ok(None)` when nothing is
/// stored. A failed query (the stream has no leader during a failover, a node is down) is tried
/// again with back-off until `reconnect_timeout`; a stream that is gone is not.
async fn group_stored_offset(subscription: &Subscription) -> Result<Option<u64>> {
    let mut backoff = Backoff::for_(subscription.reconnect_timeout);
    loop {
        let attempt = async {
            let admin = connection::client(&subscription.broker, "group offset query").await?;
            let stored =
                connection::stored_offset(&admin, &subscription.name, &subscription.stream).await;
            connection::close_within("the group offset query", admin.close()).await;
            stored
        };
        let err = match attempt.await {
            Ok(stored) => return Ok(stored),
            Err(err @ Error::StreamNotFound { .. }) => return Err(err),
            Err(err) => err,
        };
        let Some(pause) = backoff.next_pause() else {
            return Err(err);
        };
        tracing::info!(
            "{}reading the group's stored offset: {err}; trying again in {}",
            subscription.label(),
            humantime::format_duration(pause)
        );
        tokio::time::sleep(pause).await;
    }
}

impl ConsumerActor {
    /// The broker made this member active: find the group's stored offset, then answer the
    /// broker where to start. Nothing is processed meanwhile (the actor waits).
    pub(super) fn become_active(
        &mut self,
        reply: oneshot::Sender<StartAt>,
        ctx: &mut Context<Self>,
    ) {
        let subscription = self.subscription.clone();
        let activate = self.tracker.activate.clone();
        let query = async move {
            let stored = group_stored_offset(&subscription).await?;
            // The tracker goes on from the group's offset, not from what it stored before.
            activate
                .send(Activate { stored })
                .await
                .map_err(|_| Error::Internal("the tracker stopped".into()))?;
            Ok::<_, Error>(stored)
        };
        ctx.wait(query.into_actor(self).map(move |stored, actor, ctx| {
            let label = actor.subscription.label();
            match stored {
                Ok(stored) => {
                    let start = start_position(stored, actor.subscription.start);
                    actor.active = true;
                    actor.activation_last = None;
                    actor.min_offset = match start {
                        shared::OffsetSpec::Offset(offset) => Some(offset),
                        _ => None,
                    };
                    actor.last_delivery_at = std::time::Instant::now();
                    tracing::info!(
                        "{label}active in group '{}': resuming at {start} (stored {})",
                        actor.subscription.name,
                        show_offset(stored)
                    );
                    let _ = reply.send(start_at(start));
                }
                Err(err) => {
                    // Starting from a guess would skip what the group has not processed.
                    let err = Error::ConsumeStopped {
                        stream: actor.subscription.stream.clone(),
                        reason: format!(
                            "made active in group '{}', but the group's stored offset cannot be \
                             read ({err}); not consuming rather than guessing where to start",
                            actor.subscription.name
                        ),
                    };
                    actor.finish(Some(err), ctx);
                }
            }
        }));
    }

    /// The broker made another member active: stop, flush what this one processed, then answer.
    pub(super) fn become_inactive(
        &mut self,
        reply: oneshot::Sender<StartAt>,
        ctx: &mut Context<Self>,
    ) {
        let label = self.subscription.label();
        self.active = false;
        // In flight when the broker switched: another member processes these.
        self.queued.clear();
        let last = self.activation_last.take();
        tracing::info!(
            "{label}inactive in group '{}': last processed {}",
            self.subscription.name,
            show_offset(last)
        );
        // The parallel stage finishes (or abandons) what runs; then the store of what finished.
        let settled = self.settle(last.is_some());
        let deactivate = self.tracker.deactivate.clone();
        let flush = async move {
            if let Err(err) = settled.await {
                tracing::warn!("{label}storing before the handover: {err}");
            }
            // From now on the next member stores: this one must not overwrite it.
            let _ = deactivate.send(Deactivate).await;
        };
        ctx.wait(flush.into_actor(self).map(move |(), _, _| {
            // Ignored by the broker for an inactive member; sent once the offset is stored.
            let _ = reply.send(StartAt::Next);
        }));
    }
}
