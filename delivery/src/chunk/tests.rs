//! Unit tests of chunk decoding over hand-built chunks, and the chunk builder other tests use.
//! Over 500 lines: one test per way a chunk can be wrong, plus the truncation and corruption
//! loops; splitting them would scatter the builder they all share.

use super::*;
use crate::compression::compress_for_tests;
use rabbitmq_stream_protocol::codec::Encoder;

/// One data entry of a hand-built chunk.
#[derive(Clone)]
pub(crate) enum Entry {
    /// A simple entry holding one record.
    Simple(Vec<u8>),
    /// A sub-entry batch.
    Sub(Compression, Vec<Vec<u8>>),
}

/// Builds the bytes of an osiris chunk as the broker sends it to a consumer.
pub(crate) struct TestChunk {
    pub kind: u8,
    pub first_offset: u64,
    pub timestamp_ms: i64,
    pub entries: Vec<Entry>,
    /// Bytes appended after the data, announced as the trailer.
    pub trailer: Vec<u8>,
}

impl TestChunk {
    pub fn user(first_offset: u64, entries: Vec<Entry>) -> Self {
        Self {
            kind: 0,
            first_offset,
            timestamp_ms: 1_700_000_000_123,
            entries,
            trailer: Vec::new(),
        }
    }

    /// Returns the chunk and the offset of its data section.
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::new();
        let mut records = 0u32;
        for entry in &self.entries {
            match entry {
                Entry::Simple(body) => {
                    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    data.extend_from_slice(body);
                    records += 1;
                }
                Entry::Sub(codec, bodies) => {
                    let mut plain = Vec::new();
                    for body in bodies {
                        plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
                        plain.extend_from_slice(body);
                    }
                    let packed = compress_for_tests(*codec, &plain);
                    data.push(0x80 | (codec.code() << 4));
                    data.extend_from_slice(&(bodies.len() as u16).to_be_bytes());
                    data.extend_from_slice(&(plain.len() as u32).to_be_bytes());
                    data.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                    data.extend_from_slice(&packed);
                    records += bodies.len() as u32;
                }
            }
        }
        let mut out = Vec::with_capacity(HEADER_LEN + data.len());
        out.push(MAGIC_VERSION);
        out.push(self.kind);
        out.extend_from_slice(&(self.entries.len() as u16).to_be_bytes());
        out.extend_from_slice(&records.to_be_bytes());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&7u64.to_be_bytes()); // epoch
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&crc32fast::hash(&data).to_be_bytes());
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(&(self.trailer.len() as u32).to_be_bytes());
        out.extend_from_slice(&[16, 0, 0, 0]); // bloom filter size (not sent), reserved
        out.extend_from_slice(&data);
        out.extend_from_slice(&self.trailer);
        out
    }
}

/// An AMQP 1.0 message with `body` as its data section, encoded.
pub(crate) fn amqp(body: &str) -> Vec<u8> {
    let message = Message::builder().body(body.as_bytes().to_vec()).build();
    let mut out = Vec::new();
    message.encode(&mut out).unwrap();
    out
}

fn bodies(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| amqp(&format!("{prefix}{i}"))).collect()
}

fn texts(chunk: &Chunk) -> Vec<(u64, String)> {
    chunk
        .records
        .iter()
        .map(|r| {
            let data = r.message.data().unwrap_or_default();
            (r.offset, String::from_utf8(data.to_vec()).unwrap())
        })
        .collect()
}

fn decode_vec(bytes: Vec<u8>) -> Result<Chunk, ChunkError> {
    decode_chunk(Bytes::from(bytes))
}

/// Recomputes the data CRC of an encoded chunk (after the test changed its data).
fn fix_crc(bytes: &mut [u8]) {
    let data_len = u32::from_be_bytes(bytes[36..40].try_into().unwrap()) as usize;
    let end = (HEADER_LEN + data_len).min(bytes.len());
    let crc = crc32fast::hash(&bytes[HEADER_LEN.min(end)..end]);
    bytes[32..36].copy_from_slice(&crc.to_be_bytes());
}

const CODECS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

fn mixed() -> TestChunk {
    TestChunk::user(
        1000,
        vec![
            Entry::Simple(amqp("a")),
            Entry::Sub(Compression::Gzip, bodies("gz", 3)),
            Entry::Simple(amqp("b")),
            Entry::Sub(Compression::Zstd, bodies("zs", 2)),
            Entry::Sub(Compression::None, bodies("no", 2)),
            Entry::Sub(Compression::Snappy, bodies("sn", 2)),
            Entry::Sub(Compression::Lz4, bodies("lz", 2)),
        ],
    )
}

#[test]
fn plain_entries_decode_with_their_offsets() {
    let chunk = decode_vec(
        TestChunk::user(
            100,
            vec![
                Entry::Simple(amqp("hello0")),
                Entry::Simple(amqp("hello1")),
                Entry::Simple(amqp("marker2")),
            ],
        )
        .encode(),
    )
    .unwrap();
    assert_eq!(chunk.kind, ChunkKind::User);
    assert_eq!(chunk.first_offset, 100);
    assert_eq!(chunk.timestamp_ms, 1_700_000_000_123);
    assert_eq!(chunk.record_count, 3);
    assert_eq!(chunk.next_offset(), 103);
    assert_eq!(
        texts(&chunk),
        vec![
            (100, "hello0".to_owned()),
            (101, "hello1".to_owned()),
            (102, "marker2".to_owned())
        ]
    );
}

#[test]
fn sub_entries_of_every_codec_decode_message_by_message() {
    for codec in CODECS {
        let chunk = decode_vec(
            TestChunk::user(
                5,
                vec![
                    Entry::Sub(codec, bodies("m", 100)),
                    Entry::Sub(codec, bodies("n", 7)),
                ],
            )
            .encode(),
        )
        .unwrap_or_else(|e| panic!("{codec}: {e}"));
        assert_eq!(chunk.record_count, 107, "{codec}");
        let got = texts(&chunk);
        let want: Vec<(u64, String)> = (0..100)
            .map(|i| format!("m{i}"))
            .chain((0..7).map(|i| format!("n{i}")))
            .enumerate()
            .map(|(i, s)| (5 + i as u64, s))
            .collect();
        assert_eq!(got, want, "{codec}");
    }
}

#[test]
fn mixed_entries_count_sub_entry_records_one_by_one() {
    let chunk = decode_vec(mixed().encode()).unwrap();
    let want = [
        "a", "gz0", "gz1", "gz2", "b", "zs0", "zs1", "no0", "no1", "sn0", "sn1", "lz0", "lz1",
    ];
    let want: Vec<(u64, String)> = want
        .iter()
        .enumerate()
        .map(|(i, s)| (1000 + i as u64, s.to_string()))
        .collect();
    assert_eq!(texts(&chunk), want);
    assert_eq!(chunk.record_count, 13);
}

#[test]
fn tracking_chunks_have_no_records_but_keep_their_count() {
    for (code, kind) in [
        (1, ChunkKind::TrackingDelta),
        (2, ChunkKind::TrackingSnapshot),
    ] {
        // A tracking entry: type 1 (offset), id size, id, offset.
        let mut entry = vec![1u8, 4];
        entry.extend_from_slice(b"name");
        entry.extend_from_slice(&42u64.to_be_bytes());
        let mut c = TestChunk::user(50, vec![Entry::Simple(entry)]);
        c.kind = code;
        let chunk = decode_vec(c.encode()).unwrap();
        assert_eq!(chunk.kind, kind);
        assert_eq!(chunk.first_offset, 50);
        assert_eq!(chunk.record_count, 1);
        assert_eq!(chunk.next_offset(), 51);
        assert!(chunk.records.is_empty());
    }
}

#[test]
fn a_trailer_after_the_data_is_accepted_other_bytes_are_not() {
    let mut c = TestChunk::user(0, vec![Entry::Simple(amqp("x"))]);
    c.trailer = vec![1, 2, 3, 4, 5];
    assert_eq!(decode_vec(c.encode()).unwrap().records.len(), 1);
    let mut bytes = c.encode();
    bytes.push(0);
    let err = decode_vec(bytes).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Inconsistent(_)),
        "{err}"
    );
}

#[test]
fn empty_user_chunk_decodes() {
    let chunk = decode_vec(TestChunk::user(9, vec![]).encode()).unwrap();
    assert!(chunk.records.is_empty());
    assert_eq!(chunk.record_count, 0);
}

#[test]
fn errors_name_the_chunk_and_what_was_found() {
    // Wrong magic / version.
    let mut bytes = mixed().encode();
    bytes[0] = 0x51;
    let err = decode_vec(bytes).unwrap_err();
    assert!(matches!(err.problem(), ChunkProblem::UnknownVersion(0x51)));
    assert_eq!(err.first_offset(), Some(1000));
    let text = err.to_string();
    assert!(
        text.contains("offset 1000") && text.contains("0x51"),
        "{text}"
    );

    // Unknown chunk type.
    let mut bytes = mixed().encode();
    bytes[1] = 3;
    let err = decode_vec(bytes).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::UnknownChunkType(3)),
        "{err}"
    );

    // CRC mismatch.
    let mut bytes = mixed().encode();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let err = decode_vec(bytes).unwrap_err();
    assert!(matches!(err.problem(), ChunkProblem::Crc { .. }), "{err}");
    assert!(err.to_string().contains("CRC"), "{err}");

    // Header shorter than the first offset field.
    let err = decode_vec(vec![0x50, 0, 0]).unwrap_err();
    assert_eq!(err.first_offset(), None);
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// A chunk with one sub-entry whose header byte, lengths and body the test sets.
fn raw_sub_entry(first: u8, count: u16, uncompressed: u32, body: &[u8], records: u32) -> Vec<u8> {
    let mut data = vec![first];
    data.extend_from_slice(&count.to_be_bytes());
    data.extend_from_slice(&uncompressed.to_be_bytes());
    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
    data.extend_from_slice(body);
    raw_chunk(1, records, &data, 77)
}

fn raw_chunk(entries: u16, records: u32, data: &[u8], first_offset: u64) -> Vec<u8> {
    let mut out = vec![MAGIC_VERSION, 0];
    out.extend_from_slice(&entries.to_be_bytes());
    out.extend_from_slice(&records.to_be_bytes());
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes());
    out.extend_from_slice(&first_offset.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(data).to_be_bytes());
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn unknown_compression_code_is_an_error() {
    for code in [5u8, 6, 7] {
        let err = decode_vec(raw_sub_entry(0x80 | (code << 4), 1, 4, &[0; 4], 1)).unwrap_err();
        assert!(
            matches!(err.problem(), ChunkProblem::UnknownCompression { entry: 0, code: c } if *c == code),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("compression code {code}")),
            "{err}"
        );
    }
}

#[test]
fn decompression_failures_are_errors() {
    for codec in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let err = decode_vec(raw_sub_entry(
            0x80 | (codec.code() << 4),
            1,
            100,
            b"definitely not compressed data",
            1,
        ))
        .unwrap_err();
        assert!(
            matches!(err.problem(), ChunkProblem::Decompression { .. }),
            "{codec}: {err}"
        );
        assert!(err.to_string().contains(&codec.to_string()), "{err}");
    }
}

#[test]
fn a_sub_entry_larger_than_it_declares_is_refused() {
    let mut plain = Vec::new();
    for body in bodies("x", 10) {
        plain.extend_from_slice(&(body.len() as u32).to_be_bytes());
        plain.extend_from_slice(&body);
    }
    for codec in [Compression::Gzip, Compression::Zstd] {
        let packed = compress_for_tests(codec, &plain);
        let declared = plain.len() as u32 - 1;
        let err = decode_vec(raw_sub_entry(
            0x80 | (codec.code() << 4),
            10,
            declared,
            &packed,
            10,
        ))
        .unwrap_err();
        assert!(
            matches!(err.problem(), ChunkProblem::Oversized { .. }),
            "{err}"
        );
    }
    // Declaring more than a chunk may hold is refused before decompressing anything.
    let err = decode_vec(raw_sub_entry(0x80 | (4 << 4), 1, u32::MAX, &[0; 8], 1)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Oversized { .. }),
        "{err}"
    );
}

#[test]
fn bad_amqp_messages_are_errors_naming_the_offset() {
    let mut c = TestChunk::user(
        10,
        vec![
            Entry::Simple(amqp("ok")),
            Entry::Simple(vec![0xff, 0xff, 0xff]),
        ],
    );
    let err = decode_vec(c.encode()).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::BadMessage { offset: 11, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("offset 11"), "{err}");
    // The same inside a compressed sub-entry.
    c.entries = vec![Entry::Sub(
        Compression::Zstd,
        vec![amqp("ok"), amqp("ok"), vec![0x00, 0x53]],
    )];
    let err = decode_vec(c.encode()).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::BadMessage { offset: 12, .. }),
        "{err}"
    );
}

#[test]
fn counts_that_do_not_add_up_are_errors() {
    // The header announces more records than the entries hold.
    let mut data = Vec::new();
    let body = amqp("x");
    data.extend_from_slice(&(body.len() as u32).to_be_bytes());
    data.extend_from_slice(&body);
    let err = decode_vec(raw_chunk(1, 2, &data, 0)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Inconsistent(_)),
        "{err}"
    );
    // More entries announced than the data holds.
    let err = decode_vec(raw_chunk(2, 2, &data, 0)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Truncated { .. }),
        "{err}"
    );
    // Data left over after the announced entries.
    let mut two = data.clone();
    two.extend_from_slice(&data);
    let err = decode_vec(raw_chunk(1, 1, &two, 0)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Inconsistent(_)),
        "{err}"
    );
    // A sub-entry whose body holds more than its record count.
    let mut plain = Vec::new();
    for b in bodies("y", 3) {
        plain.extend_from_slice(&(b.len() as u32).to_be_bytes());
        plain.extend_from_slice(&b);
    }
    let err = decode_vec(raw_sub_entry(0x80, 2, plain.len() as u32, &plain, 2)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Inconsistent(_)),
        "{err}"
    );
}

#[test]
fn huge_length_fields_are_checked_before_anything_is_allocated() {
    // A simple entry claiming 2 GiB, a record count of 4 billion, a data length of 4 GiB.
    let data = [0x7f, 0xff, 0xff, 0xff, 1, 2, 3];
    let err = decode_vec(raw_chunk(1, u32::MAX, &data, 0)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Truncated { .. }),
        "{err}"
    );
    let mut bytes = raw_chunk(1, 1, &data, 0);
    bytes[36..40].copy_from_slice(&u32::MAX.to_be_bytes());
    let err = decode_vec(bytes).unwrap_err();
    assert!(
        matches!(
            err.problem(),
            ChunkProblem::Truncated {
                what: "data section",
                ..
            }
        ),
        "{err}"
    );
    // A sub-entry claiming 65535 records in 4 bytes.
    let err = decode_vec(raw_sub_entry(0x80, u16::MAX, 4, &[0, 0, 0, 0], 65535)).unwrap_err();
    assert!(
        matches!(err.problem(), ChunkProblem::Truncated { .. }),
        "{err}"
    );
}

#[test]
fn every_truncation_of_a_valid_chunk_is_an_error_never_a_panic() {
    let mut c = mixed();
    c.trailer = vec![9; 12];
    let bytes = c.encode();
    let data_end = bytes.len() - c.trailer.len();
    for len in 0..bytes.len() {
        let result = decode_vec(bytes[..len].to_vec());
        if len == data_end {
            // Header and data without the trailer: what the broker sends consumers.
            assert!(result.is_ok(), "cut at {len}: {:?}", result.err());
        } else {
            let err = result.expect_err(&format!("cut at {len} decoded"));
            assert_eq!(
                err.first_offset(),
                (len >= 32).then_some(1000),
                "cut at {len}"
            );
        }
    }
}

#[test]
fn corrupted_bytes_never_panic() {
    // Flip bytes everywhere (CRC recomputed, so the decoder gets past the checksum and meets the
    // corruption itself) with a few patterns.
    let bytes = mixed().encode();
    for pos in 0..bytes.len() {
        for pattern in [0x01u8, 0x80, 0xff, 0x7f] {
            let mut corrupted = bytes.clone();
            corrupted[pos] ^= pattern;
            if !(32..36).contains(&pos) {
                fix_crc(&mut corrupted);
            }
            let _ = decode_vec(corrupted);
        }
    }
    // A pseudo-random walk over whole-chunk garbage with a valid header.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..2000 {
        let mut data = Vec::new();
        for _ in 0..(round % 97) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            data.push(seed as u8);
        }
        let entries = (seed >> 8) as u16 % 5;
        let records = (seed >> 24) as u32 % 300;
        let _ = decode_vec(raw_chunk(entries, records, &data, seed));
    }
}
