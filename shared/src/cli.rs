//! Command-line options common to both programs. Each flag names the `config.toml` key it sets;
//! [`Settings::load_with`](crate::Settings::load_with) puts flags above the environment and the
//! file.

use std::path::PathBuf;

use crate::error::Result;
use crate::Settings;

/// `--config PATH`.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file [default: ./config.toml, if present]
    #[arg(
        long,
        value_name = "PATH",
        env = "OFFSET_TRACKING_CONFIG",
        global = true
    )]
    pub config: Option<PathBuf>,
}

/// Options every program takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// `--config PATH`.
    #[command(flatten)]
    pub file: ConfigArgs,

    /// The stream (stream.name) [default: stream-offset-tracking-rust]
    #[arg(
        long,
        value_name = "NAME",
        env = "OFFSET_TRACKING__STREAM__NAME",
        global = true
    )]
    pub stream: Option<String>,

    /// The broker's host (broker.host) [default: localhost]
    #[arg(
        long,
        value_name = "HOST",
        env = "OFFSET_TRACKING__BROKER__HOST",
        global = true
    )]
    pub host: Option<String>,

    /// The broker's stream port (broker.port) [default: 5552]
    #[arg(
        long,
        value_name = "PORT",
        env = "OFFSET_TRACKING__BROKER__PORT",
        global = true
    )]
    pub port: Option<u16>,

    /// Also print the run's summary as one JSON line on stderr, `summary-json: {…}` (for scripts
    /// and tests)
    #[arg(long, env = crate::summary::JSON_ENV, value_parser = clap::builder::FalseyValueParser::new(), global = true)]
    pub summary_json: bool,
}

impl CommonArgs {
    /// The configuration keys these flags set.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![];
        push(&mut out, "stream.name", &self.stream);
        push(&mut out, "broker.host", &self.host);
        push(&mut out, "broker.port", &self.port);
        out
    }

    /// Loads the settings with `more` overrides (a program's own flags) and these.
    pub fn load(&self, more: Vec<(&'static str, String)>) -> Result<Settings> {
        let mut overrides = self.overrides();
        overrides.extend(more);
        Settings::load_with(self.file.config.as_deref(), &overrides)
    }
}

/// Adds `key = value` when the flag was given.
pub fn push<T: ToString>(
    out: &mut Vec<(&'static str, String)>,
    key: &'static str,
    value: &Option<T>,
) {
    if let Some(value) = value {
        out.push((key, value.to_string()));
    }
}

/// The subcommands both programs have about themselves: `completions SHELL` and `man`.
/// Flattened into a program's own subcommands; they print and exit before any configuration is
/// read, so they work whatever `config.toml` says.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AboutSelf {
    /// Print a shell completion script, e.g. `consumer completions bash >
    /// /etc/bash_completion.d/consumer` (or zsh, fish, elvish, powershell)
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `consumer man > /usr/local/share/man/man1/consumer.1`
    Man,
}

impl AboutSelf {
    /// Prints what was asked for `P`'s command line on stdout (a reader leaving early is not an
    /// error: see [`crate::runtime::stdout`]).
    pub fn print<P: clap::CommandFactory>(&self) -> Result<()> {
        let mut command = P::command();
        let name = command.get_name().to_owned();
        let mut out = Vec::new();
        match self {
            AboutSelf::Completions { shell } => {
                clap_complete::generate(*shell, &mut command, name, &mut out);
            }
            AboutSelf::Man => clap_mangen::Man::new(command)
                .render(&mut out)
                .map_err(|err| crate::Error::Local(format!("cannot render the man page: {err}")))?,
        }
        match crate::runtime::stdout::write(&out) {
            Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => Err(crate::Error::Local(
                format!("cannot write to stdout: {err}"),
            )),
            _ => Ok(()),
        }
    }
}

/// The exit codes, for `--help`.
pub const EXIT_CODES: &str = "Exit codes: 0 done (also when stdout's reader leaves early, as `| head` \
does); 1 runtime failure (broker, stream, unconfirmed messages); \
2 usage or configuration error.\nPrecedence: flag > OFFSET_TRACKING__<SECTION>__<KEY> environment > \
--config file > built-in default. Diagnostics go to stderr (RUST_LOG, default info).";

/// Parses the command line like [`clap::Parser::parse`], except that a bad value which came from
/// an environment variable (a flag backed by `env = "OFFSET_TRACKING__…"`) is reported naming
/// that variable, not the flag the user never typed; exits 2 either way.
pub fn parse<P: clap::Parser>() -> P {
    match crate::config::try_parse_recording_origins::<P>() {
        Ok(parsed) => parsed,
        Err(err) => match from_environment(&err, &P::command()) {
            Some(message) => {
                eprintln!("error: {message}");
                std::process::exit(2);
            }
            None => err.exit(),
        },
    }
}

/// When `err` is a bad value for a flag that was not on the command line but in its environment
/// variable, the message to print instead, naming the variable.
fn from_environment(err: &clap::Error, command: &clap::Command) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        err.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::String(value)) = err.get(ContextKind::InvalidValue) else {
        return None;
    };
    // "--count <N>" → the argument whose long name is "count".
    let long = arg.trim_start_matches('-').split_whitespace().next()?;
    let flag_given =
        std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    if flag_given {
        return None;
    }
    let all_args = command.get_arguments().chain(
        command
            .get_subcommands()
            .flat_map(clap::Command::get_arguments),
    );
    let var = all_args
        .filter(|a| a.get_long() == Some(long))
        .find_map(|a| a.get_env())?
        .to_string_lossy()
        .into_owned();
    if std::env::var(&var).ok().as_deref() != Some(value.as_str()) {
        return None;
    }
    let why = std::error::Error::source(err)
        .map_or_else(|| "not a valid value".to_owned(), ToString::to_string);
    Some(format!(
        "{var}={value}: invalid value (for --{long}): {why}"
    ))
}
