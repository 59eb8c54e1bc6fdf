//! The wave's body format: `hello0`, `hello1`, …, and for the last message of a stream (of each
//! partition, on a super stream) `marker{index}`, which tells a consumer the wave is complete.

pub use shared::marker::{is_marker, MARKER_PREFIX};

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

/// What a wave's messages carry: the tutorial's bodies ([`body`]), or lines of the user's
/// (`producer --from-file`), then, unless asked not to, a marker.
#[derive(Debug, Clone, Default)]
pub(crate) enum Bodies {
    /// `hello{i}`, the last of each stream or partition `marker{i}`.
    #[default]
    Wave,
    /// Message `i` carries `lines[i]` as it is (a line is never taken for a marker by its
    /// place); with `marker`, one message more after them: `marker{n}`, `n` the number of lines.
    Lines {
        lines: std::sync::Arc<Vec<Vec<u8>>>,
        marker: bool,
    },
}

impl Bodies {
    /// Messages in the wave: `count` for the tutorial's bodies, the lines (and the marker)
    /// otherwise.
    pub(crate) fn count(&self, count: u64) -> u64 {
        match self {
            Bodies::Wave => count,
            Bodies::Lines { lines, marker } => lines.len() as u64 + u64::from(*marker),
        }
    }

    /// The body of the wave's message `index`, `last` of its stream or partition.
    pub(crate) fn body(&self, index: u64, last: bool) -> Vec<u8> {
        match self {
            Bodies::Wave => body(index, last).into_bytes(),
            Bodies::Lines { lines, .. } => usize::try_from(index)
                .ok()
                .and_then(|i| lines.get(i))
                .cloned()
                .unwrap_or_else(|| body(index, true).into_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_published_as_they_are_then_the_marker() {
        let lines = std::sync::Arc::new(vec![b"a".to_vec(), b"marker-like? no: a line".to_vec()]);
        let with_marker = Bodies::Lines {
            lines: lines.clone(),
            marker: true,
        };
        assert_eq!(with_marker.count(100), 3);
        assert_eq!(with_marker.body(0, false), b"a");
        // A line keeps its text even as the last message of a lane.
        assert_eq!(with_marker.body(1, true), b"marker-like? no: a line");
        assert_eq!(with_marker.body(2, true), b"marker2");
        let without = Bodies::Lines {
            lines,
            marker: false,
        };
        assert_eq!(without.count(100), 2);
        assert_eq!(Bodies::Wave.count(100), 100);
        assert_eq!(Bodies::Wave.body(99, true), b"marker99");
    }

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
