//! Python `rstream` (PyPI) as an independent peer writing sub-entry batches. It is installed on
//! first use into a virtual environment under the target directory (`CARGO_TARGET_TMPDIR`),
//! pinned, and reused by later runs. rstream ships the "none" and "gzip" codecs only.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The rstream release the tests use.
const RSTREAM: &str = "rstream==1.1.1";

fn venv_python() -> PathBuf {
    static READY: Mutex<bool> = Mutex::new(false);
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rstream-venv");
    let python = venv.join("bin").join("python");
    let mut ready = READY.lock().unwrap_or_else(|e| e.into_inner());
    if *ready {
        return python;
    }
    let installed = python.exists()
        && Command::new(&python)
            .args(["-c", "import rstream"])
            .status()
            .is_ok_and(|s| s.success());
    if !installed {
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect(
                "python3 is needed for the rstream peer (apt-get install python3 python3-venv)",
            );
        assert!(
            status.success(),
            "python3 -m venv {} failed",
            venv.display()
        );
        let status = Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", RSTREAM])
            .status()
            .expect("pip");
        assert!(
            status.success(),
            "pip install {RSTREAM} failed (PyPI reachable?)"
        );
    }
    *ready = true;
    python
}

/// Publishes `batches` sub-entries of `per_batch` messages with rstream and `codec` ("none" or
/// "gzip"); message i has the body `prefix` + i. Returns once all are confirmed.
pub fn publish(stream: &str, codec: &str, batches: usize, per_batch: usize, prefix: &str) {
    let python = venv_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peer/rstream_publish.py");
    let output = Command::new(python)
        .arg(script)
        .args([
            stream,
            codec,
            &batches.to_string(),
            &per_batch.to_string(),
            prefix,
        ])
        .output()
        .expect("run the rstream peer");
    assert!(
        output.status.success(),
        "rstream peer failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
