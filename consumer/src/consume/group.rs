//! Consumer groups (`consumer.single_active`): the broker's consumer updates, counted into a
//! [`Membership`] whatever order the client delivers them in; the callback that stores the last
//! processed offset before a handover; and how the actor becomes active (resuming right after the
//! group's stored offset) or inactive (flushing what it processed).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::channel::mpsc;
use futures::FutureExt;
use rabbitmq_stream_client::types::{MessageContext, OffsetSpecification};
use shared::connection;
use shared::offset_spec::show_offset;
use shared::OffsetSpec;
use tokio::sync::oneshot;
use tracker::Flush;

use super::actor::ConsumerActor;
use super::subscription::start_position;
use crate::handler::Handler;

/// From the subscription's consumer-update callback: the broker made this subscription its
/// group's active member, or took that away. The callback waits for `reply` before it answers
/// the broker.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) enum GroupUpdate {
    /// Now active. `stored`: the group's stored offset as the callback read it on the
    /// subscription's connection (`None`: the query failed). Replies where to start.
    Active {
        /// The subscription it is about.
        membership: Membership,
        /// `Some(None)`: nothing stored yet.
        stored: Option<Option<u64>>,
        /// Where the broker is to start delivering.
        reply: oneshot::Sender<OffsetSpec>,
    },
    /// No longer active. Replies the last offset processed while active, flushed by the tracker
    /// (`None`: nothing processed in this activation).
    Inactive {
        /// The subscription it is about.
        membership: Membership,
        /// The offset for the callback to store before it answers.
        reply: oneshot::Sender<Option<u64>>,
    },
}

/// Whether one subscription is its group's active member, as the broker's updates say.
///
/// The client runs each consumer update on a task of its own, so two updates that follow each
/// other closely can reach us in either order. The broker's updates to a subscription alternate,
/// starting with "active": counting them (+1 active, −1 inactive) gives the current state
/// whatever order they are counted in. (RabbitMQ 4.0.5 sends a newcomer that stays inactive no
/// update at all, as seen with `RUST_LOG=consumer::group=debug`; a broker that sent it an
/// "inactive" first would need the count to start at 1.)
#[derive(Debug, Clone, Default)]
pub(crate) struct Membership(Arc<AtomicI64>);

impl Membership {
    pub(super) fn note(&self, active: bool) {
        self.0
            .fetch_add(if active { 1 } else { -1 }, Ordering::AcqRel);
    }

    /// Active now, by every update received so far.
    pub(crate) fn is_active(&self) -> bool {
        self.0.load(Ordering::Acquire) > 0
    }

    pub(super) fn same(&self, other: &Membership) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The client's consumer-update callback type (its own alias is not exported).
pub(super) type UpdateListener = Arc<
    dyn Fn(u8, MessageContext) -> futures::future::BoxFuture<'static, OffsetSpecification>
        + Send
        + Sync,
>;

/// Membership in a consumer group (`consumer.single_active`).
#[derive(Clone)]
pub(crate) struct Group {
    /// The super stream the partition belongs to (`None`: a plain stream).
    pub(crate) super_stream: Option<String>,
    /// Where the consumer-update callback sends its news.
    pub(crate) updates: mpsc::UnboundedSender<GroupUpdate>,
}

impl Group {
    /// The client's consumer-update callback: tells the actor, and on deactivation stores the
    /// last processed offset on the subscription's own connection before the broker hears back.
    pub(super) fn listener(&self, membership: Membership) -> UpdateListener {
        let updates = self.updates.clone();
        Arc::new(move |active: u8, context: MessageContext| {
            let updates = updates.clone();
            let membership = membership.clone();
            // Counted at once, in whatever order the client's tasks run (see `Membership`).
            membership.note(active != 0);
            tracing::debug!(
                target: "consumer::group",
                stream = %context.stream(),
                active,
                "consumer update from the broker"
            );
            async move {
                let (name, stream, client) = (context.name(), context.stream(), context.client());
                if active != 0 {
                    let stored = match connection::stored_offset(&client, &name, &stream).await {
                        Ok(stored) => Some(stored),
                        Err(err) => {
                            tracing::warn!("partition {stream}: {err}");
                            None
                        }
                    };
                    let (reply, start) = oneshot::channel();
                    if updates
                        .unbounded_send(GroupUpdate::Active {
                            membership,
                            stored,
                            reply,
                        })
                        .is_err()
                    {
                        return OffsetSpecification::Next;
                    }
                    // The actor opens its gate before the broker sends anything.
                    start
                        .await
                        .map_or(OffsetSpecification::Next, |start| start.to_client())
                } else {
                    let (reply, last) = oneshot::channel();
                    if updates
                        .unbounded_send(GroupUpdate::Inactive { membership, reply })
                        .is_ok()
                    {
                        if let Ok(Some(last)) = last.await {
                            store_before_handover(&client, &name, &stream, last).await;
                        }
                    }
                    // Ignored by the broker for an inactive member.
                    OffsetSpecification::Next
                }
            }
            .boxed()
        })
    }
}

/// Stores `offset` on the subscription's connection and reads it back, so the broker has it
/// before this member answers the deactivation and the next member queries it.
async fn store_before_handover(
    client: &rabbitmq_stream_client::Client,
    name: &str,
    stream: &str,
    offset: u64,
) {
    if let Err(err) = client.store_offset(name, stream, offset).await {
        tracing::warn!("partition {stream}: storing {offset} before the handover: {err}");
        return;
    }
    match connection::stored_offset(client, name, stream).await {
        Ok(Some(stored)) if stored >= offset => {
            tracing::info!("partition {stream}: stored {offset} for the next active member")
        }
        Ok(stored) => tracing::warn!(
            "partition {stream}: stored {offset} before the handover, but the broker holds {}",
            show_offset(stored)
        ),
        Err(err) => tracing::warn!("partition {stream}: reading back the handover store: {err}"),
    }
}

impl<H: Handler> ConsumerActor<H> {
    /// The broker made this member active: resume right after the group's stored offset.
    pub(super) fn become_active(&mut self, stored: Option<Option<u64>>) -> OffsetSpec {
        let label = self.subscription.label();
        let stored = match stored {
            Some(stored) => stored,
            // The query failed: what this process knows was stored is the best lower bound.
            None => self.tracker.stored.borrow().offset,
        };
        let start = start_position(stored, self.subscription.start);
        self.active = true;
        self.activation_last = None;
        self.min_offset = match start {
            OffsetSpec::Offset(offset) => Some(offset),
            _ => None,
        };
        self.last_delivery_at = Instant::now();
        tracing::info!(
            "{label}active in group '{}': resuming at {start} (stored {})",
            self.subscription.name,
            show_offset(stored)
        );
        start
    }

    /// The broker made another member active: stop, and flush what this one processed.
    pub(super) fn become_inactive(
        &mut self,
        reply: oneshot::Sender<Option<u64>>,
        ctx: &mut Context<Self>,
    ) {
        let label = self.subscription.label();
        self.active = false;
        let last = self.activation_last.take();
        tracing::info!(
            "{label}inactive in group '{}': last processed {}",
            self.subscription.name,
            show_offset(last)
        );
        let pending = self.unreported.take();
        let tracker = self.tracker.clone();
        let flush = async move {
            if let Some(report) = pending {
                let _ = tracker.processed.send(report).await;
            }
            if last.is_some() {
                match tracker.flush.send(Flush).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => tracing::warn!("{label}flush before the handover: {err}"),
                    Err(_) => {
                        tracing::warn!("{label}flush before the handover: the tracker stopped")
                    }
                }
            }
        };
        ctx.wait(flush.into_actor(self).map(move |(), _, _| {
            let _ = reply.send(last);
        }));
    }
}

impl<H: Handler> StreamHandler<GroupUpdate> for ConsumerActor<H> {
    fn handle(&mut self, update: GroupUpdate, ctx: &mut Self::Context) {
        let current = |membership: &Membership, actor: &Self| {
            actor
                .membership
                .as_ref()
                .is_some_and(|m| m.same(membership))
        };
        match update {
            // An update for a subscription this actor has left (after a reconnect): no effect.
            GroupUpdate::Active {
                membership, reply, ..
            } if !current(&membership, self) => {
                let _ = reply.send(self.resume_position());
            }
            GroupUpdate::Inactive { membership, reply } if !current(&membership, self) => {
                let _ = reply.send(None);
            }
            GroupUpdate::Active {
                membership,
                stored,
                reply,
            } => {
                if self.active || !membership.is_active() {
                    // Already active, or the broker has taken this activation back (its
                    // "inactive" was counted first): nothing changes here.
                    let start = start_position(stored.flatten(), self.subscription.start);
                    let _ = reply.send(start);
                } else {
                    let start = self.become_active(stored);
                    let _ = reply.send(start);
                }
            }
            GroupUpdate::Inactive { reply, .. } => {
                if self.active {
                    self.become_inactive(reply, ctx);
                } else {
                    let _ = reply.send(None);
                }
            }
        }
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The senders live in subscriptions; the actor outlives them.
    }
}
