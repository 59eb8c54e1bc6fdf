//! Helpers for the workspace's integration tests (feature `testing`): a real broker or a loud
//! failure, uniquely named streams deleted on drop, publishing and reading with the raw client as
//! an independent oracle, running our binaries with a deadline, and a proxy that counts the offset
//! stores that cross the wire.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use rabbitmq_stream_client::{Client, Environment};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::config::BrokerSettings;
use crate::connection;

/// The broker the tests use: the defaults (localhost:5552, guest/guest).
pub fn broker() -> BrokerSettings {
    BrokerSettings::default()
}

/// Connects to the test broker or panics with how to start one: tests never skip silently.
pub async fn require_broker() -> Environment {
    let broker = broker();
    match connection::environment(&broker, "test").await {
        Ok(env) => env,
        Err(err) => panic!(
            "these tests need a RabbitMQ stream broker at {}: {err}\n\
             start one with `scripts/broker.sh up` (or run everything with `scripts/test.sh`)",
            broker.endpoint()
        ),
    }
}

/// A raw client on its own connection.
pub async fn raw_client() -> Client {
    require_broker().await;
    connection::client(&broker(), "test").await.unwrap()
}

/// The port of the local broker's TLS stream listener (`scripts/broker.sh up` sets it up).
pub const TLS_PORT: u16 = 5551;

/// The root `scripts/broker.sh` runs the local broker from (`BROKER_ROOT`, as for the script).
pub fn broker_root() -> std::path::PathBuf {
    std::env::var_os("BROKER_ROOT")
        .map(Into::into)
        .unwrap_or_else(|| "/var/lib/offset-tracking/broker-root".into())
}

/// The throw-away TLS files `scripts/broker.sh up` made for the local broker's TLS listener.
pub struct BrokerTls {
    /// The CA that signed the broker's certificate (and the client's).
    pub ca_file: std::path::PathBuf,
    /// A client certificate the broker accepts.
    pub client_cert_file: std::path::PathBuf,
    /// Its key, in PKCS#8.
    pub client_key_file: std::path::PathBuf,
}

/// The local broker's TLS files, or a panic saying how to get them: tests never skip silently.
pub fn broker_tls() -> BrokerTls {
    let dir = broker_root().join("etc/rabbitmq/tls");
    let tls = BrokerTls {
        ca_file: dir.join("ca.pem"),
        client_cert_file: dir.join("client.pem"),
        client_key_file: dir.join("client-key.pem"),
    };
    for file in [&tls.ca_file, &tls.client_cert_file, &tls.client_key_file] {
        assert!(
            file.is_file(),
            "TLS tests need the local broker's TLS listener and its throw-away CA, but {} is \
             missing: run `scripts/broker.sh up` (it adds them; `scripts/broker.sh status` says \
             where they are)",
            file.display()
        );
    }
    tls
}

/// The test broker's TLS stream listener (localhost:5551), trusting the local broker's CA.
pub fn tls_broker() -> BrokerSettings {
    BrokerSettings {
        port: TLS_PORT,
        tls: Some(crate::config::TlsSettings {
            ca_file: Some(broker_tls().ca_file),
            ..Default::default()
        }),
        ..BrokerSettings::default()
    }
}

/// The binary of another package of the workspace (e.g. the producer, from the consumer's tests),
/// built now with the same profile as `next_to` (an `env!("CARGO_BIN_EXE_…")` of the caller), so
/// it is never missing or stale. Cargo releases its build lock while tests run.
pub fn workspace_binary(next_to: &str, package: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(next_to).with_file_name(package);
    let profile = match path.parent().and_then(|dir| dir.file_name()) {
        Some(dir) if dir == "debug" => "dev".to_owned(),
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => "dev".to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "--package",
            package,
        ])
        .args(["--bin", package]);
    let out = run_with_deadline(&mut build, Duration::from_secs(600));
    assert!(
        out.status.success() && path.is_file(),
        "could not build {package} ({}): {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A freshly made, self-signed CA certificate that signed nothing the broker has, written to
/// `dir`: made with the host's `openssl`, or the broker root's when the host has none.
pub fn unrelated_ca(dir: &std::path::Path) -> std::path::PathBuf {
    let args = [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "/dev/null",
        "-subj",
        "/CN=unrelated test CA",
        "-days",
        "1",
    ];
    let out = match Command::new("openssl").args(args).output() {
        Ok(out) => out,
        Err(_) => Command::new("chroot")
            .arg(broker_root())
            .arg("openssl")
            .args(args)
            .output()
            .unwrap(),
    };
    assert!(
        out.status.success() && out.stdout.starts_with(b"-----BEGIN CERTIFICATE-----"),
        "openssl could not make a CA: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join("unrelated-ca.pem");
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// Stops the local broker and starts it again with `scripts/broker.sh restart`; every connection
/// to it is cut. Panics if the broker is not the local one that script runs.
pub fn restart_broker() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/broker.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg("restart")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`scripts/broker.sh restart` failed (failure tests need the local broker it runs): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The wave the producer publishes: `hello0` … `marker{n-1}`.
pub fn wave_bodies(count: u64) -> impl Iterator<Item = Vec<u8>> {
    (0..count).map(move |i| {
        if i + 1 == count {
            format!("marker{i}").into_bytes()
        } else {
            format!("hello{i}").into_bytes()
        }
    })
}

/// A stream created for one test and deleted when it is dropped, even if the test panics.
pub struct TestStream {
    pub name: String,
    env: Environment,
}

impl TestStream {
    pub async fn new(prefix: &str) -> Self {
        let env = require_broker().await;
        let name = unique(prefix);
        env.stream_creator().create(&name).await.unwrap();
        Self { name, env }
    }

    /// Publishes `bodies` with the raw client and waits until every one is confirmed.
    pub async fn publish(&self, bodies: impl IntoIterator<Item = Vec<u8>>) -> u64 {
        publish_raw(&self.env, &self.name, bodies.into_iter().map(Some)).await
    }

    /// Publishes messages that may have no body (`None`).
    pub async fn publish_maybe_empty(
        &self,
        bodies: impl IntoIterator<Item = Option<Vec<u8>>>,
    ) -> u64 {
        publish_raw(&self.env, &self.name, bodies.into_iter()).await
    }

    /// Publishes the producer's wave of `count` with the raw client.
    pub async fn publish_wave(&self, count: u64) -> u64 {
        self.publish(wave_bodies(count)).await
    }

    /// Every message now in the stream, as (offset, body), read with the raw client from the start
    /// until nothing more arrives for a second.
    pub async fn read_all(&self) -> Vec<(u64, Vec<u8>)> {
        read_stream(&self.env, &self.name, Duration::from_secs(1)).await
    }

    /// The offsets of every message now in the stream, in order.
    pub async fn offsets(&self) -> Vec<u64> {
        self.read_all().await.into_iter().map(|(o, _)| o).collect()
    }

    /// The offset stored for `consumer`, if any.
    pub async fn stored_offset(&self, consumer: &str) -> Option<u64> {
        let client = raw_client().await;
        let stored = connection::stored_offset(&client, consumer, &self.name)
            .await
            .unwrap();
        let _ = client.close().await;
        stored
    }

    /// Stores `offset` for `consumer`, as an earlier run would have.
    pub async fn store_offset(&self, consumer: &str, offset: u64) {
        let client = raw_client().await;
        client
            .store_offset(consumer, &self.name, offset)
            .await
            .unwrap();
        // The store has no reply: a query on the same connection is answered after it.
        let stored = connection::stored_offset(&client, consumer, &self.name)
            .await
            .unwrap();
        assert_eq!(stored, Some(offset));
        let _ = client.close().await;
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (env, name) = (self.env.clone(), self.name.clone());
        block_on_own_thread(async move {
            let _ = tokio::time::timeout(Duration::from_secs(10), env.delete_stream(&name)).await;
        });
    }
}

/// Runs `work` to completion on a thread with a runtime of its own: `Drop` cannot await.
fn block_on_own_thread(work: impl std::future::Future<Output = ()> + Send + 'static) {
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work);
    })
    .join();
}

/// Every message of `stream` as (offset, body), read with the raw client from the start until
/// nothing more arrives for `quiet`.
async fn read_stream(env: &Environment, stream: &str, quiet: Duration) -> Vec<(u64, Vec<u8>)> {
    let mut consumer = env
        .consumer()
        .offset(OffsetSpecification::First)
        .build(stream)
        .await
        .unwrap();
    let mut out = vec![];
    while let Ok(Some(delivery)) = tokio::time::timeout(quiet, consumer.next()).await {
        let d = delivery.unwrap();
        out.push((d.offset(), d.message().data().unwrap_or_default().to_vec()));
    }
    let _ = consumer.handle().close().await;
    out
}

async fn publish_raw(
    env: &Environment,
    stream: &str,
    bodies: impl Iterator<Item = Option<Vec<u8>>>,
) -> u64 {
    let producer = env.producer().build(stream).await.unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let confirmed = Arc::new(AtomicU64::new(0));
    for body in bodies {
        let message = match body {
            Some(body) => Message::builder().body(body).build(),
            None => Message::builder().build(),
        };
        sent.fetch_add(1, Ordering::Relaxed);
        let confirmed = confirmed.clone();
        producer
            .send(message, move |status| {
                let confirmed = confirmed.clone();
                async move {
                    assert!(
                        status.unwrap().confirmed(),
                        "the broker rejected a test message"
                    );
                    confirmed.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed.load(Ordering::Relaxed) < sent.load(Ordering::Relaxed) {
        assert!(
            Instant::now() < deadline,
            "test messages were not confirmed in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    producer.close().await.unwrap();
    sent.load(Ordering::Relaxed)
}

/// One of our binaries, with no `OFFSET_TRACKING__…` variable inherited from the caller's shell
/// and no config file (the working directory is the temp dir), so only what the test sets applies.
pub fn our_binary(path: &str) -> Command {
    let mut cmd = Command::new(path);
    for (key, _) in std::env::vars() {
        if key.starts_with(crate::config::ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(std::env::temp_dir())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Our consumer binary (`bin`) as the named consumer `name` of `stream`.
pub fn named_consumer(bin: &str, stream: &str, name: &str) -> Command {
    let mut cmd = our_binary(bin);
    cmd.env("OFFSET_TRACKING__STREAM__NAME", stream)
        .env("OFFSET_TRACKING__CONSUMER__NAME", name);
    cmd
}

/// What a process printed on stdout.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fails the test, showing both outputs, unless the process exited 0.
pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        stdout_of(out),
        stderr_of(out)
    );
}

/// What a process printed on stderr.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What [`kill_loop`] saw.
pub struct KillLoop {
    /// Every run's output, in order; the last one ran to completion.
    pub runs: Vec<Output>,
    /// How many runs a SIGKILL ended.
    pub kills: usize,
}

/// Runs `make()` again and again: each of the first `kills` runs gets a SIGKILL at a random moment
/// within `window` after it prints `Started consuming`; then one run goes to completion (within
/// `limit`). A run that ends by itself before its kill lands ends the loop early.
pub fn kill_loop(
    mut make: impl FnMut() -> Command,
    kills: usize,
    window: Duration,
    limit: Duration,
) -> KillLoop {
    let mut random = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let mut result = KillLoop {
        runs: vec![],
        kills: 0,
    };
    while result.kills < kills {
        let mut running = Running::spawn(&mut make());
        running.wait_for_line("Started consuming", limit);
        // A small linear congruential generator: no dependency for a random pause.
        random = random
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pause = (random >> 33) % (window.as_millis().max(1) as u64);
        std::thread::sleep(Duration::from_millis(pause));
        // The process may have ended by itself already: then the kill fails, and that is fine.
        let _ = Command::new("kill")
            .arg("-KILL")
            .arg(running.child.id().to_string())
            .status();
        let out = running.finish(limit);
        let killed = std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9);
        result.runs.push(out);
        if !killed {
            return result;
        }
        result.kills += 1;
    }
    result.runs.push(Running::spawn(&mut make()).finish(limit));
    result
}

/// Runs `cmd` to completion, killing it (and failing the test) after `limit`.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    Running::spawn(cmd).finish(limit)
}

/// The `key=value` fields of the `summary:` line a binary printed on stderr.
pub fn summary_field(stderr: &str, key: &str) -> Option<String> {
    let line = stderr.lines().rev().find(|l| l.contains("summary:"))?;
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// A binary running in the background, its stdout and stderr lines collected as they come.
pub struct Running {
    pub child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
    stderr_lines: Arc<std::sync::Mutex<Vec<String>>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
}

impl Running {
    pub fn spawn(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = stderr_lines.clone();
        let stderr = std::thread::spawn(move || {
            use std::io::BufRead;
            let mut buf = vec![];
            let mut reader = std::io::BufReader::new(stderr);
            let mut line = vec![];
            // Bytes, not strings: a line cut short by kill -9 may end mid-character.
            while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                buf.extend_from_slice(&line);
                collected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(String::from_utf8_lossy(&line).trim_end().to_owned());
                line.clear();
            }
            buf
        });
        Self {
            child,
            lines,
            seen: vec![],
            stderr_lines,
            stderr,
        }
    }

    /// Waits for a stderr line containing every one of `texts`; panics after `limit`.
    pub fn wait_for_log(&self, texts: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.find_log(texts) {
                return line;
            }
            if Instant::now() > deadline {
                let seen = self.stderr_lines.lock().unwrap_or_else(|e| e.into_inner());
                panic!(
                    "no stderr line with {texts:?} within {limit:?}; saw:\n{}",
                    seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The first stderr line so far containing every one of `texts`.
    pub fn find_log(&self, texts: &[&str]) -> Option<String> {
        self.logs(texts).into_iter().next()
    }

    /// Every stderr line so far containing every one of `texts`.
    pub fn logs(&self, texts: &[&str]) -> Vec<String> {
        let seen = self.stderr_lines.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .filter(|line| texts.iter().all(|t| line.contains(t)))
            .cloned()
            .collect()
    }

    /// Waits for a stdout line containing `text`; panics after `limit`.
    pub fn wait_for_line(&mut self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
            return line.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => {
                    let _ = self.child.kill();
                    panic!(
                        "no stdout line with {text:?} within {limit:?}; saw {:?}",
                        self.seen
                    );
                }
            }
        }
    }

    /// Sends `signal` (e.g. "TERM", "KILL") to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit (killing it after `limit`); returns its output.
    pub fn finish(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = String::from_utf8_lossy(&self.stderr.join().unwrap()).into_owned();
                panic!("the process did not exit within {limit:?}; stderr:\n{stderr}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
        let stdout: String = self.seen.iter().map(|line| format!("{line}\n")).collect();
        Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: self.stderr.join().unwrap(),
        }
    }
}

/// A TCP proxy in front of the broker that counts the StoreOffset commands clients send through it.
pub struct StoreCountingProxy {
    pub port: u16,
    stores: Arc<AtomicU64>,
}

/// The stream protocol's StoreOffset command key.
const COMMAND_STORE_OFFSET: u16 = 10;

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
                                    && u16::from_be_bytes([frame[4], frame[5]]) & 0x7fff
                                        == COMMAND_STORE_OFFSET
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

/// The stream ports of the 3-node cluster `scripts/cluster.sh` runs (node N on 556N).
pub const CLUSTER_PORTS: [u16; 3] = [5561, 5562, 5563];

/// The cluster as our programs reach it: every node, starting with node `first` (1, 2 or 3).
pub fn cluster_hosts(first: u8) -> String {
    let first = usize::from(first.clamp(1, 3)) - 1;
    (0..3)
        .map(|i| format!("localhost:{}", CLUSTER_PORTS[(first + i) % 3]))
        .collect::<Vec<_>>()
        .join(",")
}

/// The cluster's settings, for the tests' own connections.
pub fn cluster_broker() -> BrokerSettings {
    BrokerSettings {
        hosts: cluster_hosts(1).split(',').map(str::to_owned).collect(),
        ..BrokerSettings::default()
    }
}

/// Connects to the cluster or panics with how to start it: tests never skip silently.
pub async fn require_cluster() -> Environment {
    for port in CLUSTER_PORTS {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            "these tests need the local 3-node cluster, but nothing answers on localhost:{port}: \
             start it with `scripts/cluster.sh up` (or run everything with `scripts/test.sh`)"
        );
    }
    connection::environment(&cluster_broker(), "test")
        .await
        .unwrap()
}

/// Runs `scripts/cluster.sh ARGS`; panics with its output if it fails.
pub fn cluster_script(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/cluster.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`scripts/cluster.sh {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Serialises the tests that stop cluster nodes (each test binary runs its tests on threads).
pub async fn cluster_lock() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// The node (1, 2 or 3) leading `stream` now, as the running node `ask` sees it.
pub fn stream_leader(stream: &str, ask: u8) -> Option<u8> {
    let out = cluster_script(&[
        "ctl",
        &ask.to_string(),
        "-q",
        "list_queues",
        "name",
        "leader",
    ]);
    out.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next() == Some(stream))
            .then(|| fields.next())
            .flatten()
            .and_then(|leader| leader.strip_prefix('c'))
            .and_then(|n| n.split('@').next())
            .and_then(|n| n.parse().ok())
    })
}

/// A stream (plain or super) named for one test, created by our programs (not by the test),
/// deleted when dropped even if the test panics.
pub struct OwnedStream {
    pub name: String,
    pub partitions: u32,
    broker: BrokerSettings,
    env: Environment,
}

impl OwnedStream {
    /// On the 3-node cluster.
    pub async fn on_cluster(prefix: &str, partitions: u32) -> Self {
        Self {
            name: unique(prefix),
            partitions,
            broker: cluster_broker(),
            env: require_cluster().await,
        }
    }

    /// On the single test broker.
    pub async fn on_broker(prefix: &str, partitions: u32) -> Self {
        Self {
            name: unique(prefix),
            partitions,
            broker: broker(),
            env: require_broker().await,
        }
    }

    /// The streams holding messages: the plain stream, or the partitions in order.
    pub fn streams(&self) -> Vec<String> {
        if self.partitions == 0 {
            vec![self.name.clone()]
        } else {
            (0..self.partitions)
                .map(|p| format!("{}-{p}", self.name))
                .collect()
        }
    }

    /// Every message of `stream` as (offset, body), read with the raw client from the start until
    /// nothing more arrives for two seconds (through any node that answers).
    pub async fn read_all(&self, stream: &str) -> Vec<(u64, Vec<u8>)> {
        let env = connection::environment(&self.broker, "test").await.unwrap();
        read_stream(&env, stream, Duration::from_secs(2)).await
    }

    /// The offset stored for `consumer` on `stream`, if any.
    pub async fn stored_offset(&self, consumer: &str, stream: &str) -> Option<u64> {
        let client = connection::client(&self.broker, "test").await.unwrap();
        let stored = connection::stored_offset(&client, consumer, stream)
            .await
            .unwrap();
        let _ = client.close().await;
        stored
    }

    /// Deletes one partition (or the plain stream), as an operator would by mistake.
    pub async fn delete_stream(&self, stream: &str) {
        self.env.delete_stream(stream).await.unwrap();
    }
}

impl Drop for OwnedStream {
    fn drop(&mut self) {
        let (env, name, partitions) = (self.env.clone(), self.name.clone(), self.partitions);
        block_on_own_thread(async move {
            let limit = Duration::from_secs(20);
            if partitions == 0 {
                let _ = tokio::time::timeout(limit, env.delete_stream(&name)).await;
            } else {
                let _ = tokio::time::timeout(limit, env.delete_super_stream(&name)).await;
                // A partition left behind (one the super stream no longer lists).
                for p in 0..partitions {
                    let partition = format!("{name}-{p}");
                    let _ = tokio::time::timeout(limit, env.delete_stream(&partition)).await;
                }
            }
        });
    }
}

/// The offsets a run processed on `stream`, from its per-batch debug lines
/// (`processed stream=… last=… count=…`, with `RUST_LOG=info,consumer::processed=debug`) and the
/// stream's log (the offsets of its messages, in order).
pub fn processed_offsets(
    stderr: &str,
    stream: &str,
    log: &[u64],
) -> std::collections::BTreeSet<u64> {
    let index: std::collections::HashMap<u64, usize> =
        log.iter().enumerate().map(|(i, o)| (*o, i)).collect();
    let field = |line: &str, key: &str| -> Option<String> {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    let mut seen = std::collections::BTreeSet::new();
    for line in stderr.lines().filter(|l| l.contains(" processed ")) {
        if field(line, "stream").as_deref() != Some(stream) {
            continue;
        }
        let (Some(last), Some(count)) = (
            field(line, "last").and_then(|v| v.parse::<u64>().ok()),
            field(line, "count").and_then(|v| v.parse::<usize>().ok()),
        ) else {
            continue; // a line cut short by kill -9
        };
        let end = index[&last];
        seen.extend(&log[end + 1 - count..=end]);
    }
    seen
}
