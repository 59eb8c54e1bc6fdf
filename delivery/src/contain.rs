//! Containing the panics of `rabbitmq-stream-protocol`'s decoders, which can panic on malformed
//! input: the crate turns them into errors, and tells a process-wide panic hook (one that ends
//! the process on any other panic) to let them be.

use std::cell::Cell;
use std::panic::{self, UnwindSafe};

thread_local! {
    static CONTAINING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `decode`, catching a panic (it becomes the `Err`).
pub(crate) fn contain<R>(decode: impl FnOnce() -> R + UnwindSafe) -> std::thread::Result<R> {
    let before = CONTAINING.replace(true);
    let result = panic::catch_unwind(decode);
    CONTAINING.set(before);
    result
}

/// Whether the panic being raised on this thread happens inside one of this crate's contained
/// decodes (the crate reports it as an error): a panic hook should let it pass silently.
pub fn panic_is_contained() -> bool {
    CONTAINING.get()
}

/// A panic's message, from its payload (`panic!` makes a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contained_panic_is_an_error_and_the_flag_follows_the_scope() {
        assert!(!panic_is_contained());
        let seen = contain(|| {
            assert!(panic_is_contained());
            7
        });
        assert_eq!(seen.ok(), Some(7));
        let panicked = contain(|| -> u8 { panic!("decoder") });
        assert!(panicked.is_err());
        assert!(!panic_is_contained());
    }
}
