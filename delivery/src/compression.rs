//! The compression codecs of sub-entry batches, as the other RabbitMQ stream clients write them.
//!
//! A sub-entry's header carries a 3-bit codec code (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd — the
//! same numbering in the Java, Go, .NET and Python clients). The *formats* on the wire are the
//! streaming ones those clients write, not raw blocks:
//!
//! - gzip: the gzip file format (RFC 1952), one member (Java `GZIPOutputStream`, Go
//!   `compress/gzip`, Python `gzip.compress`); several members are accepted too.
//! - snappy: the snappy *framing* format (stream identifier chunk first), as Java's
//!   `SnappyFramedOutputStream` and Go's `snappy.NewBufferedWriter` write it — not raw snappy.
//! - lz4: the LZ4 *frame* format (magic `0x184D2204`), as Java's `LZ4FrameOutputStream` and Go's
//!   `lz4.NewWriter` write it — not raw LZ4 blocks.
//! - zstd: zstd frames (Java's `ZstdOutputStream`, Go's klauspost `zstd.NewWriter`).
//!
//! Decompression never produces more than the sub-entry's declared uncompressed length (a
//! decompression bomb ends as an error, not as memory), and the output buffer grows with what the
//! decoder actually produces rather than being allocated from the length field up front.

use std::fmt;
use std::io::{self, Read};

/// The compression codec of a sub-entry batch (the 3-bit code in its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Code 0: the records are stored as they are.
    None,
    /// Code 1: gzip file format.
    Gzip,
    /// Code 2: snappy framing format.
    Snappy,
    /// Code 3: LZ4 frame format.
    Lz4,
    /// Code 4: zstd frames.
    Zstd,
}

impl Compression {
    /// The codec with this wire code, if there is one.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    /// The codec's wire code (0–4).
    pub fn code(self) -> u8 {
        match self {
            Self::None => 0,
            Self::Gzip => 1,
            Self::Snappy => 2,
            Self::Lz4 => 3,
            Self::Zstd => 4,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "uncompressed",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        })
    }
}

/// What went wrong while decompressing a sub-entry.
#[derive(Debug)]
pub(crate) enum DecompressError {
    /// The codec rejected the data.
    Codec(io::Error),
    /// The data decompresses to more than the declared length.
    Overflow,
}

/// Decompresses `input` with `codec`, producing at most `declared` bytes.
///
/// `Compression::None` is not handled here (its records are read in place).
pub(crate) fn decompress(
    codec: Compression,
    input: &[u8],
    declared: usize,
) -> Result<Vec<u8>, DecompressError> {
    // Start small and let the buffer grow with real output: `declared` is only a claim.
    let mut out = Vec::with_capacity(declared.min(input.len().saturating_mul(4)).min(1 << 20));
    // One byte more than declared: reading it means the data is longer than it says.
    let limit = declared as u64 + 1;
    let read = match codec {
        Compression::None => {
            out.extend_from_slice(input);
            Ok(input.len())
        }
        Compression::Gzip => flate2::read::MultiGzDecoder::new(input)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Snappy => snap::read::FrameDecoder::new(input)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Lz4 => lz4_flex::frame::FrameDecoder::new(input)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Zstd => zstd::stream::read::Decoder::with_buffer(input)
            .and_then(|decoder| decoder.take(limit).read_to_end(&mut out)),
    };
    read.map_err(DecompressError::Codec)?;
    if out.len() > declared {
        return Err(DecompressError::Overflow);
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) use tests::compress as compress_for_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
        match codec {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Snappy => {
                let mut e = snap::write::FrameEncoder::new(Vec::new());
                e.write_all(data).unwrap();
                e.into_inner().unwrap()
            }
            Compression::Lz4 => {
                let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
        }
    }

    const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    #[test]
    fn codes_round_trip() {
        for c in ALL {
            assert_eq!(Compression::from_code(c.code()), Some(c));
        }
        assert_eq!(Compression::from_code(5), None);
        assert_eq!(Compression::from_code(7), None);
    }

    #[test]
    fn round_trip_every_codec() {
        let data: Vec<u8> = (0..100_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for c in ALL {
            let packed = compress(c, &data);
            assert_eq!(decompress(c, &packed, data.len()).unwrap(), data, "{c}");
        }
    }

    #[test]
    fn output_over_the_declared_length_is_refused() {
        let data = vec![7u8; 10_000];
        for c in ALL {
            let packed = compress(c, &data);
            assert!(matches!(
                decompress(c, &packed, 9_999),
                Err(DecompressError::Overflow)
            ));
        }
    }

    #[test]
    fn raw_blocks_are_not_the_wire_format() {
        // Raw snappy and raw lz4 blocks are what a reader must *not* expect: the framed formats
        // start with a stream identifier / frame magic.
        let data = b"hello hello hello hello".to_vec();
        let raw_snappy = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert!(decompress(Compression::Snappy, &raw_snappy, data.len()).is_err());
        let raw_lz4 = lz4_flex::block::compress(&data);
        assert!(decompress(Compression::Lz4, &raw_lz4, data.len()).is_err());
    }

    #[test]
    fn garbage_is_an_error_for_every_codec() {
        let garbage = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8];
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(decompress(c, &garbage, 100).is_err(), "{c}");
        }
    }
}
