//! Python [`rstream`](https://pypi.org/project/rstream/) as an independent peer writing sub-entry
//! batches: another team's producer, in another language, with another implementation of the
//! framing and of gzip.
//!
//! The first use installs a pinned rstream ([`RSTREAM`]) into a virtual environment of its own,
//! `<target dir>/tmp/rstream-venv` (created with `python3 -m venv`, then `pip install`), under a
//! file lock so that test binaries running at once do not race; later runs reuse it. It needs
//! `python3` with its `venv` module and PyPI; on a fresh Debian machine:
//! `apt-get install -y python3 python3-venv`. Anything missing fails the test saying what to
//! install — the peer is never skipped.
//!
//! The script, `testkit/peer/rstream_publish.py`, reads one JSON job from a file (broker, stream,
//! codec, batches of hex-encoded bodies) and publishes each batch with `send_sub_entry`, under a
//! deadline (killed and the test failed after it: never a hang). rstream ships the "none" and
//! "gzip" codecs only ([`RstreamCodec`]).

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use shared::config::BrokerSettings;

/// The rstream release the peer uses (pinned: the tests must not change under us).
pub const RSTREAM: &str = "1.1.1";

/// Most one run of the peer may take: it is killed (and the test fails) after that.
const PEER_DEADLINE: Duration = Duration::from_secs(120);

/// Most making the venv, or installing rstream into it, may take.
const SETUP_DEADLINE: Duration = Duration::from_secs(600);

/// The codecs rstream ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RstreamCodec {
    /// `CompressionType.No`: sub-entries stored uncompressed.
    None,
    /// `CompressionType.Gzip`.
    Gzip,
}

impl RstreamCodec {
    fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
        }
    }
}

/// The publishing script, next to this crate's sources.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peer")
        .join("rstream_publish.py")
}

/// The workspace's target directory: the nearest ancestor of the running test binary that holds
/// cargo's `CACHEDIR.TAG` (so `CARGO_TARGET_DIR` and `build.target-dir` are honoured), else
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|dir| dir.join("CACHEDIR.TAG").is_file())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| crate::workspace_root().join("target"))
}

/// The peer's virtual environment.
pub fn venv_dir() -> PathBuf {
    target_dir().join("tmp").join("rstream-venv")
}

/// Publishes `batches` (each a list of message bodies) to `stream` on the test broker
/// ([`crate::broker::broker`]) with rstream, one sub-entry batch each, compressed with `codec`;
/// returns once the broker confirmed every batch. Panics with the peer's output otherwise.
pub fn publish(stream: &str, codec: RstreamCodec, batches: &[Vec<Vec<u8>>]) {
    publish_to(&crate::broker::broker(), stream, codec, batches);
}

/// [`publish`] to the first node of `broker` (plain TCP).
pub fn publish_to(
    broker: &BrokerSettings,
    stream: &str,
    codec: RstreamCodec,
    batches: &[Vec<Vec<u8>>],
) {
    assert!(
        batches.iter().all(|b| !b.is_empty()),
        "rstream refuses an empty sub-entry batch"
    );
    let node = broker
        .endpoints()
        .into_iter()
        .next()
        .expect("the broker settings name no node");
    let hex_batches: Vec<Vec<String>> = batches
        .iter()
        .map(|batch| batch.iter().map(|body| hex(body)).collect())
        .collect();
    let job = serde_json::json!({
        "host": node.host,
        "port": node.port,
        "username": broker.username,
        "password": broker.password.expose(),
        "virtual_host": broker.virtual_host,
        "stream": stream,
        "codec": codec.name(),
        "batches": hex_batches,
    });
    let python = venv_python();
    // The job goes through a file: the peer runs under a deadline, with its output collected.
    let job_file =
        venv_dir().with_file_name(format!("{}.json", crate::streams::unique("rstream-job")));
    fs::write(&job_file, job.to_string())
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", job_file.display()));
    let mut cmd = Command::new(&python);
    cmd.arg(script()).arg(&job_file).stdin(Stdio::null());
    let output = crate::process::run_with_deadline(&mut cmd, PEER_DEADLINE);
    let _ = fs::remove_file(&job_file);
    assert!(
        output.status.success(),
        "the rstream peer failed to publish {} batch(es) to '{stream}' ({}):\n{}",
        batches.len(),
        output.status,
        text(&output)
    );
}

/// The virtual environment's python, rstream installed in it: made on first use (see the module
/// documentation), once per process and under a file lock across processes.
pub fn venv_python() -> PathBuf {
    static READY: Mutex<bool> = Mutex::new(false);
    let venv = venv_dir();
    let python = venv.join("bin").join("python");
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return python;
    }
    let parent = venv.parent().expect("the venv has a parent directory");
    fs::create_dir_all(parent)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", parent.display()));
    let lock_path = parent.join("rstream-venv.lock");
    let lock = File::create(&lock_path)
        .unwrap_or_else(|err| panic!("cannot create {}: {err}", lock_path.display()));
    lock.lock()
        .unwrap_or_else(|err| panic!("cannot lock {}: {err}", lock_path.display()));
    if !has_rstream(&python) {
        create_venv(&venv);
        install_rstream(&python);
        assert!(
            has_rstream(&python),
            "rstream {RSTREAM} was installed into {} but cannot be imported",
            venv.display()
        );
    }
    drop(lock);
    *ready = true;
    python
}

/// Whether `python` exists and imports rstream at the pinned version.
fn has_rstream(python: &Path) -> bool {
    python.exists()
        && Command::new(python)
            .args([
                "-c",
                &format!(
                    "import importlib.metadata, rstream, sys; \
                     sys.exit(importlib.metadata.version('rstream') != '{RSTREAM}')"
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `python3 -m venv VENV`, from scratch (a half-made or outdated one is removed first).
fn create_venv(venv: &Path) {
    if venv.exists() {
        fs::remove_dir_all(venv)
            .unwrap_or_else(|err| panic!("cannot remove the old {}: {err}", venv.display()));
    }
    match Command::new("python3").arg("--version").output() {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!(
            "the rstream peer needs python3, and there is none on PATH: install it \
             (Debian/Ubuntu: `apt-get install -y python3 python3-venv`) and run the tests again"
        ),
        Err(err) => panic!("cannot run python3: {err}"),
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-m").arg("venv").arg(venv).stdin(Stdio::null());
    let output = crate::process::run_with_deadline(&mut cmd, SETUP_DEADLINE);
    if !output.status.success() {
        let _ = fs::remove_dir_all(venv);
        let said = text(&output);
        let hint = if said.contains("ensurepip") || said.contains("No module named venv") {
            "python3's venv module (or its ensurepip) is missing: install it \
             (Debian/Ubuntu: `apt-get install -y python3-venv`) and run the tests again"
        } else {
            "python3 could not make a virtual environment"
        };
        panic!(
            "`python3 -m venv {}` failed ({}): {hint}\n{said}",
            venv.display(),
            output.status
        );
    }
}

/// `pip install rstream==RSTREAM` into the virtual environment.
fn install_rstream(python: &Path) {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "install", "--quiet"])
        .arg("--disable-pip-version-check")
        .arg(format!("rstream=={RSTREAM}"))
        .stdin(Stdio::null());
    let output = crate::process::run_with_deadline(&mut cmd, SETUP_DEADLINE);
    assert!(
        output.status.success(),
        "`pip install rstream=={RSTREAM}` failed ({}); the rstream peer needs PyPI (or a pip \
         mirror set up through PIP_INDEX_URL):\n{}",
        output.status,
        text(&output)
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
