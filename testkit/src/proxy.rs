//! A TCP proxy in front of the test broker that counts the offset stores (the stream protocol's
//! StoreOffset commands) clients send through it: what crossed the wire, whatever our code says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::broker::broker;

/// The stream protocol's StoreOffset command key.
const COMMAND_STORE_OFFSET: u16 = 10;

/// A TCP proxy in front of the broker that counts the StoreOffset commands clients send through it.
pub struct StoreCountingProxy {
    /// The local port to connect to instead of the broker's.
    pub port: u16,
    stores: Arc<AtomicU64>,
}

impl StoreCountingProxy {
    /// Starts the proxy on a thread and runtime of its own, so that a test blocked waiting for a
    /// child process does not stall it.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let stores = Arc::new(AtomicU64::new(0));
        let counter = stores.clone();
        let upstream = broker().endpoint();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                while let Ok((client, _)) = listener.accept().await {
                    let counter = counter.clone();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        relay(client, server, counter).await;
                    });
                }
            })
        });
        Self { port, stores }
    }

    /// StoreOffset commands seen so far.
    pub fn stores(&self) -> u64 {
        self.stores.load(Ordering::Relaxed)
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
