//! Super stream routing: which partition a routing key goes to, computed exactly as the other
//! RabbitMQ stream clients do (Java's and Go's `HashRoutingMurmurStrategy`, Python `rstream`'s,
//! the Rust client's): murmur3 32-bit of the key's UTF-8 bytes, seed 104729, modulo the number of
//! partitions, as an index into the super stream's partitions in the broker's order.

/// The seed every RabbitMQ stream client hashes routing keys with.
pub const SEED: u32 = 104_729;

/// The index of the partition `key` goes to, among `partitions` (at least 1).
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    // Reading from a byte slice cannot fail.
    let hash = murmur3::murmur3_32(&mut key.as_bytes(), SEED).unwrap_or_default();
    hash % partitions.max(1)
}

/// The routing key of message `index` under the template `producer.routing_key`.
pub fn routing_key(template: &str, index: u64) -> String {
    template.replace("{index}", &index.to_string())
}

/// Message indices `0..count` routed to partition `partition` of `partitions`, in order.
pub fn indices_of(
    template: &str,
    count: u64,
    partition: u32,
    partitions: u32,
) -> impl Iterator<Item = u64> + '_ {
    (0..count).filter(move |&i| partition_of(&routing_key(template, i), partitions) == partition)
}

/// `"partition s-0: "` to start a message about one partition; nothing for a plain stream.
pub fn partition_label(stream: &str, partitioned: bool) -> String {
    if partitioned {
        format!("partition {stream}: ")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_reference_murmur3() {
        // murmur3_32 reference values (seed 0), as published with the algorithm.
        assert_eq!(murmur3::murmur3_32(&mut "".as_bytes(), 0).unwrap(), 0);
        assert_eq!(
            murmur3::murmur3_32(&mut "hello".as_bytes(), 0).unwrap(),
            0x248b_fa47
        );
    }

    #[test]
    fn chooses_the_partition_python_mmh3_chooses() {
        // Computed with Python's mmh3 (the hash rstream routes with), an implementation
        // independent of ours: mmh3.hash(key, 104729, signed=False) and that % 3.
        let vectors = [
            ("0", 2_929_165_565u32),
            ("1", 2_446_297_838),
            ("2", 1_682_587_453),
            ("7", 2_767_807_222),
            ("42", 3_939_580_941),
            ("hello", 1_321_743_225),
            ("order-99", 3_686_724_853),
        ];
        for (key, hash) in vectors {
            assert_eq!(
                murmur3::murmur3_32(&mut key.as_bytes(), SEED).unwrap(),
                hash,
                "{key}"
            );
            assert_eq!(partition_of(key, 3), hash % 3, "{key}");
        }
    }

    #[test]
    fn spreads_keys_over_every_partition_and_is_stable() {
        let mut counts = [0u32; 3];
        for i in 0..3000 {
            counts[partition_of(&routing_key("{index}", i), 3) as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (800..1200).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(partition_of("7", 3), partition_of("7", 3));
        assert_eq!(partition_of("anything", 1), 0);
    }

    #[test]
    fn indices_of_partitions_cover_the_wave_once() {
        let mut all: Vec<u64> = (0..3)
            .flat_map(|p| indices_of("k{index}", 500, p, 3))
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..500).collect::<Vec<_>>());
    }
}
