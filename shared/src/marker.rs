//! The tutorial's marker: the body of the last message of a wave (of each partition, on a super
//! stream) starts with `marker`, which tells a consumer the wave is complete. The producer writes
//! it, the consumer stops at it: one definition for both.

/// What the body of the last message of a wave starts with.
pub const MARKER_PREFIX: &str = "marker";

/// Whether `body` is a marker's.
pub fn is_marker(body: &[u8]) -> bool {
    body.starts_with(MARKER_PREFIX.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_is_a_body_starting_with_marker() {
        assert!(is_marker(b"marker99"));
        assert!(is_marker(b"marker"));
        assert!(!is_marker(b"hello2"));
        assert!(!is_marker(b""));
        assert!(!is_marker(b"Marker1"));
    }
}
