//! A publisher of our own that writes sub-entry batches the way the Java and Go clients frame
//! them (protocol spec, "Publish"; Java `Client.OutboundMessageBatchWriteCallback`): per batch a
//! publishing id, then `0x80 | codec << 4`, record count u16, uncompressed size u32, size u32 and
//! the (compressed) `size u32 | AMQP message` sequence. The codecs use the streaming formats those
//! clients write: gzip file format, snappy framing format, LZ4 frame format, zstd frames.
//!
//! Test code only: blocking std sockets, no recovery, panics on anything unexpected.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;

use delivery::Compression;
use rabbitmq_stream_protocol::codec::Encoder;
use rabbitmq_stream_protocol::commands::{
    declare_publisher::DeclarePublisherCommand, open::OpenCommand,
    peer_properties::PeerPropertiesCommand, sasl_authenticate::SaslAuthenticateCommand,
    sasl_handshake::SaslHandshakeCommand, tune::TunesCommand,
};
use rabbitmq_stream_protocol::message::Message;
use rabbitmq_stream_protocol::Request;

pub struct RawPublisher {
    socket: TcpStream,
    next_correlation: u32,
    next_publishing_id: u64,
}

fn read_frame(socket: &mut TcpStream) -> Vec<u8> {
    let mut size = [0u8; 4];
    socket.read_exact(&mut size).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(size) as usize];
    socket.read_exact(&mut frame).unwrap();
    frame
}

fn key(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[0], frame[1]])
}

/// Encodes an AMQP 1.0 message whose data section is `body`.
pub fn amqp(body: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Message::builder()
        .body(body.as_bytes().to_vec())
        .build()
        .encode(&mut out)
        .unwrap();
    out
}

/// Compresses `plain` the way the other clients do for `codec`.
pub fn compress(codec: Compression, plain: &[u8]) -> Vec<u8> {
    match codec {
        Compression::None => plain.to_vec(),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        Compression::Snappy => {
            let mut e = snap::write::FrameEncoder::new(Vec::new());
            e.write_all(plain).unwrap();
            e.into_inner().unwrap()
        }
        Compression::Lz4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(plain).unwrap();
            e.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(plain, 3).unwrap(),
    }
}

impl RawPublisher {
    /// Connects to localhost:5552 as guest and declares publisher 0 on `stream`.
    pub fn connect(stream: &str) -> Self {
        let socket = TcpStream::connect((super::HOST, super::PORT)).unwrap();
        socket.set_nodelay(true).unwrap();
        let mut p = Self {
            socket,
            next_correlation: 1,
            next_publishing_id: 1,
        };
        let mut props = HashMap::new();
        props.insert(
            "connection_name".to_owned(),
            "delivery test raw publisher".to_owned(),
        );
        p.request(|id| PeerPropertiesCommand::new(id, props).into());
        p.request(|id| SaslHandshakeCommand::new(id).into());
        p.request(|id| {
            SaslAuthenticateCommand::new(id, "PLAIN".to_owned(), b"\0guest\0guest".to_vec()).into()
        });
        let tune = loop {
            let frame = read_frame(&mut p.socket);
            if key(&frame) == 20 {
                break frame;
            }
        };
        let frame_max = u32::from_be_bytes(tune[4..8].try_into().unwrap());
        p.send(TunesCommand::new(frame_max, 0).into());
        p.request(|id| OpenCommand::new(id, "/".to_owned()).into());
        let stream = stream.to_owned();
        p.request(|id| DeclarePublisherCommand::new(id, 0, None, stream).into());
        p
    }

    fn send(&mut self, request: Request) {
        let mut out = Vec::new();
        request.encode(&mut out).unwrap();
        self.socket.write_all(&out).unwrap();
    }

    /// Sends a request and checks its response code is OK.
    fn request(&mut self, build: impl FnOnce(u32) -> Request) {
        let id = self.next_correlation;
        self.next_correlation += 1;
        self.send(build(id));
        loop {
            let frame = read_frame(&mut self.socket);
            if key(&frame) & 0x8000 != 0 && frame.len() >= 10 {
                let corr = u32::from_be_bytes(frame[4..8].try_into().unwrap());
                if corr == id {
                    let code = u16::from_be_bytes([frame[8], frame[9]]);
                    assert_eq!(
                        code,
                        1,
                        "request {:#06x} refused with code {code}",
                        key(&frame)
                    );
                    return;
                }
            }
        }
    }

    /// Publishes `batches` (each a list of encoded AMQP messages) as sub-entries with `codec`,
    /// several per Publish frame, and waits until every one is confirmed.
    pub fn publish_sub_entries(&mut self, codec: Compression, batches: &[Vec<Vec<u8>>]) {
        let mut pending = 0usize;
        for group in batches.chunks(50) {
            let mut content = Vec::new();
            content.push(0u8); // publisher id
            content.extend_from_slice(&(group.len() as u32).to_be_bytes());
            for batch in group {
                let mut plain = Vec::new();
                for message in batch {
                    plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
                    plain.extend_from_slice(message);
                }
                let packed = compress(codec, &plain);
                content.extend_from_slice(&self.next_publishing_id.to_be_bytes());
                self.next_publishing_id += 1;
                content.push(0x80 | (codec.code() << 4));
                content.extend_from_slice(&(batch.len() as u16).to_be_bytes());
                content.extend_from_slice(&(plain.len() as u32).to_be_bytes());
                content.extend_from_slice(&(packed.len() as u32).to_be_bytes());
                content.extend_from_slice(&packed);
            }
            let mut frame = Vec::new();
            frame.extend_from_slice(&(4 + content.len() as u32).to_be_bytes());
            frame.extend_from_slice(&2u16.to_be_bytes()); // Publish
            frame.extend_from_slice(&1u16.to_be_bytes());
            frame.extend_from_slice(&content);
            self.socket.write_all(&frame).unwrap();
            pending += group.len();
        }
        while pending > 0 {
            let frame = read_frame(&mut self.socket);
            match key(&frame) {
                3 => {
                    // PublishConfirm: publisher id, [publishing id]
                    let n = u32::from_be_bytes(frame[5..9].try_into().unwrap()) as usize;
                    pending -= n;
                }
                4 => panic!("publish error: {frame:?}"),
                _ => {}
            }
        }
    }
}
