//! How a binary runs: an actix system on a multi-threaded tokio runtime (the client's socket tasks
//! run on the worker threads, the actors on the main thread), a shutdown signal, and one mapping
//! from the result to the process exit code; [`stdout`], output that ends the run quietly when
//! its reader leaves.

pub mod stdout;

use std::future::Future;
use std::process::ExitCode;

use crate::error::{Error, Result};

/// Runs `main` to completion on a fresh actix system; logs an error and returns its exit code
/// (0 done, 1 runtime failure, 2 configuration error).
pub fn run<F>(main: F) -> ExitCode
where
    F: Future<Output = Result<()>>,
{
    let runtime = match tokio_runtime() {
        Ok(runtime) => runtime,
        Err(err) => return fail(&err),
    };
    let system = actix::System::with_tokio_rt(|| runtime);
    match system.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// The multi-threaded tokio runtime every binary of the workspace runs on: two workers, beside
/// the broker on these two-core machines.
pub fn tokio_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|err| Error::Local(format!("cannot start the runtime: {err}")))
}

/// Makes any panic end the process with exit code 1 after the usual panic message, so that a
/// panic in a task of a dependency (a connection's reader, say) can never leave the program
/// waiting for ever. `contained` says whether a panic is one that its code catches and reports
/// as an error (those pass silently).
///
/// A `println!` that found its pipe's reader gone (`failed printing to stdout: Broken pipe`) is
/// not a bug of the program but the end of its audience: it exits 0 quietly, as [`stdout`] does
/// for the lines written through it (this is the backstop for any `println!` left).
pub fn exit_on_panic(contained: fn() -> bool) {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if contained() {
            return;
        }
        if is_broken_pipe_print(info.payload()) {
            std::process::exit(0);
        }
        report(info);
        eprintln!(
            "internal error: a panic (above) stopped part of the program; exiting rather than \
             waiting for ever. Offsets stored so far cover only processed messages."
        );
        std::process::exit(1);
    }));
}

/// Whether a panic's payload is the standard library's `failed printing to stdout: Broken pipe`
/// (or stderr).
fn is_broken_pipe_print(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or_default();
    // The message ends with the OS's words for EPIPE, e.g. "Broken pipe (os error 32)".
    message.starts_with("failed printing to std")
        && message.to_ascii_lowercase().contains("broken pipe")
}

/// Reports `err` on stderr and returns its exit code.
pub fn fail(err: &Error) -> ExitCode {
    tracing::error!("{err}");
    ExitCode::from(err.exit_code())
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() -> Result<&'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Error::Local(format!("cannot listen for SIGTERM: {e}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| Error::Local(format!("cannot listen for SIGINT: {e}")))?;
    tokio::select! {
        _ = terminate.recv() => Ok("SIGTERM"),
        _ = interrupt.recv() => Ok("SIGINT"),
    }
}

/// Runs `work` to its end. On the first SIGINT/SIGTERM — or when stdout's reader goes away
/// ([`stdout::closed`], `consumer | head -1`) — cancels `shutdown` and waits for `work` to wind
/// down (finish what runs, store what was processed) — for at most `deadline`; a second
/// signal, or the deadline, stops waiting at once with an error saying what that means.
pub async fn until_stopped<T>(
    work: impl Future<Output = Result<T>>,
    shutdown: &tokio_util::sync::CancellationToken,
    deadline: std::time::Duration,
) -> Result<T> {
    tokio::pin!(work);
    let first = tokio::select! {
        done = &mut work => return done,
        signal = shutdown_signal() => format!("{} received", signal?),
        () = stdout::closed() => "stdout was closed by its reader".to_owned(),
    };
    tracing::info!(
        "{first}: finishing what runs and storing what was processed (at most {}; \
         another SIGINT/SIGTERM exits at once)",
        humantime::format_duration(deadline)
    );
    shutdown.cancel();
    let unfinished = "offsets stored so far cover only processed messages; what was processed \
                      since the last store is processed again by the next run";
    tokio::select! {
        done = &mut work => done,
        second = shutdown_signal() => Err(Error::Local(format!(
            "a second {} during shutdown: exiting without waiting; {unfinished}",
            second?
        ))),
        () = tokio::time::sleep(deadline) => Err(Error::Local(format!(
            "shutdown did not end within {}: exiting without waiting; {unfinished}",
            humantime::format_duration(deadline)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_print_to_a_closed_pipe_counts_as_one() {
        let epipe = String::from("failed printing to stdout: Broken pipe (os error 32)");
        assert!(is_broken_pipe_print(&epipe));
        assert!(!is_broken_pipe_print(&String::from(
            "failed printing to stdout: No space left on device (os error 28)"
        )));
        assert!(!is_broken_pipe_print(
            &"called `Option::unwrap()` on a `None` value"
        ));
        assert!(!is_broken_pipe_print(&42_u8));
    }
}
