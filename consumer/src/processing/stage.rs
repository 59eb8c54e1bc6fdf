//! The parallel processing stage of one stream: runs an [`AsyncHandler`] on up to
//! `processing.max_in_flight` deliveries at once, in the order `processing.ordering` asks, and
//! reports to the tracker only the finished prefix — the newest offset below which every
//! admitted delivery has finished, whatever order they finished in.
//!
//! - Back-pressure: a delivery is admitted only with a permit of a semaphore of
//!   [`window_size`] permits, given back when the finished prefix covers it. The consumer actor
//!   waits for a permit taking no chunk, so no credit goes back to the broker while the window is
//!   full: memory stays bounded whatever the handler's latency.
//! - Crash bound: no delivery starts while the finished-but-unstored messages would exceed the
//!   tracker's bound, so a crash repeats at most that bound plus the window.
//! - A handler error or panic on one delivery halts the stage: nothing more starts, and the
//!   prefix never passes the failed delivery, so no offset at or after it is stored.
//! - [`Stage::drain`] (shutdown, the marker, a consumer-group handover) abandons what has not
//!   started, waits `processing.drain_timeout` for what has, then abandons the rest: abandoned
//!   work never counts as done.
//!
//! The stage is a task of its own, which polls the handler's futures itself (no task per
//! delivery) and reports the prefix once per wake-up; the consumer actor holds its [`Stage`]
//! handle.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, OptionFuture};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use shared::config::{KeySource, Ordering, ProcessingSettings};
use shared::error::{Error, Result};
use shared::metrics::ConsumerMetrics;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracker::TrackerClient;

use super::contain::Contained;
use super::key::key_of;
use super::keys::{hash_key, KeyQueues};
use super::window::{Advance, Window};
use crate::handler::{AsyncHandler, Delivery, Flow};

/// Deliveries admitted per delivery in flight: room for deliveries whose key is busy, so that
/// ordering by key keeps `max_in_flight` handlers busy.
const LOOKAHEAD: usize = 4;

/// Fewest deliveries the window holds, so that admission goes by whole batches.
const MIN_WINDOW: usize = crate::consume::MAX_BATCH;

/// How many deliveries may be admitted and not yet covered by the finished prefix.
pub(crate) fn window_size(settings: &ProcessingSettings) -> usize {
    (in_flight(settings) * LOOKAHEAD).max(MIN_WINDOW)
}

/// Deliveries of one stream processed at once: one, in stream order, for `partition`.
fn in_flight(settings: &ProcessingSettings) -> usize {
    match settings.ordering {
        Ordering::Partition => 1,
        Ordering::Key | Ordering::Unordered => settings.max_in_flight as usize,
    }
}

/// What the stage has finished so far, for the consumer's outcome and progress display.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StageProgress {
    /// Deliveries covered by the finished prefix.
    pub(crate) messages: u64,
    /// The first delivery covered.
    pub(crate) first_offset: Option<u64>,
    /// The newest delivery covered.
    pub(crate) last_offset: Option<u64>,
    /// When the first delivery was admitted, and when the prefix last moved.
    pub(crate) first_admitted_at: Option<Instant>,
    pub(crate) last_finished_at: Option<Instant>,
}

/// What the stage tells the consumer actor.
#[derive(Debug)]
pub(crate) enum StageEvent {
    /// The handler asked to stop after the delivery at this offset.
    Stopped { offset: u64 },
    /// The handler failed on a delivery: the run ends with this error.
    Failed(Error),
}

/// What a drain left undone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Drained {
    /// Admitted deliveries abandoned (not started, or still running at the deadline).
    pub(crate) abandoned: usize,
}

enum Command {
    Admit(Vec<Delivery>, OwnedSemaphorePermit),
    Drain(oneshot::Sender<Drained>),
}

/// The consumer actor's handle on its stage.
pub(crate) struct Stage {
    permits: Arc<Semaphore>,
    /// The semaphore's permits in all: [`window_size`].
    window: usize,
    commands: mpsc::UnboundedSender<Command>,
    halted: CancellationToken,
    progress: watch::Receiver<StageProgress>,
    events: Option<futures::channel::mpsc::UnboundedReceiver<StageEvent>>,
}

impl Stage {
    /// Starts the stage of `stream` running `handler` as `settings` say, reporting to `tracker`.
    pub(crate) fn start<A: AsyncHandler>(
        handler: Arc<A>,
        settings: &ProcessingSettings,
        tracker: TrackerClient,
        stream: &str,
        metrics: ConsumerMetrics,
    ) -> Self {
        let window = window_size(settings);
        let permits = Arc::new(Semaphore::new(window));
        let (commands, inbox) = mpsc::unbounded_channel();
        let (events_tx, events) = futures::channel::mpsc::unbounded();
        let (progress_tx, progress) = watch::channel(StageProgress::default());
        let halted = CancellationToken::new();
        let worker = Worker {
            handler,
            ordering: settings.ordering,
            key: settings.key.clone(),
            in_flight: in_flight(settings),
            drain_timeout: settings.drain_timeout,
            stream: stream.to_owned(),
            tracker,
            metrics,
            window: Window::new(),
            held: None,
            keys: KeyQueues::new(),
            ready: VecDeque::new(),
            running: FuturesUnordered::new(),
            unreported: None,
            first_admitted: None,
            stop_at: None,
            timestamps: VecDeque::new(),
            halted: halted.clone(),
            events: events_tx,
            progress: progress_tx,
        };
        tokio::spawn(worker.run(inbox));
        Self {
            permits,
            window,
            commands,
            halted,
            progress,
            events: Some(events),
        }
    }

    /// The stage's events, once (the actor feeds them into itself).
    pub(crate) fn events(
        &mut self,
    ) -> Option<futures::channel::mpsc::UnboundedReceiver<StageEvent>> {
        self.events.take()
    }

    /// How many deliveries may be admitted right now.
    pub(crate) fn room(&self) -> usize {
        if self.halted.is_cancelled() {
            0
        } else {
            self.permits.available_permits()
        }
    }

    /// Whether the stage stopped starting work (the handler stopped or failed).
    pub(crate) fn halted(&self) -> bool {
        self.halted.is_cancelled()
    }

    /// How many deliveries to wait room for before admitting more: a quarter of the window, so
    /// that the window is refilled in batches rather than a few deliveries per wake-up of the
    /// consumer actor (each a hop between threads), while three quarters stay admitted.
    pub(crate) fn refill(&self) -> usize {
        (self.window / 4).max(1)
    }

    /// Resolves once `wanted` deliveries may be admitted (at most the window), or the stage
    /// halted, or `shutdown` came.
    pub(crate) fn wait_for_room(
        &self,
        wanted: usize,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + 'static {
        let permits = self.permits.clone();
        let halted = self.halted.clone();
        let wanted = u32::try_from(wanted.clamp(1, self.window)).unwrap_or(1);
        async move {
            tokio::select! {
                _ = permits.acquire_many_owned(wanted) => {}
                _ = halted.cancelled() => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Admits `deliveries` (at most [`Stage::room`] of them; stream order). Returns those it
    /// could not take (no room, or the stage is gone), which are not processed.
    pub(crate) fn admit(
        &self,
        deliveries: Vec<Delivery>,
    ) -> std::result::Result<(), Vec<Delivery>> {
        let Ok(count) = u32::try_from(deliveries.len()) else {
            return Err(deliveries);
        };
        let Ok(permit) = self.permits.clone().try_acquire_many_owned(count) else {
            return Err(deliveries);
        };
        self.commands
            .send(Command::Admit(deliveries, permit))
            .map_err(|failed| match failed.0 {
                Command::Admit(deliveries, _) => deliveries,
                Command::Drain(_) => Vec::new(),
            })
    }

    /// Abandons what has not started, waits up to `processing.drain_timeout` for what runs, then
    /// abandons the rest; the finished prefix is reported to the tracker before this resolves.
    /// The stage takes deliveries again afterwards (a member made active again).
    pub(crate) fn drain(&self) -> impl Future<Output = Drained> + 'static {
        let (reply, drained) = oneshot::channel();
        let sent = self.commands.send(Command::Drain(reply)).is_ok();
        async move {
            if sent {
                drained.await.unwrap_or_default()
            } else {
                Drained::default()
            }
        }
    }

    /// What the stage has finished so far.
    pub(crate) fn progress(&self) -> StageProgress {
        *self.progress.borrow()
    }
}

/// A delivery's result, as its future returns it.
struct Done {
    offset: u64,
    key: Option<u64>,
    result: Result<Flow>,
}

type BoundWait = Pin<Box<dyn Future<Output = bool> + Send>>;

/// The stage's task.
struct Worker<A: AsyncHandler> {
    handler: Arc<A>,
    ordering: Ordering,
    key: Option<KeySource>,
    in_flight: usize,
    drain_timeout: Duration,
    stream: String,
    tracker: TrackerClient,
    metrics: ConsumerMetrics,
    /// Admitted and not covered by the finished prefix.
    window: Window<()>,
    /// The permits of the deliveries in the window, one each: given back as the prefix covers
    /// them, many at once (one permit per delivery would lock the semaphore per delivery).
    held: Option<OwnedSemaphorePermit>,
    /// Ordering by key: deliveries waiting for their key.
    keys: KeyQueues<Delivery>,
    /// Admitted, free to start (their key is not busy), in admission order.
    ready: VecDeque<(Delivery, Option<u64>)>,
    /// The handler's futures under way, polled by this task (no task per delivery: cheaper, and
    /// an async handler's work is waiting, not computing).
    running: FuturesUnordered<BoxFuture<'static, Done>>,
    /// The finished prefix's move not reported yet (reported once per wake-up, not per delivery).
    unreported: Option<Advance>,
    /// The first delivery ever admitted.
    first_admitted: Option<u64>,
    /// A handler asked to stop after this delivery: what comes before it in the stream still
    /// runs, nothing after it starts.
    stop_at: Option<u64>,
    /// `(first offset, chunk timestamp)` of the chunks the window holds deliveries of.
    timestamps: VecDeque<(u64, i64)>,
    halted: CancellationToken,
    events: futures::channel::mpsc::UnboundedSender<StageEvent>,
    progress: watch::Sender<StageProgress>,
}

impl<A: AsyncHandler> Worker<A> {
    async fn run(mut self, mut inbox: mpsc::UnboundedReceiver<Command>) {
        let mut bound_wait: Option<BoundWait> = None;
        loop {
            if bound_wait.is_none() {
                bound_wait = self.start_ready();
            }
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(Command::Admit(deliveries, permit)) => self.admit(deliveries, permit),
                    Some(Command::Drain(reply)) => {
                        bound_wait = None;
                        let drained = self.drain().await;
                        let _ = reply.send(drained);
                    }
                    // The consumer is gone: nobody will store what finishes now.
                    None => break,
                },
                Some(done) = self.running.next(), if !self.running.is_empty() => {
                    self.finished(done);
                    // Whatever else finished meanwhile, then one report for all of it. Each slot
                    // is refilled as it frees, and the next poll starts the new work: it runs
                    // while the rest of the batch is accounted for, not after it.
                    loop {
                        if bound_wait.is_none() {
                            bound_wait = self.start_ready();
                        }
                        match self.running.next().now_or_never() {
                            Some(Some(done)) => self.finished(done),
                            _ => break,
                        }
                    }
                    self.report_advance();
                }
                Some(_) = OptionFuture::from(bound_wait.as_mut()), if bound_wait.is_some() => {
                    bound_wait = None;
                }
            }
        }
        self.running.clear();
    }

    fn admit(&mut self, mut deliveries: Vec<Delivery>, permit: OwnedSemaphorePermit) {
        if self.first_admitted.is_none() {
            self.first_admitted = deliveries.first().map(Delivery::offset);
            let now = Instant::now();
            self.progress
                .send_modify(|progress| progress.first_admitted_at = Some(now));
        }
        // One permit per delivery (`Stage::admit` acquires exactly that many).
        deliveries.truncate(permit.num_permits());
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        for delivery in deliveries {
            let offset = delivery.offset();
            let timestamp = delivery.chunk_timestamp_ms();
            if self.timestamps.back().is_none_or(|(_, t)| *t != timestamp) {
                self.timestamps.push_back((offset, timestamp));
            }
            self.window.admit(offset, ());
            match (&self.ordering, &self.key) {
                (Ordering::Key, Some(source)) => {
                    let key = hash_key(&key_of(source, delivery.message()));
                    if let Some(delivery) = self.keys.admit(key, delivery) {
                        self.ready.push_back((delivery, Some(key)));
                    }
                }
                _ => self.ready.push_back((delivery, None)),
            }
        }
    }

    /// Starts ready deliveries while there is a free slot; when the crash bound says to wait,
    /// returns the wait.
    fn start_ready(&mut self) -> Option<BoundWait> {
        // Checked once per call, not per delivery: starting work changes neither (only this task
        // halts the stage, and only finished work counts against the bound).
        if self.halted.is_cancelled() || self.running.len() >= self.in_flight {
            return None;
        }
        if !self.tracker.has_room_for(1) {
            return Some(Box::pin(self.tracker.room_for(1, self.halted.clone())));
        }
        while self.running.len() < self.in_flight {
            let Some((delivery, key)) = self.ready.pop_front() else {
                break;
            };
            if self.stop_at.is_some_and(|stop| delivery.offset() > stop) {
                // After the stop: never started, never done.
                if let Some(key) = key {
                    if let Some(next) = self.keys.finish(key) {
                        self.ready.push_back((next, Some(key)));
                    }
                }
                continue;
            }
            let handler = self.handler.clone();
            let offset = delivery.offset();
            self.running.push(Box::pin(async move {
                let work = Contained::new(async move { handler.handle(delivery).await });
                let result = match AssertUnwindSafe(work).catch_unwind().await {
                    Ok(result) => result,
                    Err(panic) => Err(Error::Internal(format!(
                        "the handler panicked: {}",
                        delivery::panic_message(panic.as_ref())
                    ))),
                };
                Done {
                    offset,
                    key,
                    result,
                }
            }));
        }
        None
    }

    fn finished(&mut self, done: Done) {
        let Done {
            offset,
            key,
            result,
        } = done;
        if let Some(key) = key {
            if let Some(next) = self.keys.finish(key) {
                self.ready.push_back((next, Some(key)));
            }
        }
        match result {
            Ok(flow) => {
                if let Some(advance) = self.window.finish(offset) {
                    // The covered deliveries leave the window: their permits go back.
                    if let Some(held) = &mut self.held {
                        let covered = usize::try_from(advance.count).unwrap_or(usize::MAX);
                        drop(held.split(covered.min(held.num_permits())));
                    }
                    self.unreported = Some(match self.unreported {
                        Some(earlier) => Advance {
                            last: advance.last,
                            count: earlier.count + advance.count,
                        },
                        None => advance,
                    });
                }
                if flow == Flow::Stop {
                    self.stop_at = Some(self.stop_at.map_or(offset, |stop| stop.min(offset)));
                }
                self.stop_when_done();
            }
            Err(err) => self.fail(Error::ConsumeStopped {
                stream: self.stream.clone(),
                reason: format!(
                    "the handler failed on the message at offset {offset}: {err}; nothing from \
                     that offset on is stored"
                ),
            }),
        }
    }

    /// Reports the finished prefix's move since the last report, if any.
    fn report_advance(&mut self) {
        if let Some(advance) = self.unreported.take() {
            if let Err(err) = self.advance(advance) {
                self.fail(err);
            }
        }
    }

    /// A handler asked to stop: once everything up to its delivery has finished, halt and say so.
    fn stop_when_done(&mut self) {
        let Some(stop) = self.stop_at else {
            return;
        };
        let done = self
            .window
            .first_unfinished()
            .is_none_or(|unfinished| unfinished > stop);
        if done && !self.halted.is_cancelled() {
            // The tracker hears of everything up to the stop before the consumer does.
            self.report_advance();
            self.halted.cancel();
            let _ = self
                .events
                .unbounded_send(StageEvent::Stopped { offset: stop });
        }
    }

    fn fail(&mut self, err: Error) {
        if !self.halted.is_cancelled() {
            // What finished below the failed delivery still counts.
            if let Some(advance) = self.unreported.take() {
                if let Err(err) = self.advance(advance) {
                    tracing::warn!("{}: {err}", self.stream);
                }
            }
            self.halted.cancel();
            let _ = self.events.unbounded_send(StageEvent::Failed(err));
        }
    }

    /// The finished prefix moved: report it, count it, show it.
    fn advance(&mut self, Advance { last, count }: Advance) -> Result<()> {
        let mut timestamp = None;
        while let Some(&(first, t)) = self.timestamps.front() {
            if first > last {
                break;
            }
            timestamp = Some(t);
            if self
                .timestamps
                .get(1)
                .is_some_and(|(next, _)| *next <= last)
            {
                self.timestamps.pop_front();
            } else {
                break;
            }
        }
        tracing::debug!(
            target: "consumer::processed",
            stream = %self.stream,
            last,
            count,
            "processed"
        );
        self.metrics.processed.increment(count);
        self.metrics.last_processed.set(last as f64);
        if let Some(timestamp) = timestamp {
            self.metrics
                .last_processed_timestamp
                .set(timestamp as f64 / 1000.0);
        }
        self.tracker.report(last, count)?;
        self.metrics
            .unstored
            .set(self.tracker.ahead_of_store() as f64);
        let now = Instant::now();
        let first = self.first_admitted;
        self.progress.send_modify(|progress| {
            if progress.first_offset.is_none() {
                progress.first_offset = first;
            }
            progress.messages += count;
            progress.last_offset = Some(last);
            progress.last_finished_at = Some(now);
        });
        Ok(())
    }

    async fn drain(&mut self) -> Drained {
        let mut abandoned = self.ready.len() + self.keys.waiting();
        self.ready.clear();
        self.keys.clear();
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        while !self.running.is_empty() {
            tokio::select! {
                Some(done) = self.running.next() => self.finished(done),
                () = &mut deadline => {
                    tracing::warn!(
                        "{}: {} deliveries still being processed after processing.drain_timeout \
                         ({}), the oldest at offset {}: abandoned, not stored",
                        self.stream,
                        self.running.len(),
                        humantime::format_duration(self.drain_timeout),
                        shared::offset_spec::show_offset(self.window.first_unfinished())
                    );
                    abandoned += self.running.len();
                    // Dropped unfinished: abandoned, never done.
                    self.running.clear();
                }
            }
        }
        self.report_advance();
        self.ready.clear();
        self.keys.clear();
        self.window.clear();
        self.held = None;
        self.timestamps.clear();
        if let Err(err) = self.tracker.deliver_pending().await {
            tracing::warn!("{}: {err}", self.stream);
        }
        Drained { abandoned }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use actix::prelude::{Actor, Context, Handler as ActorHandler};
    use delivery::Message;
    use futures::StreamExt;
    use tracker::{Flush, Processed, StoredProgress};

    use super::*;

    /// A tracker double: records reports, answers a flush with the newest one.
    struct FakeTracker {
        reports: Arc<Mutex<Vec<Processed>>>,
    }

    impl Actor for FakeTracker {
        type Context = Context<Self>;
    }

    impl ActorHandler<Processed> for FakeTracker {
        type Result = ();
        fn handle(&mut self, report: Processed, _: &mut Context<Self>) {
            self.reports.lock().unwrap().push(report);
        }
    }

    impl ActorHandler<Flush> for FakeTracker {
        type Result = Result<Option<u64>>;
        fn handle(&mut self, _: Flush, _: &mut Context<Self>) -> Self::Result {
            Ok(self.reports.lock().unwrap().last().map(|r| r.offset))
        }
    }

    /// Sleeps per offset as scripted (1 ms otherwise), fails where told, and records what ran.
    #[derive(Default)]
    struct Scripted {
        slow: HashMap<u64, u64>,
        fail_at: Option<u64>,
        panic_at: Option<u64>,
        stop_at: Option<u64>,
        running_keys: Mutex<HashSet<Vec<u8>>>,
        overlaps: Mutex<Vec<u64>>,
        finished: Mutex<Vec<(Vec<u8>, u64)>>,
    }

    impl AsyncHandler for Scripted {
        async fn handle(&self, delivery: Delivery) -> Result<Flow> {
            let key = key_of(&KeySource::Property("key".into()), delivery.message());
            if !self.running_keys.lock().unwrap().insert(key.clone()) {
                self.overlaps.lock().unwrap().push(delivery.offset());
            }
            let ms = self.slow.get(&delivery.offset()).copied().unwrap_or(1);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            self.running_keys.lock().unwrap().remove(&key);
            if self.fail_at == Some(delivery.offset()) {
                return Err(Error::Local("scripted failure".into()));
            }
            assert!(self.panic_at != Some(delivery.offset()), "scripted panic");
            self.finished.lock().unwrap().push((key, delivery.offset()));
            Ok(if self.stop_at == Some(delivery.offset()) {
                Flow::Stop
            } else {
                Flow::Continue
            })
        }
    }

    fn settings(ordering: Ordering, max_in_flight: u32) -> ProcessingSettings {
        ProcessingSettings {
            max_in_flight,
            ordering,
            key: (ordering == Ordering::Key).then(|| KeySource::Property("key".into())),
            drain_timeout: Duration::from_millis(200),
        }
    }

    fn delivery(offset: u64, key: &str) -> Delivery {
        let message = Message::builder()
            .application_properties()
            .insert("key", key)
            .message_builder()
            .build();
        Delivery::new(offset, 0, message)
    }

    struct Running {
        stage: Stage,
        reports: Arc<Mutex<Vec<Processed>>>,
        events: futures::channel::mpsc::UnboundedReceiver<StageEvent>,
        handler: Arc<Scripted>,
    }

    fn start(handler: Scripted, settings: &ProcessingSettings) -> Running {
        let reports = Arc::new(Mutex::new(Vec::new()));
        let tracker = FakeTracker {
            reports: reports.clone(),
        }
        .start();
        let (_, stored) = watch::channel(StoredProgress::default());
        let client = TrackerClient::new(
            tracker.clone().recipient(),
            tracker.recipient(),
            stored,
            None,
        );
        let handler = Arc::new(handler);
        let mut stage = Stage::start(
            handler.clone(),
            settings,
            client,
            "s",
            ConsumerMetrics::new("s"),
        );
        let events = stage.events().unwrap();
        Running {
            stage,
            reports,
            events,
            handler,
        }
    }

    /// The finished prefix, as reported: (newest offset, messages covered).
    fn reported(reports: &Mutex<Vec<Processed>>) -> (Option<u64>, u64) {
        let reports = reports.lock().unwrap();
        (
            reports.last().map(|r| r.offset),
            reports.iter().map(|r| r.count).sum(),
        )
    }

    #[actix_rt::test]
    async fn the_prefix_waits_for_a_slow_first_delivery_then_covers_everything() {
        // Offsets are not contiguous; the first is slow, the others finish long before it.
        let handler = Scripted {
            slow: HashMap::from([(10, 150)]),
            ..Scripted::default()
        };
        let run = start(handler, &settings(Ordering::Unordered, 8));
        let offsets = [10, 11, 15, 104];
        run.stage
            .admit(offsets.iter().map(|&o| delivery(o, "a")).collect())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(run.handler.finished.lock().unwrap().len(), 3);
        assert_eq!(
            reported(&run.reports),
            (None, 0),
            "nothing before 10 finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reported(&run.reports), (Some(104), 4));
        assert_eq!(run.stage.progress().messages, 4);
        assert_eq!(
            run.stage.room(),
            window_size(&settings(Ordering::Unordered, 8))
        );
    }

    #[actix_rt::test]
    async fn a_failure_halts_the_stage_and_nothing_from_it_on_is_reported() {
        let handler = Scripted {
            fail_at: Some(5),
            slow: HashMap::from([(5, 30)]),
            ..Scripted::default()
        };
        let mut run = start(handler, &settings(Ordering::Unordered, 8));
        run.stage
            .admit((0..40).map(|o| delivery(o, "a")).collect())
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), run.events.next()).await {
            Ok(Some(StageEvent::Failed(err))) => {
                assert!(err.to_string().contains("offset 5"), "{err}")
            }
            other => panic!("expected the failure, got {other:?}"),
        }
        assert!(run.stage.halted());
        assert_eq!(run.stage.room(), 0, "a halted stage takes nothing more");
        run.stage.drain().await;
        let (last, _) = reported(&run.reports);
        assert_eq!(
            last,
            Some(4),
            "the prefix stops right below the failed delivery"
        );
        let started = run.handler.finished.lock().unwrap().len();
        assert!(
            started < 40,
            "deliveries after the halt must not start ({started} ran)"
        );
    }

    #[actix_rt::test]
    async fn a_panicking_handler_is_the_runs_error_not_the_processs_end() {
        let handler = Scripted {
            panic_at: Some(2),
            ..Scripted::default()
        };
        let mut run = start(handler, &settings(Ordering::Unordered, 4));
        run.stage
            .admit((0..4).map(|o| delivery(o, "a")).collect())
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), run.events.next()).await {
            Ok(Some(StageEvent::Failed(err))) => {
                let text = err.to_string();
                assert!(
                    text.contains("offset 2") && text.contains("scripted panic"),
                    "{text}"
                );
            }
            other => panic!("expected the failure, got {other:?}"),
        }
        run.stage.drain().await;
        assert_eq!(reported(&run.reports).0, Some(1));
    }

    #[actix_rt::test]
    async fn ordering_by_key_never_runs_one_key_twice_at_once_and_keeps_its_order() {
        let run = start(Scripted::default(), &settings(Ordering::Key, 16));
        let keys = ["a", "b", "c"];
        run.stage
            .admit((0..60).map(|o| delivery(o, keys[o as usize % 3])).collect())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reported(&run.reports).1 < 60 {
            assert!(Instant::now() < deadline, "{:?}", reported(&run.reports));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(run.handler.overlaps.lock().unwrap().is_empty());
        let finished = run.handler.finished.lock().unwrap();
        for key in keys {
            let of_key: Vec<u64> = finished
                .iter()
                .filter(|(k, _)| k == key.as_bytes())
                .map(|(_, o)| *o)
                .collect();
            assert_eq!(of_key.len(), 20);
            assert!(of_key.windows(2).all(|w| w[0] < w[1]), "{key}: {of_key:?}");
        }
        // Three keys, so three at once at most: 20 rounds of 1 ms, not 60.
        assert_eq!(reported(&run.reports), (Some(59), 60));
    }

    #[actix_rt::test]
    async fn a_stop_by_key_waits_for_every_delivery_before_it_and_starts_none_after() {
        // Key "a" (0, 3, 6, 9, 12) is slow; the stop (10, key "b") finishes long before the
        // "a"s before it.
        let handler = Scripted {
            slow: (0..12).filter(|o| o % 3 == 0).map(|o| (o, 40)).collect(),
            stop_at: Some(10),
            ..Scripted::default()
        };
        let mut run = start(handler, &settings(Ordering::Key, 8));
        let keys = ["a", "b", "c"];
        run.stage
            .admit((0..15).map(|o| delivery(o, keys[o as usize % 3])).collect())
            .unwrap();
        match tokio::time::timeout(Duration::from_secs(5), run.events.next()).await {
            Ok(Some(StageEvent::Stopped { offset })) => assert_eq!(offset, 10),
            other => panic!("expected the stop, got {other:?}"),
        }
        let finished: HashSet<u64> = run
            .handler
            .finished
            .lock()
            .unwrap()
            .iter()
            .map(|(_, o)| *o)
            .collect();
        assert!((0..=10).all(|o| finished.contains(&o)), "{finished:?}");
        run.stage.drain().await;
        assert_eq!(reported(&run.reports).0.map(|last| last >= 10), Some(true));
        // 13 waited behind 10 (both key "b"): once 10 asked to stop, it never starts.
        assert!(!finished.contains(&13), "{finished:?}");
    }

    #[actix_rt::test]
    async fn partition_ordering_runs_one_at_a_time_in_stream_order() {
        let run = start(Scripted::default(), &settings(Ordering::Partition, 64));
        run.stage
            .admit((0..30).map(|o| delivery(o * 2, &o.to_string())).collect())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reported(&run.reports).1 < 30 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let finished: Vec<u64> = run
            .handler
            .finished
            .lock()
            .unwrap()
            .iter()
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(finished, (0..30).map(|o| o * 2).collect::<Vec<_>>());
    }

    #[actix_rt::test]
    async fn a_drain_abandons_what_outlives_its_deadline_and_reports_only_what_finished() {
        let handler = Scripted {
            slow: HashMap::from([(3, 10_000)]),
            ..Scripted::default()
        };
        let run = start(handler, &settings(Ordering::Unordered, 8));
        run.stage
            .admit((0..8).map(|o| delivery(o, "a")).collect())
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let began = Instant::now();
        let drained = run.stage.drain().await;
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(drained.abandoned, 1);
        assert_eq!(reported(&run.reports), (Some(2), 3));
        // Admitting again after a drain (a member made active again) starts from an empty window.
        let room = window_size(&settings(Ordering::Unordered, 8));
        assert_eq!(run.stage.room(), room);
        run.stage.admit(vec![delivery(5, "a")]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while reported(&run.reports).0 != Some(5) {
            assert!(Instant::now() < deadline, "{:?}", reported(&run.reports));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix_rt::test]
    async fn the_window_is_the_back_pressure() {
        let handler = Scripted {
            slow: HashMap::from([(0, 200)]),
            ..Scripted::default()
        };
        let processing = settings(Ordering::Unordered, 1);
        let size = window_size(&processing);
        let run = start(handler, &processing);
        let all: Vec<Delivery> = (0..size as u64).map(|o| delivery(o, "a")).collect();
        run.stage.admit(all).unwrap();
        assert_eq!(run.stage.room(), 0);
        assert!(run.stage.admit(vec![delivery(size as u64, "a")]).is_err());
        let refill = run.stage.refill();
        assert!(
            refill > 1 && refill < size,
            "refills by a part of the window"
        );
        tokio::time::timeout(
            Duration::from_secs(5),
            run.stage.wait_for_room(refill, CancellationToken::new()),
        )
        .await
        .unwrap();
        assert!(run.stage.room() >= refill);
    }
}
