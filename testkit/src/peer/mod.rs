//! Peers that write what our own programs never write, so the tests can read it back: sub-entry
//! batches (what the Java, Go, .NET and Python clients write with sub-entry batching, compressed
//! or not), and chunks no consumer can decode.
//!
//! | module | writer |
//! |---|---|
//! | [`sub_entries`] | [`sub_entries::SubEntryPublisher`], a publisher of our own framing sub-entries from the protocol specification: every codec (none, gzip, snappy, lz4, zstd), plain entries beside them, and batches under unknown codec codes |
//! | [`rstream`] | Python `rstream` from PyPI, installed into a venv under the target directory on first use: another implementation entirely (codecs none and gzip) |
//!
//! [`batches`] cuts a list of bodies into the batches both take. Streams holding sub-entries
//! cannot be read back with `rabbitmq-stream-client` (it panics on them): read them with
//! [`crate::oracle`].

pub mod rstream;
pub mod sub_entries;

/// `bodies` cut into batches of `per_batch` (the last one may be shorter), for
/// [`sub_entries::SubEntryPublisher::publish_sub_entries`] (after [`sub_entries::amqp`]) or
/// [`rstream::publish`].
pub fn batches(bodies: impl IntoIterator<Item = Vec<u8>>, per_batch: usize) -> Vec<Vec<Vec<u8>>> {
    assert!(per_batch > 0, "a batch holds at least one message");
    let mut out: Vec<Vec<Vec<u8>>> = Vec::new();
    for body in bodies {
        match out.last_mut() {
            Some(batch) if batch.len() < per_batch => batch.push(body),
            _ => out.push(vec![body]),
        }
    }
    out
}

/// Each body of each batch as an encoded AMQP message ([`sub_entries::amqp`]).
pub fn encoded(batches: &[Vec<Vec<u8>>]) -> Vec<Vec<Vec<u8>>> {
    batches
        .iter()
        .map(|batch| batch.iter().map(|body| sub_entries::amqp(body)).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_cut_in_order() {
        let bodies = (0..7u8).map(|i| vec![i]);
        assert_eq!(
            batches(bodies, 3),
            vec![
                vec![vec![0], vec![1], vec![2]],
                vec![vec![3], vec![4], vec![5]],
                vec![vec![6]]
            ]
        );
    }
}
