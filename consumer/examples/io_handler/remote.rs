//! STAND-IN for a remote service (a database, an HTTP API) that answers every call a fixed
//! latency after it was made: what the example's handler awaits in place of real I/O.
//!
//! One task on the consumer's own runtime answers every call in flight, woken by one timerfd
//! registered with the runtime's reactor: a call costs a queue slot and a oneshot, not a timer
//! of its own. Per-call timers would measure themselves rather than the consumer:
//! `tokio::time::sleep` ticks in milliseconds and waits 2.2 ms when asked for 1 ms (measured),
//! and a precise timer thread (async-io) pays a cross-thread wake-up per call.
//!
//! A call is never answered before its latency has passed; calls due within [`SLACK`] of the
//! first due are answered together, so the answer may come up to that much late, plus the
//! wake-up of the runtime's thread (measured: a 1 ms call answered after 1.07 ms when alone).

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_timerfd::Delay;

/// How late past its due time a call may be answered, so that one wake-up answers several.
/// 10 µs: at 50 µs (the kernel's default timer slack) the stand-in's own lateness cost the
/// 256-in-flight bench row 5 % of its rate; at 10 µs it wakes at most 100 000 times a second.
const SLACK: Duration = Duration::from_micros(10);

/// A call: when it is due, and where its answer goes.
type Call = (Instant, oneshot::Sender<()>);

/// The handle the handler calls through; cheap to clone.
#[derive(Clone)]
pub struct Remote {
    latency: Duration,
    calls: mpsc::UnboundedSender<Call>,
}

impl Remote {
    /// Starts the service on the current runtime.
    pub fn start(latency: Duration) -> io::Result<Self> {
        let timer = Delay::new(Instant::now())?;
        let (calls, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            if let Err(err) = serve(timer, inbox).await {
                tracing::error!("the stand-in remote service stopped: {err}");
            }
        });
        Ok(Self { latency, calls })
    }

    /// One call: resolves `latency` after it was made (`Err`: the service is gone).
    pub async fn call(&self) -> Result<(), String> {
        let (answer, answered) = oneshot::channel();
        self.calls
            .send((Instant::now() + self.latency, answer))
            .map_err(|_| "the stand-in remote service is gone".to_owned())?;
        answered
            .await
            .map_err(|_| "the stand-in remote service dropped a call".to_owned())
    }
}

/// Answers calls as they fall due until every handle is gone. Calls arrive in due order (one
/// latency for all), so the queue is a FIFO.
async fn serve(timer: Delay, mut inbox: mpsc::UnboundedReceiver<Call>) -> io::Result<()> {
    tokio::pin!(timer);
    let mut pending: VecDeque<Call> = VecDeque::new();
    let mut armed_for: Option<Instant> = None;
    loop {
        let now = Instant::now();
        while pending.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, answer)) = pending.pop_front() {
                let _ = answer.send(());
            }
        }
        match pending.front() {
            Some(&(due, _)) if armed_for != Some(due) => {
                timer.as_mut().reset(due + SLACK);
                armed_for = Some(due);
            }
            Some(_) => {}
            None => armed_for = None,
        }
        tokio::select! {
            call = inbox.recv() => match call {
                Some(call) => {
                    pending.push_back(call);
                    while let Ok(call) = inbox.try_recv() {
                        pending.push_back(call);
                    }
                }
                None => return Ok(()),
            },
            fired = &mut timer, if armed_for.is_some() => {
                fired?;
                armed_for = None;
            }
        }
    }
}
