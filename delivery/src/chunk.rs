//! Decoding of one osiris chunk, as a Deliver frame carries it, into messages with their offsets.
//!
//! This is what `rabbitmq-stream-protocol` 0.11 gets wrong: it reads every data entry as a plain
//! entry, so a sub-entry batch (what the Java, Go, .NET and Python clients write with sub-entry
//! batching) makes it allocate from garbage and panic. Here every length is checked against what
//! is left before anything is sliced or allocated, and every problem is a [`ChunkError`].
//!
//! Wire layout (osiris `src/osiris_log.erl`, "Chunk format"; all integers big endian), 48 bytes of
//! header, then the data entries, then — depending on the broker's chunk selector — either nothing
//! or the trailer (the bloom filter that osiris stores after the header is *not* sent to
//! consumers):
//!
//! ```text
//! magic:4 = 5 | version:4 = 0 | chunk type u8 (0 user, 1 tracking delta, 2 tracking snapshot)
//! entries u16 | records u32 | timestamp i64 (ms) | epoch u64 | first offset u64 | data CRC-32 u32
//! data length u32 | trailer length u32 | bloom filter size u8 | reserved 3 bytes
//! ```
//!
//! A data entry is either a simple entry, `0:1 | length:31 | body` (one record), or a sub-entry
//! batch, `1:1 | codec:3 | reserved:4 | records u16 | uncompressed length u32 | length u32 | body`,
//! whose body (once decompressed, see the `compression` module) is `records` × `size u32 |
//! record`. Each record is an AMQP 1.0 message. Offsets count records, not entries: record *i* of
//! the chunk (sub-entry records counted one by one) has offset `first offset + i`.

use bytes::Bytes;
use rabbitmq_stream_protocol::codec::Decoder;
use rabbitmq_stream_protocol::message::Message;

use crate::compression::{decompress, Compression, DecompressError};

/// Length of the chunk header.
const HEADER_LEN: usize = 48;
/// The first byte of every chunk: magic 5 in the high nibble, format version 0 in the low one.
const MAGIC_VERSION: u8 = 0x50;
/// Most uncompressed sub-entry data one chunk may declare in total (256 MiB).
pub const MAX_UNCOMPRESSED_PER_CHUNK: u64 = 256 << 20;

/// What a chunk holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// Messages written by producers.
    User,
    /// Tracking entries (stored offsets, producer sequences) added since the last snapshot.
    TrackingDelta,
    /// A snapshot of all tracking entries.
    TrackingSnapshot,
}

/// One decoded osiris chunk.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Offset of the chunk's first record (its chunk id).
    pub first_offset: u64,
    /// When the broker wrote the chunk, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// What the chunk holds.
    pub kind: ChunkKind,
    /// Number of records the chunk holds (every record takes one offset, whatever its kind).
    pub record_count: u32,
    /// The messages, in offset order; empty for tracking chunks. A subscription may have removed
    /// records below its requested start offset, so the first record's offset can be above
    /// `first_offset`.
    pub records: Vec<Record>,
}

impl Chunk {
    /// The offset right after the chunk's last record.
    pub fn next_offset(&self) -> u64 {
        self.first_offset.wrapping_add(u64::from(self.record_count))
    }
}

/// One message and its offset in the stream.
#[derive(Debug, Clone)]
pub struct Record {
    /// The message's offset.
    pub offset: u64,
    /// The message, decoded by `rabbitmq-stream-protocol`'s AMQP 1.0 decoder.
    pub message: Message,
}

/// A chunk that cannot be decoded: which chunk (when its header could be read) and why.
#[derive(Debug)]
pub struct ChunkError {
    first_offset: Option<u64>,
    problem: ChunkProblem,
}

impl ChunkError {
    /// The first offset of the chunk, when the header was long enough to hold it.
    pub fn first_offset(&self) -> Option<u64> {
        self.first_offset
    }

    /// What was wrong with it.
    pub fn problem(&self) -> &ChunkProblem {
        &self.problem
    }
}

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.first_offset {
            Some(offset) => write!(f, "undecodable chunk at offset {offset}: {}", self.problem),
            None => write!(
                f,
                "undecodable chunk (first offset unreadable): {}",
                self.problem
            ),
        }
    }
}

impl std::error::Error for ChunkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.problem)
    }
}

/// What was found in an undecodable chunk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChunkProblem {
    /// Something announces more bytes than are left.
    #[error("truncated: {what} needs {needed} byte(s), {available} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes that were left.
        available: u64,
    },
    /// The first byte is not magic 5 / version 0.
    #[error("unknown magic/version byte {0:#04x} (expected 0x50: magic 5, version 0)")]
    UnknownVersion(u8),
    /// The chunk type is not 0, 1 or 2.
    #[error("unknown chunk type {0}")]
    UnknownChunkType(u8),
    /// A sub-entry names a codec that does not exist.
    #[error("entry {entry}: unknown compression code {code}")]
    UnknownCompression {
        /// Index of the entry in the chunk.
        entry: u16,
        /// The 3-bit code found.
        code: u8,
    },
    /// The codec rejected a sub-entry's data.
    #[error("entry {entry}: {codec} data does not decompress")]
    Decompression {
        /// Index of the entry in the chunk.
        entry: u16,
        /// The sub-entry's codec.
        codec: Compression,
        /// The codec's error.
        #[source]
        source: std::io::Error,
    },
    /// A sub-entry decompresses to more than it declares, or the chunk declares too much.
    #[error("entry {entry}: {codec} sub-entry {detail}")]
    Oversized {
        /// Index of the entry in the chunk.
        entry: u16,
        /// The sub-entry's codec.
        codec: Compression,
        /// Which limit was passed.
        detail: String,
    },
    /// A record is not a valid AMQP 1.0 message.
    #[error("record at offset {offset}: not a valid AMQP 1.0 message ({detail})")]
    BadMessage {
        /// The record's offset.
        offset: u64,
        /// The decoder's complaint.
        detail: String,
    },
    /// Counts and lengths in the chunk contradict each other.
    #[error("lengths do not add up: {0}")]
    Inconsistent(String),
    /// The data does not match the header's CRC-32.
    #[error("data CRC-32 mismatch: header says {expected:#010x}, data has {computed:#010x}")]
    Crc {
        /// CRC in the header.
        expected: u32,
        /// CRC of the data received.
        computed: u32,
    },
}

/// A big-endian reader over a byte slice that never reads past its end.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ChunkProblem> {
        if n > self.remaining() {
            return Err(ChunkProblem::Truncated {
                what,
                needed: n as u64,
                available: self.remaining() as u64,
            });
        }
        let slice = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ChunkProblem> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, ChunkProblem> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, ChunkProblem> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ChunkProblem> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ChunkProblem> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
}

/// The fixed part of a chunk.
struct Header {
    kind_code: u8,
    entries: u16,
    records: u32,
    timestamp_ms: i64,
    first_offset: u64,
    crc: u32,
    data_len: u32,
    trailer_len: u32,
}

fn read_header(c: &mut Cursor<'_>) -> Result<Header, ChunkProblem> {
    let magic = c.u8("magic/version byte")?;
    if magic != MAGIC_VERSION {
        return Err(ChunkProblem::UnknownVersion(magic));
    }
    let kind_code = c.u8("chunk type")?;
    let entries = c.u16("entry count")?;
    let records = c.u32("record count")?;
    let timestamp_ms = i64::from_be_bytes(c.array("timestamp")?);
    let _epoch = c.u64("epoch")?;
    let first_offset = c.u64("first offset")?;
    let crc = c.u32("data CRC")?;
    let data_len = c.u32("data length")?;
    let trailer_len = c.u32("trailer length")?;
    let _bloom_size_and_reserved = c.u32("reserved bytes")?;
    Ok(Header {
        kind_code,
        entries,
        records,
        timestamp_ms,
        first_offset,
        crc,
        data_len,
        trailer_len,
    })
}

/// Decodes one osiris chunk (from its magic/version byte to its end: what a Deliver frame carries
/// after the subscription id).
///
/// User chunks come back with every record decoded, plain entries and sub-entry batches
/// (uncompressed, gzip, snappy, lz4, zstd) alike; tracking chunks come back without records.
/// The data's CRC-32 is checked. Whatever does not decode is a [`ChunkError`]; this function
/// does not panic and allocates nothing a length field asks for before checking it against the
/// bytes that are really there.
pub fn decode_chunk(bytes: Bytes) -> Result<Chunk, ChunkError> {
    // The first offset sits at bytes 24..32: name it in errors whenever it was received.
    let first_offset = bytes
        .get(24..32)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes);
    decode(&bytes).map_err(|problem| ChunkError {
        first_offset,
        problem,
    })
}

fn decode(bytes: &[u8]) -> Result<Chunk, ChunkProblem> {
    let mut c = Cursor::new(bytes);
    let header = read_header(&mut c)?;
    debug_assert_eq!(c.pos, HEADER_LEN);
    let kind = match header.kind_code {
        0 => ChunkKind::User,
        1 => ChunkKind::TrackingDelta,
        2 => ChunkKind::TrackingSnapshot,
        other => return Err(ChunkProblem::UnknownChunkType(other)),
    };
    let data = c.take(header.data_len as usize, "data section")?;
    // After the data: nothing (the broker's "user data" selector) or exactly the trailer.
    let rest = c.remaining();
    if rest != 0 && rest != header.trailer_len as usize {
        return Err(ChunkProblem::Inconsistent(format!(
            "{rest} byte(s) follow the {} byte(s) of data, the trailer length is {}",
            header.data_len, header.trailer_len
        )));
    }
    let computed = crc32fast::hash(data);
    if computed != header.crc {
        return Err(ChunkProblem::Crc {
            expected: header.crc,
            computed,
        });
    }
    let records = match kind {
        ChunkKind::User => decode_entries(data, &header)?,
        ChunkKind::TrackingDelta | ChunkKind::TrackingSnapshot => Vec::new(),
    };
    Ok(Chunk {
        first_offset: header.first_offset,
        timestamp_ms: header.timestamp_ms,
        kind,
        record_count: header.records,
        records,
    })
}

fn decode_entries(data: &[u8], header: &Header) -> Result<Vec<Record>, ChunkProblem> {
    let mut c = Cursor::new(data);
    // Every record takes at least 4 bytes of the data (or of decompressed data): do not let the
    // header's count reserve more than the data could hold.
    let mut records = Vec::with_capacity((header.records as usize).min(data.len() / 4 + 1));
    let mut budget = MAX_UNCOMPRESSED_PER_CHUNK;
    let mut offset = header.first_offset;
    for entry in 0..header.entries {
        let first = *c.bytes.get(c.pos).ok_or(ChunkProblem::Truncated {
            what: "entry header",
            needed: 1,
            available: 0,
        })?;
        if first & 0x80 == 0 {
            let len = c.u32("simple entry length")? & 0x7fff_ffff;
            let body = c.take(len as usize, "simple entry body")?;
            records.push(decode_record(offset, body)?);
            offset = offset.wrapping_add(1);
        } else {
            let kind = c.u8("sub-entry header")?;
            let code = (kind & 0x70) >> 4;
            let codec = Compression::from_code(code)
                .ok_or(ChunkProblem::UnknownCompression { entry, code })?;
            let count = c.u16("sub-entry record count")?;
            let uncompressed_len = c.u32("sub-entry uncompressed length")?;
            let len = c.u32("sub-entry length")?;
            let body = c.take(len as usize, "sub-entry body")?;
            let decompressed;
            let plain: &[u8] = if codec == Compression::None {
                body
            } else {
                let declared = u64::from(uncompressed_len);
                if declared > budget {
                    return Err(ChunkProblem::Oversized {
                        entry,
                        codec,
                        detail: format!(
                            "declares {declared} uncompressed byte(s), more than the {budget} \
                             left of the {MAX_UNCOMPRESSED_PER_CHUNK} allowed per chunk"
                        ),
                    });
                }
                budget -= declared;
                decompressed = decompress(codec, body, uncompressed_len as usize).map_err(
                    |e| match e {
                        DecompressError::Codec(source) => ChunkProblem::Decompression {
                            entry,
                            codec,
                            source,
                        },
                        DecompressError::Overflow => ChunkProblem::Oversized {
                            entry,
                            codec,
                            detail: format!(
                                "decompresses to more than the {uncompressed_len} byte(s) it declares"
                            ),
                        },
                    },
                )?;
                &decompressed
            };
            let mut inner = Cursor::new(plain);
            for _ in 0..count {
                let size = inner.u32("sub-entry record size")?;
                let body = inner.take(size as usize, "sub-entry record")?;
                records.push(decode_record(offset, body)?);
                offset = offset.wrapping_add(1);
            }
            if inner.remaining() != 0 {
                return Err(ChunkProblem::Inconsistent(format!(
                    "entry {entry}: {} byte(s) left in a {codec} sub-entry after its {count} record(s)",
                    inner.remaining()
                )));
            }
        }
    }
    if c.remaining() != 0 {
        return Err(ChunkProblem::Inconsistent(format!(
            "{} byte(s) of data left after the {} entries the header announces",
            c.remaining(),
            header.entries
        )));
    }
    if records.len() as u64 != u64::from(header.records) {
        return Err(ChunkProblem::Inconsistent(format!(
            "the header announces {} record(s), the {} entries hold {}",
            header.records,
            header.entries,
            records.len()
        )));
    }
    Ok(records)
}

fn decode_record(offset: u64, body: &[u8]) -> Result<Record, ChunkProblem> {
    // The AMQP decoder of rabbitmq-stream-protocol 0.11 can panic on some malformed input
    // (e.g. an odd map count underflows): contain it and report the record.
    let decoded = crate::contain::contain(|| Message::decode(body));
    match decoded {
        Ok(Ok((_, message))) => Ok(Record { offset, message }),
        Ok(Err(e)) => Err(ChunkProblem::BadMessage {
            offset,
            detail: format!("{e:?}"),
        }),
        Err(_) => Err(ChunkProblem::BadMessage {
            offset,
            detail: "the AMQP decoder panicked".to_owned(),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests;
