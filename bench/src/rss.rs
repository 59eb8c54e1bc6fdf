//! Peak RSS of a child process: under GNU time (`/usr/bin/time -f %M -o FILE`, the kernel's
//! maximum resident set size, exact), or, without it, by sampling `VmHWM` from
//! `/proc/PID/status` every [`POLL`] while the child runs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use tokio::process::Command;

use crate::cli::RssProbe;

/// GNU time, for exact peak RSS figures (`%M`, in KiB).
const GNU_TIME: &str = "/usr/bin/time";

/// How often a child's `VmHWM` is sampled when GNU time is missing.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// How peak RSS is measured in this run: [`RssProbe::Auto`] resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Under GNU time.
    Time,
    /// By polling `VmHWM`.
    Proc,
}

impl Probe {
    /// The probe `--rss-probe` asks for; `time` without GNU time installed is an error.
    pub(crate) fn resolve(asked: RssProbe) -> Result<Self> {
        let installed = Path::new(GNU_TIME).is_file();
        Ok(match asked {
            RssProbe::Auto | RssProbe::Time if installed => Probe::Time,
            RssProbe::Time => bail!("{GNU_TIME} is missing (apt-get install time)"),
            RssProbe::Auto | RssProbe::Proc => Probe::Proc,
        })
    }

    /// How the run's first line names it.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Probe::Time => "/usr/bin/time -f %M",
            Probe::Proc => "VmHWM polling",
        }
    }
}

/// Measures one child's peak RSS.
pub(crate) struct Meter {
    probe: Probe,
    /// Where GNU time writes its figure.
    file: PathBuf,
    /// The highest `VmHWM` sampled so far.
    polled_kib: u64,
}

impl Meter {
    /// A meter whose GNU time (if used) writes to `file`.
    pub(crate) fn new(probe: Probe, file: PathBuf) -> Self {
        Self {
            probe,
            file,
            polled_kib: 0,
        }
    }

    /// The command that runs `program` under measurement.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match self.probe {
            Probe::Time => {
                let mut command = Command::new(GNU_TIME);
                command
                    .arg("-f")
                    .arg("%M")
                    .arg("-o")
                    .arg(&self.file)
                    .arg(program);
                command
            }
            Probe::Proc => Command::new(program),
        }
    }

    /// Samples the running child `pid` (when polling); call it every [`POLL`].
    pub(crate) fn sample(&mut self, pid: Option<u32>) {
        if let (Probe::Proc, Some(pid)) = (self.probe, pid) {
            self.polled_kib = self.polled_kib.max(vm_hwm_kib(pid).unwrap_or_default());
        }
    }

    /// Stops a child that overran its deadline: under GNU time, the program it runs first (killing
    /// `time` itself would leave it behind).
    pub(crate) async fn terminate_wrapped(&self, pid: Option<u32>) {
        if let (Probe::Time, Some(pid)) = (self.probe, pid) {
            terminate_children_of(pid).await;
        }
    }

    /// The peak RSS in KiB once the child exited, if measured.
    pub(crate) async fn finish(self) -> Option<u64> {
        match self.probe {
            Probe::Time => {
                let text = tokio::fs::read_to_string(&self.file)
                    .await
                    .unwrap_or_default();
                let _ = tokio::fs::remove_file(&self.file).await;
                parse_time_output(&text)
            }
            Probe::Proc => (self.polled_kib > 0).then_some(self.polled_kib),
        }
    }
}

/// GNU time's `%M` figure: the last line of its output file (earlier lines may say how the
/// program ended).
fn parse_time_output(text: &str) -> Option<u64> {
    text.lines()
        .last()
        .and_then(|line| line.trim().parse().ok())
}

/// Peak resident set size of a running process, from `/proc/PID/status`.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:` figure of a `/proc/PID/status` text, in KiB.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Sends SIGTERM to the children of `pid` (the program GNU time runs), which killing `time`
/// itself would leave behind.
async fn terminate_children_of(pid: u32) {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    for child in children.split_whitespace() {
        let _ = Command::new("kill").arg("-TERM").arg(child).status().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_figures() {
        assert_eq!(parse_time_output("25600\n"), Some(25_600));
        assert_eq!(
            parse_time_output("Command exited with non-zero status 1\n30000\n"),
            Some(30_000)
        );
        assert_eq!(parse_time_output(""), None);
        let status = "Name:\tproducer\nVmPeak:\t  100 kB\nVmHWM:\t   25600 kB\nVmRSS:\t 2000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(25_600));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn our_own_peak_is_readable() {
        assert!(vm_hwm_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
