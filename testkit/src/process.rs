//! Our binaries (the producer, the consumer) as the tests run them: built and located, started
//! with a clean environment and the JSON summary asked for, run to completion under a deadline or
//! in the background ([`Running`]) with their output collected as it comes, signalled, killed
//! again and again ([`kill_loop`]), and their output read.

use std::ffi::OsStr;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The binary of another package of the workspace (e.g. the producer, from the consumer's tests),
/// built now with the same profile as `next_to` (an `env!("CARGO_BIN_EXE_…")` of the caller), so
/// it is never missing or stale. Cargo releases its build lock while tests run.
pub fn workspace_binary(next_to: &str, package: &str) -> PathBuf {
    let path = Path::new(next_to).with_file_name(package);
    let profile = match path.parent().and_then(|dir| dir.file_name()) {
        Some(dir) if dir == "debug" => "dev".to_owned(),
        Some(dir) => dir.to_string_lossy().into_owned(),
        None => "dev".to_owned(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(crate::workspace_root())
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

/// One of our binaries, with no `OFFSET_TRACKING…` variable inherited from the caller's shell and
/// no config file (the working directory is the temp dir), so only what the test sets applies;
/// asked to end with its JSON summary line (`OFFSET_TRACKING_SUMMARY_JSON=1`, read back with
/// [`crate::summary::summary_of`]).
pub fn our_binary(path: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(path);
    for (key, _) in std::env::vars() {
        if key.starts_with(shared::config::ENV_PREFIX) {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(std::env::temp_dir())
        .env_remove("RUST_LOG")
        .env(shared::summary::JSON_ENV, "1")
        .stdin(Stdio::null());
    cmd
}

/// Our consumer binary (`bin`) as the named consumer `name` of `stream`.
pub fn named_consumer(bin: impl AsRef<OsStr>, stream: &str, name: &str) -> Command {
    let mut cmd = our_binary(bin);
    cmd.env("OFFSET_TRACKING__STREAM__NAME", stream)
        .env("OFFSET_TRACKING__CONSUMER__NAME", name);
    cmd
}

/// Runs `cmd` to completion, killing it (and failing the test) after `limit`.
pub fn run_with_deadline(cmd: &mut Command, limit: Duration) -> Output {
    Running::spawn(cmd).finish(limit)
}

/// What a process printed on stdout.
pub fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What a process printed on stderr.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

/// Sends `signal` (e.g. "TERM", "KILL") to process `pid` with `kill`; whether it was delivered.
fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success()
}

/// A binary running in the background, its stdout and stderr lines collected as they come.
pub struct Running {
    /// The process.
    pub child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr_lines: Arc<Mutex<Vec<String>>>,
    stderr: JoinHandle<Vec<u8>>,
}

impl Running {
    /// Starts `cmd` with its stdout and stderr piped to the collecting threads.
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
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr_lines = Arc::new(Mutex::new(Vec::new()));
        let collected = stderr_lines.clone();
        let stderr = std::thread::spawn(move || {
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

    /// Whether a stdout line so far contains `text` (without waiting).
    pub fn saw_line(&mut self, text: &str) -> bool {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.iter().any(|line| line.contains(text))
    }

    /// Waits for a stdout line containing `text`; kills the process and panics after `limit`.
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

    /// Sends `signal` (e.g. "TERM", "KILL") to the process; panics if it cannot be delivered.
    pub fn signal(&self, signal: &str) {
        assert!(
            send_signal(self.child.id(), signal),
            "kill -{signal} failed"
        );
    }

    /// Waits for the process to exit (killing it and failing the test after `limit`); returns its
    /// output.
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

/// What [`kill_loop`] saw.
pub struct KillLoop {
    /// Every run's output, in order; the last one ran to completion.
    pub runs: Vec<Output>,
    /// How many runs a SIGKILL ended.
    pub kills: usize,
}

/// Runs `make()` again and again: each of the first `kills` runs gets a SIGKILL at a random moment
/// within `window` after it prints `Started consuming`; then one run goes to completion (within
/// `limit`). A run that ends by itself before its kill lands, or that printed `Done consuming`
/// before it, ends the loop early (the caller's count of kills says so).
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
        // A run that has reached the tutorial's marker is left to finish: killed after storing
        // the marker's offset and before exiting, it would leave every later run waiting past
        // the marker for ever. The process may also have ended by itself already: then the kill
        // fails, and that is fine.
        if !running.saw_line("Done consuming") {
            let _ = send_signal(running.child.id(), "KILL");
        }
        let out = running.finish(limit);
        let killed = std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9);
        // The kill may land just after the marker's line was printed and before it was read
        // here: that run reached the marker (and may have stored its offset), so a later run
        // would only wait past it. It ends the loop like a run that ended by itself.
        let reached_marker = String::from_utf8_lossy(&out.stdout).contains("Done consuming");
        result.runs.push(out);
        if !killed || reached_marker {
            return result;
        }
        result.kills += 1;
    }
    result.runs.push(Running::spawn(&mut make()).finish(limit));
    result
}
