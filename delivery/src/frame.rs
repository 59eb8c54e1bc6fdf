//! Framing of the stream protocol: reading length-prefixed frames off the socket without trusting
//! their length field, encoding requests with `rabbitmq-stream-protocol`, and sorting what the
//! broker sends into the few kinds the subscription acts on.
//!
//! Request encoders come from `rabbitmq-stream-protocol` 0.11. Its response decoders are used
//! where their fields are public (`Tune`, the SASL mechanisms); what it cannot do for us is done
//! here: it decodes Deliver with the panicking chunk reader (so Deliver frames never reach it), its
//! `MetadataUpdate` and server `Close` types keep their fields private, and the response code of
//! some responses is private too — every correlated response starts with `correlation id u32,
//! code u16`, which this module reads itself.

use std::io;

use bytes::{Buf, Bytes, BytesMut};
use rabbitmq_stream_protocol::codec::{Decoder, Encoder};
use rabbitmq_stream_protocol::{Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Frame keys (the stream protocol's command numbers).
pub(crate) mod key {
    pub const DELIVER: u16 = 8;
    pub const CREDIT: u16 = 9;
    pub const UNSUBSCRIBE: u16 = 12;
    pub const METADATA_UPDATE: u16 = 16;
    pub const TUNE: u16 = 20;
    pub const CLOSE: u16 = 22;
    pub const HEARTBEAT: u16 = 23;
    pub const CONSUMER_UPDATE: u16 = 26;
    /// The bit that marks a response.
    pub const RESPONSE: u16 = 0x8000;
}

/// Largest frame accepted from the broker (512 MiB). Memory only grows with bytes that really
/// arrive, never with what a length field claims.
const MAX_INCOMING_FRAME: usize = 512 << 20;
/// The read buffer's growth step while the frame is still small.
const READ_STEP: usize = 256 << 10;

/// Reads whole frames from a byte stream. Cancel-safe: a frame read half-way when the future is
/// dropped is completed by the next call.
pub(crate) struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            buf: BytesMut::with_capacity(64 << 10),
        }
    }

    /// The next frame without its size prefix (key, version, content); `None` on a clean end of
    /// stream between frames.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 4 {
                let size = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                    as usize;
                if size > MAX_INCOMING_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("the broker announced a frame of {size} bytes"),
                    ));
                }
                if self.buf.len() >= 4 + size {
                    self.buf.advance(4);
                    return Ok(Some(self.buf.split_to(size).freeze()));
                }
                // Grow with what really arrived (at most doubling), never to what the length
                // field claims: allocation stays within twice the bytes received.
                let missing = 4 + size - self.buf.len();
                self.buf.reserve(missing.min(self.buf.len().max(READ_STEP)));
            } else {
                self.buf.reserve(64 << 10);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the socket was closed by the other end (the broker, or a proxy between) in the middle of a frame",
                    ))
                };
            }
        }
    }
}

/// Encodes a request (any command `rabbitmq-stream-protocol` knows) as a whole frame.
pub(crate) fn encode(request: impl Into<Request>) -> io::Result<Vec<u8>> {
    let request: Request = request.into();
    let mut out = Vec::with_capacity(request.encoded_size() as usize + 4);
    request
        .encode(&mut out)
        .map_err(|e| io::Error::other(format!("cannot encode a request: {e:?}")))?;
    Ok(out)
}

/// A frame of `key`, version 1, and `content`, for what `rabbitmq-stream-protocol` has no request
/// type for (the answer to a server-initiated Close).
pub(crate) fn raw_frame(key: u16, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + content.len());
    out.extend_from_slice(&(4 + content.len() as u32).to_be_bytes());
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(content);
    out
}

/// A frame from the broker, sorted.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A chunk for a subscription (the bytes from the chunk's magic byte on).
    Deliver { subscription_id: u8, chunk: Bytes },
    /// A heartbeat.
    Heartbeat,
    /// A stream's topology changed: its subscriptions on this connection are gone.
    MetadataUpdate { code: u16, stream: String },
    /// The broker closes the connection.
    Close {
        correlation_id: u32,
        code: u16,
        reason: String,
    },
    /// Single active consumer: the broker says whether this subscription is active now and waits
    /// for where to start.
    ConsumerUpdate {
        correlation_id: u32,
        subscription_id: u8,
        active: bool,
    },
    /// The broker refused a credit (it only answers credits that fail).
    CreditRefused { code: u16, subscription_id: u8 },
    /// The broker's Tune proposal.
    Tune { frame_max: u32, heartbeat: u32 },
    /// A response to a request of ours.
    Response {
        key: u16,
        correlation_id: u32,
        code: u16,
        frame: Bytes,
    },
    /// Anything else (ignored).
    Other { key: u16 },
}

/// Sorts one frame (as [`FrameReader::next`] returns it).
pub(crate) fn parse(frame: Bytes) -> Result<Incoming, String> {
    let mut r = Reader(&frame[..]);
    let key = r.u16()?;
    let version = r.u16()?;
    Ok(match key {
        key::DELIVER => {
            let subscription_id = r.u8()?;
            // Version 2 adds the committed chunk id before the chunk (only if negotiated).
            let skip = if version >= 2 { 13 } else { 5 };
            if frame.len() < skip {
                return Err("Deliver frame too short".to_owned());
            }
            Incoming::Deliver {
                subscription_id,
                chunk: frame.slice(skip..),
            }
        }
        key::HEARTBEAT => Incoming::Heartbeat,
        key::METADATA_UPDATE => Incoming::MetadataUpdate {
            code: r.u16()?,
            stream: r.string()?,
        },
        key::CLOSE => Incoming::Close {
            correlation_id: r.u32()?,
            code: r.u16()?,
            reason: r.string()?,
        },
        key::CONSUMER_UPDATE => Incoming::ConsumerUpdate {
            correlation_id: r.u32()?,
            subscription_id: r.u8()?,
            active: r.u8()? != 0,
        },
        key::TUNE => {
            let tune = decode_response(&frame).and_then(|response| {
                response
                    .get::<rabbitmq_stream_protocol::commands::tune::TunesCommand>()
                    .ok_or_else(|| "not a Tune".to_owned())
            })?;
            Incoming::Tune {
                frame_max: tune.max_frame_size,
                heartbeat: tune.heartbeat,
            }
        }
        k if k == key::RESPONSE | key::CREDIT => Incoming::CreditRefused {
            code: r.u16()?,
            subscription_id: r.u8()?,
        },
        k if k & key::RESPONSE != 0 => Incoming::Response {
            key: k & !key::RESPONSE,
            correlation_id: r.u32()?,
            code: r.u16()?,
            frame,
        },
        other => Incoming::Other { key: other },
    })
}

/// Decodes a response with `rabbitmq-stream-protocol` (whose decoders can panic on malformed
/// strings: contained here).
pub(crate) fn decode_response(frame: &[u8]) -> Result<Response, String> {
    let mut sized = Vec::with_capacity(frame.len() + 4);
    sized.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    sized.extend_from_slice(frame);
    match crate::contain::contain(|| Response::decode(&sized).map(|(_, r)| r)) {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(format!("undecodable response: {e:?}")),
        Err(_) => Err("undecodable response (the decoder panicked)".to_owned()),
    }
}

/// Big-endian reads over one frame's fields that fail instead of panicking: the frame sorter's
/// and the query connection's parsers share it.
pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl Reader<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "frame too short: {n} byte(s) needed, {} left",
                self.0.len()
            ));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i64(&mut self) -> Result<i64, String> {
        let b = self.take(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Ok(i64::from_be_bytes(raw))
    }

    /// An array length (i32; negative counts as empty), bounded by what is left.
    pub(crate) fn count(&mut self) -> Result<usize, String> {
        let n = usize::try_from(self.u32()? as i32).unwrap_or(0);
        if n > self.0.len() {
            return Err(format!("an array of {n} in {} bytes", self.0.len()));
        }
        Ok(n)
    }

    /// A protocol string: i16 length (-1 for null), UTF-8 bytes (invalid ones replaced).
    pub(crate) fn string(&mut self) -> Result<String, String> {
        let len = self.u16()? as i16;
        let Ok(len) = usize::try_from(len) else {
            return Ok(String::new());
        };
        Ok(String::from_utf8_lossy(self.take(len)?).into_owned())
    }
}

/// A protocol string (i16 length + bytes), for building raw frames.
pub(crate) fn put_string(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_across_partial_reads_and_eof_is_reported() {
        let mut bytes = raw_frame(key::HEARTBEAT, &[]);
        let mut close = Vec::new();
        close.extend_from_slice(&9u32.to_be_bytes());
        close.extend_from_slice(&1u16.to_be_bytes());
        put_string(&mut close, "bye");
        bytes.extend_from_slice(&raw_frame(key::CLOSE, &close));
        let (mut tx, rx) = tokio::io::duplex(3); // tiny pipe: every frame arrives in pieces
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            tx.write_all(&bytes).await.unwrap();
            tx.write_all(&[0, 0, 0, 9, 0]).await.unwrap(); // a frame cut short
        });
        let mut reader = FrameReader::new(rx);
        let f = reader.next().await.unwrap().unwrap();
        assert!(matches!(parse(f).unwrap(), Incoming::Heartbeat));
        let f = reader.next().await.unwrap().unwrap();
        match parse(f).unwrap() {
            Incoming::Close {
                correlation_id,
                code,
                reason,
            } => assert_eq!((correlation_id, code, reason.as_str()), (9, 1, "bye")),
            other => panic!("{other:?}"),
        }
        let err = reader.next().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn an_absurd_frame_size_is_refused_without_allocating_it() {
        let (mut tx, rx) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut tx, &[0xff, 0xff, 0xff, 0xf0])
            .await
            .unwrap();
        let err = FrameReader::new(rx).next().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn short_frames_are_errors_not_panics() {
        for frame in [
            vec![],
            vec![0],
            vec![0, 16, 0, 1, 0],
            vec![0, 16, 0, 1, 0, 6, 0, 9, b'a'],
            vec![0, 22, 0, 1, 0, 0],
            vec![0x80, 7, 0, 1, 0],
            vec![0, 8, 0, 1],
        ] {
            assert!(parse(Bytes::from(frame)).is_err());
        }
    }
}
