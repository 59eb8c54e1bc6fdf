//! What a person sees: on a terminal (a pseudo-terminal driving the real binary against the real
//! broker) a bar with a percentage while a backlog is caught up, then the summary as a table; off
//! a terminal, `progress:` lines that are not repeated while the consumer idles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portable_pty::{native_pty_system, CommandBuilder, PtySize};
use testkit::process::{our_binary, Running};
use testkit::streams::{unique, TestStream};

const LIMIT: Duration = Duration::from_secs(120);

/// Runs the consumer with `args` on a pseudo-terminal (stdout and stderr both on it) until it
/// exits; returns what it wrote and its exit status.
fn on_a_terminal(args: &[String]) -> (String, bool) {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 220,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_consumer"));
    cmd.args(args);
    cmd.cwd(std::env::temp_dir());
    for (key, _) in std::env::vars() {
        if key.starts_with(shared::config::ENV_PREFIX) || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.env("TERM", "xterm-256color");
    let mut child = pair.slave.spawn_command(cmd).unwrap();
    drop(pair.slave);
    let mut reader = pair.master.try_clone_reader().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let collect = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            // Ends with an error (EIO) once the child and the terminal's last writer are gone.
            while let Ok(n @ 1..) = reader.read(&mut buffer) {
                seen.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        })
    };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            panic!(
                "the consumer did not finish within {LIMIT:?}: {}",
                String::from_utf8_lossy(&seen.lock().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(pair.master);
    let _ = collect.join();
    let out = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    (out, status.success())
}

/// `text` without its terminal escape sequences (`ESC [ … letter`), as the screen shows it.
fn without_escapes(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[tokio::test]
async fn on_a_terminal_a_backlog_shows_a_bar_with_a_percentage_and_the_summary_a_table() {
    let stream = TestStream::new("progress-pty").await;
    // Long enough to catch up over more than a second (about 3 s in a debug build).
    let count = 400_000;
    stream.publish_wave(count).await;
    let name = unique("progress-pty");
    let args = vec![
        "--stream".to_owned(),
        stream.name.clone(),
        "--name".to_owned(),
        name,
    ];
    let (raw, success) = tokio::task::spawn_blocking(move || on_a_terminal(&args))
        .await
        .unwrap();
    let screen = without_escapes(&raw);
    assert!(success, "the consumer failed: {screen}");
    assert!(
        raw.contains('\x1b'),
        "no escape codes: not drawn as a bar? {screen}"
    );
    // "███░░░  12% 48,000/400,000 processed, 61,000 msg/s, ETA 6 seconds, …, lag 352,000"
    let bar_line = screen
        .split(['\r', '\n'])
        .find(|line| {
            line.contains("% ")
                && line.contains("/400,000 processed")
                && line.contains("msg/s")
                && line.contains("lag ")
        })
        .unwrap_or_else(|| panic!("no bar with a percentage of 400,000: {screen}"));
    let percent: u64 = bar_line
        .split('%')
        .next()
        .and_then(|before| before.split_whitespace().last())
        .and_then(|p| p.trim_start_matches(['█', '░']).parse().ok())
        .unwrap_or_else(|| panic!("no percentage in {bar_line:?}"));
    assert!(percent < 100, "{bar_line}");
    assert!(
        !bar_line.contains("lag ?"),
        "the lag is known from the first second: {bar_line}"
    );
    // The summary: the machine-readable line as ever, and a table for the person.
    assert!(screen.contains("summary: messages=400000"), "{screen}");
    let header = screen
        .lines()
        .find(|l| l.starts_with("stream") && l.contains("messages") && l.contains("msg/s"))
        .unwrap_or_else(|| panic!("no summary table: {screen}"));
    assert!(header.contains("stored"), "{header}");
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with(&stream.name) && l.contains("400,000")),
        "no row for the stream with its count: {screen}"
    );
}

#[tokio::test]
async fn off_a_terminal_an_idle_consumer_does_not_repeat_its_progress_line() {
    let stream = TestStream::new("progress-idle").await;
    // No marker: the consumer runs until it is stopped.
    stream
        .publish((0..25).map(|i| format!("hello{i}").into_bytes()))
        .await;
    let mut running = Running::spawn(our_binary(env!("CARGO_BIN_EXE_consumer")).args([
        "--stream",
        &stream.name,
        "--name",
        &unique("progress-idle"),
    ]));
    running.wait_for_line("First message received", Duration::from_secs(30));
    // Idle for three of the 5 s periods at which a plain line may be written.
    std::thread::sleep(Duration::from_secs(17));
    running.signal("TERM");
    let out = running.finish(Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let lines: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_once("progress: ").map(|(_, said)| said))
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with("processed 25,")),
        "no progress line: {err}"
    );
    for pair in lines.windows(2) {
        assert_ne!(pair[0], pair[1], "a line repeated while idle: {err}");
    }
    // The first line, and at most one more once the rate fell to 0.
    assert!(lines.len() <= 2, "{} lines while idle: {err}", lines.len());
    assert!(
        !err.contains('\x1b'),
        "escape codes off a terminal: {err:?}"
    );
}
