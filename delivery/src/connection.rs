//! One connection to the broker: TCP (with `TCP_NODELAY`) or TLS, then the protocol's handshake —
//! PeerProperties, SASL PLAIN, Tune (frame size and heartbeat negotiation), Open of the virtual
//! host — and request/response exchanges on it while nothing else reads the socket; then, for
//! the task that owns it, its liveness: writes bounded in time, a heartbeat after a quiet
//! interval, the connection declared dead after four silent ones.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rabbitmq_stream_protocol::commands::{
    close::CloseRequest, heart_beat::HeartBeatCommand, open::OpenCommand,
    peer_properties::PeerPropertiesCommand, sasl_authenticate::SaslAuthenticateCommand,
    sasl_handshake::SaslHandshakeCommand, tune::TunesCommand,
};
use rabbitmq_stream_protocol::{Request, ResponseCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::error::DeliveryError;
use crate::frame::{self, FrameReader, Incoming};

/// Where and how to connect.
#[derive(Clone)]
pub struct ConnectOptions {
    /// Broker host name or address (also the TLS server name).
    pub host: String,
    /// Stream protocol port (5552 plain, 5551 TLS by default).
    pub port: u16,
    /// User name (SASL PLAIN).
    pub username: String,
    /// Password (SASL PLAIN). Not shown by `Debug`.
    pub password: String,
    /// Virtual host.
    pub virtual_host: String,
    /// Heartbeat interval proposed to the broker (whole seconds; the smaller of this and the
    /// broker's wins; zero takes the broker's). Four intervals without a frame from the broker
    /// end the subscription with [`DeliveryError::HeartbeatTimeout`].
    pub heartbeat: Duration,
    /// Time allowed for connecting, the handshake and the subscription together.
    pub connect_timeout: Duration,
    /// TLS, when set (rustls 0.23 client configuration; `host` is the server name).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The connection's name, shown in the broker's management UI.
    pub connection_name: Option<String>,
}

impl Default for ConnectOptions {
    /// `localhost:5552`, guest/guest, virtual host `/`, 60 s heartbeat, 10 s to connect, no TLS.
    fn default() -> Self {
        Self {
            host: "localhost".to_owned(),
            port: 5552,
            username: "guest".to_owned(),
            password: "guest".to_owned(),
            virtual_host: "/".to_owned(),
            heartbeat: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            tls: None,
            connection_name: None,
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("virtual_host", &self.virtual_host)
            .field("heartbeat", &self.heartbeat)
            .field("connect_timeout", &self.connect_timeout)
            .field("tls", &self.tls.is_some())
            .field("connection_name", &self.connection_name)
            .finish()
    }
}

impl ConnectOptions {
    pub(crate) fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A socket, plain or TLS.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// An open, authenticated connection.
pub(crate) struct Connection {
    pub(crate) reader: FrameReader<ReadHalf<Box<dyn Io>>>,
    pub(crate) writer: WriteHalf<Box<dyn Io>>,
    /// The negotiated heartbeat (zero: none).
    pub(crate) heartbeat: Duration,
    /// The stream this connection serves (for errors).
    pub(crate) stream: String,
    next_correlation_id: u32,
    /// When a frame last arrived ([`Connection::received`]) and one was last written.
    last_read: Instant,
    last_write: Instant,
}

/// Where the handshake is, for timeout errors.
pub(crate) type Step = &'static str;

impl Connection {
    /// Connects and runs the handshake. `step` is updated as it goes, for timeout errors.
    pub(crate) async fn open(
        options: &ConnectOptions,
        stream: &str,
        step: &mut Step,
    ) -> Result<Self, DeliveryError> {
        let address = options.address();
        *step = "TCP connect";
        let tcp = TcpStream::connect((options.host.as_str(), options.port))
            .await
            .map_err(|source| DeliveryError::Connect {
                stream: stream.to_owned(),
                address: address.clone(),
                source,
            })?;
        // Small frames (credits, heartbeats) must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &options.tls {
            None => Box::new(tcp),
            Some(config) => {
                *step = "TLS handshake";
                let tls_error = |source: io::Error| DeliveryError::Tls {
                    stream: stream.to_owned(),
                    address: address.clone(),
                    source,
                };
                let name = rustls::pki_types::ServerName::try_from(options.host.clone())
                    .map_err(|e| tls_error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(connector.connect(name, tcp).await.map_err(tls_error)?)
            }
        };
        let (read, write) = tokio::io::split(io);
        let mut conn = Connection {
            reader: FrameReader::new(read),
            writer: write,
            heartbeat: Duration::ZERO,
            stream: stream.to_owned(),
            next_correlation_id: 1,
            last_read: Instant::now(),
            last_write: Instant::now(),
        };
        conn.handshake(options, step).await?;
        Ok(conn)
    }

    async fn handshake(
        &mut self,
        options: &ConnectOptions,
        step: &mut Step,
    ) -> Result<(), DeliveryError> {
        *step = "peer properties";
        let mut properties = HashMap::new();
        properties.insert("product".to_owned(), "offset-tracking delivery".to_owned());
        properties.insert("version".to_owned(), env!("CARGO_PKG_VERSION").to_owned());
        properties.insert("platform".to_owned(), "Rust".to_owned());
        properties.insert(
            "connection_name".to_owned(),
            options
                .connection_name
                .clone()
                .unwrap_or_else(|| format!("delivery {}", self.stream)),
        );
        let (code, _) = self
            .request(|id| PeerPropertiesCommand::new(id, properties).into())
            .await?;
        self.check(code, "peer properties")?;

        *step = "SASL handshake";
        let (code, frame) = self
            .request(|id| SaslHandshakeCommand::new(id).into())
            .await?;
        self.check(code, "SASL handshake")?;
        let mechanisms = frame::decode_response(&frame)
            .ok()
            .and_then(|r| {
                r.get::<rabbitmq_stream_protocol::commands::sasl_handshake::SaslHandshakeResponse>()
            })
            .map(|r| r.mechanisms)
            .unwrap_or_default();
        if !mechanisms.iter().any(|m| m == "PLAIN") {
            return Err(DeliveryError::Authentication {
                stream: self.stream.clone(),
                username: options.username.clone(),
                code: ResponseCode::SaslMechanismNotSupported,
            });
        }

        *step = "SASL authenticate";
        let mut plain = Vec::with_capacity(2 + options.username.len() + options.password.len());
        plain.push(0);
        plain.extend_from_slice(options.username.as_bytes());
        plain.push(0);
        plain.extend_from_slice(options.password.as_bytes());
        let (code, _) = self
            .request(|id| SaslAuthenticateCommand::new(id, "PLAIN".to_owned(), plain).into())
            .await?;
        if code != 1 {
            let code = self.code(code)?;
            return Err(DeliveryError::Authentication {
                stream: self.stream.clone(),
                username: options.username.clone(),
                code,
            });
        }

        *step = "tune";
        let (frame_max, server_heartbeat) = loop {
            match self.read_incoming().await? {
                Incoming::Tune {
                    frame_max,
                    heartbeat,
                } => break (frame_max, heartbeat),
                Incoming::Close { code, reason, .. } => {
                    return Err(self.closed_during("tune", code, &reason))
                }
                _ => {}
            }
        };
        let ours = match options.heartbeat.as_secs() {
            0 if options.heartbeat.is_zero() => 0,
            0 => 1,
            s => u32::try_from(s).unwrap_or(u32::MAX),
        };
        let heartbeat = match (ours, server_heartbeat) {
            (0, s) => s,
            (c, 0) => c,
            (c, s) => c.min(s),
        };
        self.send(frame::encode(TunesCommand::new(frame_max, heartbeat)))
            .await?;
        self.heartbeat = Duration::from_secs(u64::from(heartbeat));

        *step = "open virtual host";
        let vhost = options.virtual_host.clone();
        let (code, _) = self
            .request(|id| OpenCommand::new(id, vhost).into())
            .await?;
        self.check(code, "open")?;
        Ok(())
    }

    /// Sends a whole frame.
    pub(crate) async fn send(&mut self, frame: io::Result<Vec<u8>>) -> Result<(), DeliveryError> {
        let frame = frame.map_err(|e| self.protocol(e.to_string()))?;
        send_on(&mut self.writer, &frame)
            .await
            .map_err(|source| self.network(source))
    }

    /// Sends a request made with a fresh correlation id and waits for its response, ignoring
    /// heartbeats and dropping deliveries meanwhile (only used while nothing is consumed).
    /// Returns the response code and the whole response frame.
    pub(crate) async fn request(
        &mut self,
        build: impl FnOnce(u32) -> Request,
    ) -> Result<(u16, Bytes), DeliveryError> {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let request = build(id);
        let request_key = request.header().key();
        self.send(frame::encode(request)).await?;
        loop {
            match self.read_incoming().await? {
                Incoming::Response {
                    key,
                    correlation_id,
                    code,
                    frame,
                } if key == request_key && correlation_id == id => return Ok((code, frame)),
                Incoming::Close { code, reason, .. } => {
                    return Err(self.closed_during("a request", code, &reason))
                }
                _ => {}
            }
        }
    }

    /// A fresh correlation id.
    pub(crate) fn correlation_id(&mut self) -> u32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    /// Reads and sorts the next frame; a closed socket is an error.
    pub(crate) async fn read_incoming(&mut self) -> Result<Incoming, DeliveryError> {
        let frame = self
            .reader
            .next()
            .await
            .map_err(|source| self.network(source))?;
        let frame = frame.ok_or_else(|| {
            self.network(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the socket was closed by the other end (the broker, or a proxy between)",
            ))
        })?;
        frame::parse(frame).map_err(|detail| self.protocol(detail))
    }

    /// `Ok` for code 1, else the matching error.
    pub(crate) fn check(&self, code: u16, operation: &'static str) -> Result<(), DeliveryError> {
        if code == 1 {
            return Ok(());
        }
        Err(DeliveryError::Refused {
            stream: self.stream.clone(),
            operation,
            code: self.code(code)?,
        })
    }

    fn code(&self, code: u16) -> Result<ResponseCode, DeliveryError> {
        ResponseCode::try_from(code)
            .map_err(|_| self.protocol(format!("unknown response code {code}")))
    }

    fn closed_during(&self, what: &str, code: u16, reason: &str) -> DeliveryError {
        self.protocol(format!(
            "the broker closed the connection during {what} (code {code}: {reason})"
        ))
    }

    pub(crate) fn network(&self, source: io::Error) -> DeliveryError {
        DeliveryError::Network {
            stream: self.stream.clone(),
            source,
        }
    }

    pub(crate) fn protocol(&self, detail: String) -> DeliveryError {
        DeliveryError::Protocol {
            stream: self.stream.clone(),
            detail,
        }
    }

    /// How often the owning task checks the connection's liveness ([`Connection::keep_alive`]):
    /// a quarter of the heartbeat, at least 50 ms; hourly without heartbeats.
    pub(crate) fn tick_period(&self) -> Duration {
        if self.heartbeat.is_zero() {
            Duration::from_secs(3600)
        } else {
            (self.heartbeat / 4).max(Duration::from_millis(50))
        }
    }

    /// A frame arrived: the broker is alive.
    pub(crate) fn received(&mut self) {
        self.last_read = Instant::now();
    }

    /// On a tick: fails after four heartbeats without a frame from the broker, and sends a
    /// heartbeat when nothing was written for one.
    pub(crate) async fn keep_alive(&mut self) -> Result<(), DeliveryError> {
        if self.heartbeat.is_zero() {
            return Ok(());
        }
        let silent_for = self.last_read.elapsed();
        if silent_for >= self.heartbeat * 4 {
            return Err(DeliveryError::HeartbeatTimeout {
                stream: self.stream.clone(),
                silent_for,
            });
        }
        if self.last_write.elapsed() >= self.heartbeat {
            self.write(frame::encode(HeartBeatCommand::default()))
                .await?;
        }
        Ok(())
    }

    /// Asks the broker to close the connection (code OK, "closed by the client"); returns the
    /// request's correlation id, whose response the caller may wait for.
    pub(crate) async fn request_close(&mut self) -> Result<u32, DeliveryError> {
        let id = self.correlation_id();
        self.write(frame::encode(CloseRequest::new(
            id,
            ResponseCode::Ok,
            "closed by the client".to_owned(),
        )))
        .await?;
        Ok(id)
    }

    /// Writes a frame, failing if the socket does not take it within four heartbeats (30 s
    /// without heartbeats): a broker that stops reading must not block the owning task for ever.
    pub(crate) async fn write(&mut self, frame: io::Result<Vec<u8>>) -> Result<(), DeliveryError> {
        let frame = frame.map_err(|e| self.protocol(e.to_string()))?;
        let limit = if self.heartbeat.is_zero() {
            Duration::from_secs(30)
        } else {
            self.heartbeat * 4
        };
        match tokio::time::timeout(limit, send_on(&mut self.writer, &frame)).await {
            Ok(Ok(())) => {
                self.last_write = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(self.network(e)),
            Err(_) => Err(self.network(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the socket took no data for {limit:?}"),
            ))),
        }
    }
}

/// Writes and flushes one frame (TLS needs the flush).
pub(crate) async fn send_on(writer: &mut WriteHalf<Box<dyn Io>>, frame: &[u8]) -> io::Result<()> {
    writer.write_all(frame).await?;
    writer.flush().await
}
