//! [`SubEntryPublisher`]: a publisher of our own that writes sub-entry batches the way the Java
//! and Go clients frame them (protocol specification, "Publish"; Java
//! `Client.OutboundMessageBatchWriteCallback`), with every codec, and plain entries beside them.
//!
//! A Publish frame is `key 2 | version 1 | publisher id u8 | entry count u32 | entries`. A plain
//! entry is `publishing id u64 | size u32 | AMQP message`; a sub-entry batch is
//! `publishing id u64 | 0x80 | codec << 4 | record count u16 | uncompressed size u32 | size u32 |
//! data`, the data being the (compressed) sequence of `size u32 | AMQP message`. The codecs use
//! the streaming formats those clients write ([`compress`]): gzip file format, snappy framing
//! format, LZ4 frame format, zstd frames. [`SubEntryPublisher::publish_with_code`] writes a
//! batch under any 3-bit code, the unknown ones (5, 6, 7) included, to make chunks no consumer
//! can decode. A Publish frame carries at most [`DEFAULT_ENTRIES_PER_FRAME`] entries (the Java
//! client's default batch size; [`SubEntryPublisher::set_entries_per_frame`]): the broker makes
//! chunks of what arrives together, so this keeps them the size real clients make.
//!
//! Blocking std sockets (call it from `spawn_blocking` in async code), one connection, no
//! recovery: every unexpected frame or refusal is an [`io::Error`] saying what happened.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub use delivery::Compression;
use rabbitmq_stream_protocol::codec::Encoder;
use rabbitmq_stream_protocol::commands::{
    close::CloseRequest, declare_publisher::DeclarePublisherCommand, open::OpenCommand,
    peer_properties::PeerPropertiesCommand, sasl_authenticate::SaslAuthenticateCommand,
    sasl_handshake::SaslHandshakeCommand, tune::TunesCommand,
};
use rabbitmq_stream_protocol::message::Message;
use rabbitmq_stream_protocol::{Request, ResponseCode};
use shared::config::BrokerSettings;

/// Protocol keys this publisher reads or writes.
const PUBLISH: u16 = 2;
const PUBLISH_CONFIRM: u16 = 3;
const PUBLISH_ERROR: u16 = 4;
const TUNE: u16 = 20;
const CLOSE: u16 = 22;
const HEARTBEAT: u16 = 23;

/// The publisher id this connection declares.
const PUBLISHER_ID: u8 = 0;

/// Publishing ids sent but not yet confirmed before the publisher waits for confirms: the
/// broker's confirms must never fill the socket while we write (both sides would block).
const MAX_UNCONFIRMED: usize = 2_000;

/// Entries per Publish frame unless told otherwise: the Java client's default batch size (its
/// `batchSize`, in entries, which with sub-entry batching are sub-entry batches).
pub const DEFAULT_ENTRIES_PER_FRAME: usize = 100;

/// How long any one read from the broker may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Encodes an AMQP 1.0 message whose only section is a data section holding `body` — what every
/// client publishes for a plain byte body.
pub fn amqp(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // Encoding into a Vec cannot fail.
    let _ = Message::builder()
        .body(body.to_vec())
        .build()
        .encode(&mut out);
    out
}

/// Compresses `plain` into the wire format the other clients write for `codec`.
pub fn compress(codec: Compression, plain: &[u8]) -> io::Result<Vec<u8>> {
    Ok(match codec {
        Compression::None => plain.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain)?;
            e.finish()?
        }
        Compression::Snappy => {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(plain)?;
            e.into_inner().map_err(|e| e.into_error())?
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(plain)?;
            e.finish().map_err(io::Error::other)?
        }
        Compression::Zstd => zstd::encode_all(plain, 3)?,
    })
}

/// One entry of a Publish frame, encoded (publishing id first).
struct Entry {
    bytes: Vec<u8>,
}

/// A publisher connection to one stream (publisher id 0, no name: no deduplication).
pub struct SubEntryPublisher {
    socket: TcpStream,
    stream: String,
    frame_max: usize,
    entries_per_frame: usize,
    next_correlation: u32,
    next_publishing_id: u64,
    unconfirmed: usize,
}

impl SubEntryPublisher {
    /// Connects to the local test broker ([`crate::broker::broker`]) and declares a publisher on
    /// `stream`.
    pub fn connect(stream: &str) -> io::Result<Self> {
        Self::connect_to(&crate::broker::broker(), stream)
    }

    /// Connects to the first node of `broker` (plain TCP; TLS is not supported), logs in and
    /// declares a publisher on `stream`.
    pub fn connect_to(broker: &BrokerSettings, stream: &str) -> io::Result<Self> {
        if broker.tls.is_some() {
            return Err(io::Error::other(
                "the sub-entry publisher speaks plain TCP only, and the broker settings ask for TLS",
            ));
        }
        let node = broker
            .endpoints()
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::other("the broker settings name no node"))?;
        let socket = TcpStream::connect((node.host.as_str(), node.port)).map_err(|err| {
            io::Error::new(
                err.kind(),
                format!("sub-entry publisher: cannot connect to {node}: {err}"),
            )
        })?;
        socket.set_nodelay(true)?;
        socket.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut publisher = Self {
            socket,
            stream: stream.to_owned(),
            frame_max: 1 << 20,
            entries_per_frame: DEFAULT_ENTRIES_PER_FRAME,
            next_correlation: 1,
            next_publishing_id: 1,
            unconfirmed: 0,
        };
        let mut properties = HashMap::new();
        properties.insert(
            "connection_name".to_owned(),
            "testkit sub-entry publisher".to_owned(),
        );
        publisher.request("peer properties", |id| {
            PeerPropertiesCommand::new(id, properties).into()
        })?;
        publisher.request("SASL handshake", |id| SaslHandshakeCommand::new(id).into())?;
        let mut credentials = vec![0u8];
        credentials.extend_from_slice(broker.username.as_bytes());
        credentials.push(0);
        credentials.extend_from_slice(broker.password.expose().as_bytes());
        publisher.request("SASL authenticate", |id| {
            SaslAuthenticateCommand::new(id, "PLAIN".to_owned(), credentials).into()
        })?;
        let tune = loop {
            let frame = publisher.read_frame()?;
            if key(&frame) == TUNE {
                break frame;
            }
        };
        let server_frame_max = be_u32(&tune, 4)?;
        if server_frame_max != 0 {
            publisher.frame_max = server_frame_max as usize;
        }
        publisher.send(TunesCommand::new(server_frame_max, 0).into())?;
        let vhost = broker.virtual_host.clone();
        publisher.request("open", |id| OpenCommand::new(id, vhost).into())?;
        let stream = stream.to_owned();
        publisher.request("declare publisher", |id| {
            DeclarePublisherCommand::new(id, PUBLISHER_ID, None, stream).into()
        })?;
        Ok(publisher)
    }

    /// Puts at most `entries` entries (plain messages or sub-entry batches) in one Publish frame
    /// (at least 1; [`DEFAULT_ENTRIES_PER_FRAME`] unless set), within the negotiated frame size
    /// either way. The broker makes a chunk of what it received together, so this bounds the
    /// chunks it writes, as a client's batch size does.
    pub fn set_entries_per_frame(&mut self, entries: usize) {
        self.entries_per_frame = entries.max(1);
    }

    /// Publishes each of `messages` (encoded AMQP messages, see [`amqp`]) as a plain entry and
    /// waits until the broker confirmed every one.
    pub fn publish_plain(&mut self, messages: &[Vec<u8>]) -> io::Result<()> {
        let entries = messages
            .iter()
            .map(|message| {
                let mut bytes = Vec::with_capacity(12 + message.len());
                bytes.extend_from_slice(&self.take_publishing_id().to_be_bytes());
                bytes.extend_from_slice(&len_u32(message.len())?.to_be_bytes());
                bytes.extend_from_slice(message);
                Ok(Entry { bytes })
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.publish_entries(entries)
    }

    /// Publishes `batches` (each a list of encoded AMQP messages, see [`amqp`]) as one sub-entry
    /// batch each, compressed with `codec`, several per Publish frame; waits until the broker
    /// confirmed every one.
    pub fn publish_sub_entries(
        &mut self,
        codec: Compression,
        batches: &[Vec<Vec<u8>>],
    ) -> io::Result<()> {
        let entries = batches
            .iter()
            .map(|batch| {
                let plain = records(batch)?;
                let packed = compress(codec, &plain)?;
                self.batch_entry(codec.code(), batch.len(), plain.len(), &packed)
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.publish_entries(entries)
    }

    /// Publishes `batches` as sub-entry batches whose header carries the 3-bit compression `code`
    /// (0–7) while their data is left uncompressed: with 5, 6 or 7 — codes no client defines —
    /// the broker stores them as they are and every consumer meets a chunk it cannot decode.
    pub fn publish_with_code(&mut self, code: u8, batches: &[Vec<Vec<u8>>]) -> io::Result<()> {
        if code > 7 {
            return Err(io::Error::other(format!(
                "compression code {code} does not fit in 3 bits"
            )));
        }
        let entries = batches
            .iter()
            .map(|batch| {
                let plain = records(batch)?;
                self.batch_entry(code, batch.len(), plain.len(), &plain)
            })
            .collect::<io::Result<Vec<_>>>()?;
        self.publish_entries(entries)
    }

    /// Closes the connection the way the protocol says (Close, then its response).
    pub fn close(mut self) -> io::Result<()> {
        self.request("close", |id| {
            CloseRequest::new(id, ResponseCode::Ok, "done".to_owned()).into()
        })
    }

    fn take_publishing_id(&mut self) -> u64 {
        let id = self.next_publishing_id;
        self.next_publishing_id += 1;
        id
    }

    /// One sub-entry batch entry: header and (already compressed) data.
    fn batch_entry(
        &mut self,
        code: u8,
        count: usize,
        uncompressed: usize,
        data: &[u8],
    ) -> io::Result<Entry> {
        let count = u16::try_from(count).map_err(|_| {
            io::Error::other(format!(
                "a sub-entry batch holds at most 65535 records, not {count}"
            ))
        })?;
        let mut bytes = Vec::with_capacity(19 + data.len());
        bytes.extend_from_slice(&self.take_publishing_id().to_be_bytes());
        bytes.push(0x80 | (code << 4));
        bytes.extend_from_slice(&count.to_be_bytes());
        bytes.extend_from_slice(&len_u32(uncompressed)?.to_be_bytes());
        bytes.extend_from_slice(&len_u32(data.len())?.to_be_bytes());
        bytes.extend_from_slice(data);
        Ok(Entry { bytes })
    }

    /// Sends `entries` in as few Publish frames as `frame_max` and `entries_per_frame` allow,
    /// then waits for every confirm.
    fn publish_entries(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        // size u32 | key u16 | version u16 | publisher id u8 | entry count u32
        const FRAME_OVERHEAD: usize = 4 + 2 + 2 + 1 + 4;
        let limit = self.frame_max.saturating_sub(FRAME_OVERHEAD);
        let mut group: Vec<Entry> = Vec::new();
        let mut group_len = 0;
        for entry in entries {
            if entry.bytes.len() > limit {
                return Err(io::Error::other(format!(
                    "one entry of {} bytes does not fit in a frame of at most {} bytes",
                    entry.bytes.len(),
                    self.frame_max
                )));
            }
            if group_len + entry.bytes.len() > limit || group.len() >= self.entries_per_frame {
                self.send_publish(std::mem::take(&mut group))?;
                group_len = 0;
            }
            group_len += entry.bytes.len();
            group.push(entry);
        }
        if !group.is_empty() {
            self.send_publish(group)?;
        }
        self.await_confirms(0)
    }

    fn send_publish(&mut self, group: Vec<Entry>) -> io::Result<()> {
        let content_len: usize = group.iter().map(|e| e.bytes.len()).sum();
        let mut frame = Vec::with_capacity(13 + content_len);
        frame.extend_from_slice(&len_u32(2 + 2 + 1 + 4 + content_len)?.to_be_bytes());
        frame.extend_from_slice(&PUBLISH.to_be_bytes());
        frame.extend_from_slice(&1u16.to_be_bytes());
        frame.push(PUBLISHER_ID);
        frame.extend_from_slice(&len_u32(group.len())?.to_be_bytes());
        for entry in &group {
            frame.extend_from_slice(&entry.bytes);
        }
        self.socket.write_all(&frame)?;
        self.unconfirmed += group.len();
        if self.unconfirmed > MAX_UNCONFIRMED {
            self.await_confirms(MAX_UNCONFIRMED / 2)?;
        }
        Ok(())
    }

    /// Reads confirms until at most `left` publishing ids are unconfirmed.
    fn await_confirms(&mut self, left: usize) -> io::Result<()> {
        while self.unconfirmed > left {
            let frame = self.read_frame()?;
            match key(&frame) {
                PUBLISH_CONFIRM => {
                    // publisher id u8 | [publishing id u64]
                    let confirmed = be_u32(&frame, 5)? as usize;
                    self.unconfirmed = self.unconfirmed.saturating_sub(confirmed);
                }
                PUBLISH_ERROR => {
                    // publisher id u8 | [publishing id u64 | code u16]
                    let code = frame.get(17..19).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Err(io::Error::other(format!(
                        "the broker refused a publish to stream '{}' (code {code:?})",
                        self.stream
                    )));
                }
                CLOSE => {
                    return Err(io::Error::other(format!(
                        "the broker closed the publisher connection to stream '{}'",
                        self.stream
                    )))
                }
                _ => {} // heartbeats, metadata updates
            }
        }
        Ok(())
    }

    fn send(&mut self, request: Request) -> io::Result<()> {
        let mut out = Vec::new();
        request
            .encode(&mut out)
            .map_err(|err| io::Error::other(format!("cannot encode a request: {err:?}")))?;
        self.socket.write_all(&out)
    }

    /// Sends a request and waits for its response, which must say OK.
    fn request(&mut self, what: &str, build: impl FnOnce(u32) -> Request) -> io::Result<()> {
        let id = self.next_correlation;
        self.next_correlation += 1;
        self.send(build(id))?;
        loop {
            let frame = self.read_frame()?;
            if key(&frame) & 0x8000 == 0 || frame.len() < 10 {
                continue; // not a response (heartbeat, tune, …)
            }
            if be_u32(&frame, 4)? != id {
                continue;
            }
            let code = u16::from_be_bytes([frame[8], frame[9]]);
            if code != 1 {
                return Err(io::Error::other(format!(
                    "sub-entry publisher: the broker refused {what} on stream '{}' with code {code} \
                     ({:?})",
                    self.stream,
                    ResponseCode::try_from(code).ok()
                )));
            }
            return Ok(());
        }
    }

    fn read_frame(&mut self) -> io::Result<Vec<u8>> {
        loop {
            let mut size = [0u8; 4];
            self.socket.read_exact(&mut size)?;
            let size = u32::from_be_bytes(size) as usize;
            if size > self.frame_max.max(1 << 20) {
                return Err(io::Error::other(format!(
                    "the broker sent a frame of {size} bytes"
                )));
            }
            let mut frame = vec![0u8; size];
            self.socket.read_exact(&mut frame)?;
            if frame.len() < 4 {
                return Err(io::Error::other("the broker sent a frame without a key"));
            }
            if key(&frame) == HEARTBEAT {
                continue;
            }
            return Ok(frame);
        }
    }
}

/// `size u32 | message` for each of `messages`: a sub-entry batch's uncompressed data.
fn records(messages: &[Vec<u8>]) -> io::Result<Vec<u8>> {
    let mut plain = Vec::new();
    for message in messages {
        plain.extend_from_slice(&len_u32(message.len())?.to_be_bytes());
        plain.extend_from_slice(message);
    }
    Ok(plain)
}

fn key(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[0], frame[1]])
}

fn be_u32(frame: &[u8], at: usize) -> io::Result<u32> {
    frame
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| io::Error::other("the broker sent a frame too short for its kind"))
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::other(format!("{len} bytes do not fit a u32 length")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_through_its_streaming_format() {
        let plain = records(&[amqp(b"hello0"), amqp(b"marker1")]).unwrap();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = compress(codec, &plain).unwrap();
            let mut back = Vec::new();
            match codec {
                Compression::None => back = packed.clone(),
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&packed[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Snappy => {
                    snap::read::FrameDecoder::new(&packed[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Lz4 => {
                    lz4_flex::frame::FrameDecoder::new(&packed[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => back = zstd::decode_all(&packed[..]).unwrap(),
            }
            assert_eq!(back, plain, "{codec}");
        }
    }
}
