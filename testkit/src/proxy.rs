//! A TCP proxy in front of the test broker that counts the offset stores (the stream protocol's
//! StoreOffset commands) clients send through it — what crossed the wire, whatever our code says —
//! and that can be cut and restored, as a proxy or load balancer that dies and comes back: while
//! cut, every connection through it is closed and its port refuses new ones. Point a consumer's
//! `broker.port` at it with `broker.load_balancer_mode = true` to send all of its connections
//! through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::broker::broker;

/// The stream protocol's StoreOffset command key.
const COMMAND_STORE_OFFSET: u16 = 10;

/// A TCP proxy in front of the broker that counts the StoreOffset commands clients send through
/// it, and can be cut ([`StoreCountingProxy::cut`]) and restored ([`StoreCountingProxy::restore`]).
pub struct StoreCountingProxy {
    /// The local port to connect to instead of the broker's.
    pub port: u16,
    stores: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
    /// The current "up" period: `true` while it lasts; set to `false` to end it.
    up: Mutex<Option<watch::Sender<bool>>>,
    /// Receives a word from the accept loop of the current period once its listener is closed.
    closed: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl StoreCountingProxy {
    /// Starts the proxy on a thread and runtime of its own, so that a test blocked waiting for a
    /// child process does not stall it.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        // The runtime lives on its own thread for the rest of the test process: dropping it from
        // a test's async context would panic.
        std::thread::spawn(move || runtime.block_on(std::future::pending::<()>()));
        let proxy = Self {
            port,
            stores: Arc::new(AtomicU64::new(0)),
            runtime: handle,
            up: Mutex::new(None),
            closed: Mutex::new(None),
        };
        proxy.serve(std_listener);
        proxy
    }

    /// StoreOffset commands seen so far.
    pub fn stores(&self) -> u64 {
        self.stores.load(Ordering::Relaxed)
    }

    /// Cuts the proxy, as if its process died: every connection through it is closed, and its
    /// port refuses connections until [`StoreCountingProxy::restore`]. Returns once the port is
    /// closed.
    pub fn cut(&self) {
        if let Some(up) = self.up.lock().unwrap().take() {
            up.send_replace(false);
        }
        if let Some(closed) = self.closed.lock().unwrap().take() {
            closed
                .recv_timeout(Duration::from_secs(10))
                .expect("the proxy's listener did not close");
        }
    }

    /// Brings a cut proxy back on the same port.
    pub fn restore(&self) {
        assert!(self.up.lock().unwrap().is_none(), "the proxy is not cut");
        // std sets SO_REUSEADDR: the port is free again at once.
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port))
            .unwrap_or_else(|err| panic!("cannot listen on port {} again: {err}", self.port));
        self.serve(listener);
    }

    /// Accepts on `std_listener` and relays each connection until the proxy is cut.
    fn serve(&self, std_listener: std::net::TcpListener) {
        std_listener.set_nonblocking(true).unwrap();
        let (up, mut period) = watch::channel(true);
        let (closed_tx, closed_rx) = std::sync::mpsc::channel();
        *self.up.lock().unwrap() = Some(up);
        *self.closed.lock().unwrap() = Some(closed_rx);
        let counter = self.stores.clone();
        let upstream = broker().endpoint();
        self.runtime.spawn(async move {
            let listener = TcpListener::from_std(std_listener).unwrap();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = period.wait_for(|up| !*up) => break,
                };
                let Ok((client, _)) = accepted else { break };
                let counter = counter.clone();
                let upstream = upstream.clone();
                let mut period = period.clone();
                tokio::spawn(async move {
                    let relayed = async {
                        if let Ok(server) = TcpStream::connect(&upstream).await {
                            relay(client, server, counter).await;
                        }
                    };
                    // Cut: the sockets drop with the relay, closing both sides.
                    tokio::select! {
                        () = relayed => {}
                        _ = period.wait_for(|up| !*up) => {}
                    }
                });
            }
            drop(listener);
            let _ = closed_tx.send(());
        });
    }
}

/// Relays one client connection to the broker and back, counting the client's StoreOffset frames.
async fn relay(client: TcpStream, server: TcpStream, counter: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_server = async move {
        // Frames: u32 length, then u16 command key, u16 version, payload.
        loop {
            let mut len = [0u8; 4];
            if client_read.read_exact(&mut len).await.is_err() {
                break;
            }
            // Forward the frame in one write, length prefix included.
            let size = u32::from_be_bytes(len) as usize;
            let mut frame = vec![0u8; 4 + size];
            frame[..4].copy_from_slice(&len);
            if client_read.read_exact(&mut frame[4..]).await.is_err() {
                break;
            }
            if size >= 2
                && u16::from_be_bytes([frame[4], frame[5]]) & 0x7fff == COMMAND_STORE_OFFSET
            {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            if server_write.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let to_client = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(to_server, to_client);
}
