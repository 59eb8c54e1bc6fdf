//! Lanes: how a wave is split over producers. A plain stream has one lane, the whole wave; a
//! super stream has one lane per partition, the messages whose routing key hashes to it
//! ([`shared::routing`]), each with its own producer (named `{producer.name}-{partition}`), so
//! deduplication and resends work per partition. The last message of each lane is its marker.

use shared::error::{Error, Result};
use shared::routing;

/// What one producer publishes: the whole wave on a plain stream, or the messages routed to one
/// partition of a super stream.
#[derive(Debug, Clone)]
pub(crate) struct Lane {
    /// The stream (or partition) written to.
    pub(crate) stream: String,
    /// `(partition, partitions)` on a super stream.
    partition: Option<(u32, u32)>,
    /// `producer.routing_key`.
    routing_key: String,
    /// Messages in the whole wave.
    wave: u64,
    /// Messages in this lane.
    len: u64,
}

impl Lane {
    /// The lanes of a wave of `count` messages over `streams` (one: a plain stream; several: the
    /// partitions of a super stream, in the broker's order). Refuses a wave that would leave a
    /// partition without messages (it would get no marker).
    pub(crate) fn plan(streams: &[String], count: u64, routing_key: &str) -> Result<Vec<Lane>> {
        if let [stream] = streams {
            return Ok(vec![Lane {
                stream: stream.clone(),
                partition: None,
                routing_key: routing_key.to_owned(),
                wave: count,
                len: count,
            }]);
        }
        if streams.is_empty() {
            return Err(Error::Internal("no stream to publish to".into()));
        }
        let partitions = u32::try_from(streams.len())
            .map_err(|_| Error::Internal("too many partitions".into()))?;
        let mut lens = vec![0u64; streams.len()];
        for index in 0..count {
            let key = routing::routing_key(routing_key, index);
            if let Some(len) = lens.get_mut(routing::partition_of(&key, partitions) as usize) {
                *len += 1;
            }
        }
        if let Some(empty) = lens.iter().position(|&len| len == 0) {
            return Err(Error::Config(format!(
                "producer.message_count = {count} routes no message to partition {} of {partitions} \
                 ({}), which would get no marker; publish more messages",
                empty, streams[empty]
            )));
        }
        Ok(streams
            .iter()
            .zip(lens)
            .zip(0..partitions)
            .map(|((stream, len), partition)| Lane {
                stream: stream.clone(),
                partition: Some((partition, partitions)),
                routing_key: routing_key.to_owned(),
                wave: count,
                len,
            })
            .collect())
    }

    /// Messages in this lane (at least 1: the marker).
    pub(crate) fn messages(&self) -> u64 {
        self.len
    }

    /// The wave indices of this lane's messages from position `skip` on.
    pub(crate) fn indices(&self, skip: u64) -> Box<dyn Iterator<Item = u64> + Send + '_> {
        match self.partition {
            None => Box::new(skip..self.wave),
            Some((partition, partitions)) => Box::new(
                routing::indices_of(&self.routing_key, self.wave, partition, partitions)
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX)),
            ),
        }
    }

    /// The producer's name for this lane, if publishing is named.
    pub(crate) fn producer_name(&self, name: Option<&str>) -> Option<String> {
        let name = name?;
        Some(match self.partition {
            None => name.to_owned(),
            Some((partition, _)) => format!("{name}-{partition}"),
        })
    }

    /// "partition s-1: " on a super stream, nothing on a plain stream.
    pub(crate) fn label(&self) -> String {
        routing::partition_label(&self.stream, self.partition.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::body;

    #[test]
    fn the_last_message_of_each_lane_is_its_marker() {
        let plain = Lane::plan(&["s".into()], 100, "{index}").unwrap();
        assert_eq!(plain.len(), 1);
        let bodies: Vec<String> = (0..100u64)
            .zip(plain[0].indices(0))
            .map(|(position, index)| body(index, position + 1 == 100))
            .collect();
        assert_eq!(bodies[0], "hello0");
        assert_eq!(bodies[98], "hello98");
        assert_eq!(bodies[99], "marker99");

        let streams: Vec<String> = (0..3).map(|p| format!("s-{p}")).collect();
        let lanes = Lane::plan(&streams, 1000, "{index}").unwrap();
        assert_eq!(lanes.iter().map(Lane::messages).sum::<u64>(), 1000);
        for (p, lane) in lanes.iter().enumerate() {
            let indices: Vec<u64> = lane.indices(0).collect();
            assert_eq!(indices.len() as u64, lane.messages());
            assert!(indices.iter().all(|&i| {
                routing::partition_of(&routing::routing_key("{index}", i), 3) == p as u32
            }));
            // Resuming at a position skips exactly the ones before it.
            assert_eq!(lane.indices(5).next(), Some(indices[5]));
            assert_eq!(lane.producer_name(Some("p")), Some(format!("p-{p}")));
        }
    }

    #[test]
    fn a_partition_left_without_messages_is_refused() {
        let streams: Vec<String> = (0..3).map(|p| format!("s-{p}")).collect();
        let err = Lane::plan(&streams, 1, "{index}").unwrap_err();
        assert!(err.to_string().contains("no marker"), "{err}");
    }

    #[test]
    fn no_stream_is_an_error_not_a_panic() {
        assert!(Lane::plan(&[], 10, "{index}").is_err());
    }
}
