//! A TCP proxy in front of the test broker that counts the connections clients open through it:
//! what a process really opened, whatever else talks to the broker meanwhile. Point a consumer's
//! `broker.port` at it with `broker.load_balancer_mode = true` (then every connection it opens —
//! queries, subscriptions, stores — goes to the configured node, so through the proxy).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

use crate::broker::broker;

/// See the module documentation.
pub struct ConnectionCountingProxy {
    /// The local port to connect to instead of the broker's.
    pub port: u16,
    accepted: Arc<AtomicU64>,
}

impl ConnectionCountingProxy {
    /// Starts the proxy on a thread and runtime of its own, so that a test blocked waiting for a
    /// child process does not stall it.
    pub fn start() -> Self {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        let upstream = broker().endpoint();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                while let Ok((mut client, _)) = listener.accept().await {
                    counter.fetch_add(1, Ordering::Relaxed);
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    });
                }
            })
        });
        Self { port, accepted }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}
