//! Containing a handler's panic: the stage catches it and ends the run with an error naming the
//! message, instead of the process-wide panic hook (installed by the `consumer` binary) ending
//! the process. [`Contained`] marks the thread while it polls the handler's future;
//! [`panic_is_contained`] tells the hook so.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

thread_local! {
    static POLLING_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the panic being raised on this thread comes from a handler's future that the
/// processing stage polls and catches (or from a contained decode of the `delivery` crate).
pub fn panic_is_contained() -> bool {
    POLLING_HANDLER.get() || delivery::panic_is_contained()
}

pin_project_lite::pin_project! {
    /// A future polled with the thread marked as containing its panics.
    pub(crate) struct Contained<F> {
        #[pin]
        inner: F,
    }
}

impl<F: Future> Contained<F> {
    pub(crate) fn new(inner: F) -> Self {
        Self { inner }
    }
}

/// Clears the mark when the poll ends, by returning or by unwinding.
struct Unmark(bool);

impl Drop for Unmark {
    fn drop(&mut self) {
        POLLING_HANDLER.set(self.0);
    }
}

impl<F: Future> Future for Contained<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _unmark = Unmark(POLLING_HANDLER.replace(true));
        self.project().inner.poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;

    #[tokio::test]
    async fn a_panic_inside_is_marked_and_the_mark_ends_with_the_poll() {
        assert!(!panic_is_contained());
        let seen = Contained::new(async { panic_is_contained() }).await;
        assert!(seen);
        assert!(!panic_is_contained());
        let caught = AssertUnwindSafe(Contained::new(async {
            if panic_is_contained() {
                panic!("handler");
            }
        }))
        .catch_unwind()
        .await;
        assert!(caught.is_err());
        assert!(!panic_is_contained());
    }
}
