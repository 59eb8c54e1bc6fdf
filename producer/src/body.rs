//! The wave's body format: `hello0`, `hello1`, …, and for the last message of a stream (of each
//! partition, on a super stream) `marker{index}`, which tells a consumer the wave is complete.

/// What the body of the last message of a stream starts with.
pub const MARKER_PREFIX: &str = "marker";

/// The body of the message with wave index `index`: `marker{index}` when it is the `last` one
/// of its stream (or partition), `hello{index}` otherwise.
///
/// ```
/// assert_eq!(producer::body(0, false), "hello0");
/// assert_eq!(producer::body(99, true), "marker99");
/// ```
pub fn body(index: u64, last: bool) -> String {
    if last {
        format!("{MARKER_PREFIX}{index}")
    } else {
        format!("hello{index}")
    }
}

/// The body of message `index` of a wave of `count` messages on one plain stream: the last one
/// (`index + 1 == count`) is the marker.
pub fn wave_body(index: u64, count: u64) -> String {
    body(index, index.saturating_add(1) == count)
}

/// Whether `body` is a marker (see [`body`]).
pub fn is_marker(body: &[u8]) -> bool {
    body.starts_with(MARKER_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_message_is_the_marker() {
        assert_eq!(wave_body(0, 3), "hello0");
        assert_eq!(wave_body(1, 3), "hello1");
        assert_eq!(wave_body(2, 3), "marker2");
        assert!(is_marker(wave_body(2, 3).as_bytes()));
        assert!(!is_marker(b"hello2"));
        assert!(!is_marker(b""));
    }
}
