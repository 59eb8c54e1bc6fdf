//! Where each configuration value came from — a flag the user typed, an environment variable,
//! a line of the file, or the built-in default — so that an error names what the user has to fix
//! (`--store-every 5`, `OFFSET_TRACKING__BROKER__PORTT=1`, `config.toml:3`), not just a key.
//!
//! Flags backed by an environment variable (`env = "OFFSET_TRACKING__…"` in clap) reach
//! [`Settings::load_with`](super::Settings::load_with) as overrides either way; which of the two
//! it really was is recorded when the command line is parsed
//! ([`try_parse_recording_origins`]), in a registry of the process.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::ENV_PREFIX;

/// Where one value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--store-every`, with the value given.
    Flag {
        /// The flag, `--` included.
        flag: String,
        /// What followed it.
        value: String,
    },
    /// An environment variable, with its value.
    Env {
        /// The variable's name.
        var: String,
        /// Its value.
        value: String,
    },
    /// The configuration file, at a line when it could be found.
    File {
        /// The file.
        path: PathBuf,
        /// The line (from 1) that sets the key, if found.
        line: Option<usize>,
    },
    /// An override given to `Settings::load_with` by a program that did not say which flag.
    Override {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Nothing set it: the built-in default.
    Default,
}

/// Keys whose values are never shown: the password, and anything named like a secret (a
/// misspelt `passwrod` included).
fn secret(key: &str) -> bool {
    let name = key.rsplit('.').next().unwrap_or(key);
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|word| name.contains(word))
        || name.starts_with("pw")
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag { flag, value } => write!(f, "{flag} {value}"),
            Origin::Env { var, value } => write!(f, "{var}={value}"),
            Origin::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Origin::File { path, line: None } => write!(f, "{}", path.display()),
            Origin::Override { key, value } => write!(f, "override {key}={value}"),
            Origin::Default => f.write_str("built-in default"),
        }
    }
}

/// The flags of this process's command line that set configuration keys, by key.
fn registry() -> &'static Mutex<HashMap<String, Origin>> {
    static FLAGS: OnceLock<Mutex<HashMap<String, Origin>>> = OnceLock::new();
    FLAGS.get_or_init(Default::default)
}

fn recorded(key: &str) -> Option<Origin> {
    let flags = match registry().lock() {
        Ok(flags) => flags,
        Err(poisoned) => poisoned.into_inner(),
    };
    flags.get(key).cloned()
}

/// The configuration key an `OFFSET_TRACKING__SECTION__KEY` variable sets (`section.key`), as
/// the config crate reads it.
pub(crate) fn key_of_env(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?.strip_prefix("__")?;
    let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
    (!parts.iter().any(String::is_empty)).then(|| parts.join("."))
}

/// Parses the command line like `P::try_parse()`, and records, for each flag that sets a
/// configuration key (one backed by an `OFFSET_TRACKING__…` variable), whether the user typed it
/// or clap read it from its variable; [`Settings::load_with`](super::Settings::load_with) then
/// names the right one in errors.
pub fn try_parse_recording_origins<P: clap::Parser>() -> std::result::Result<P, clap::Error> {
    let mut command = P::command();
    let matches = command.try_get_matches_from_mut(std::env::args_os())?;
    let mut found = HashMap::new();
    record(&command, &matches, &mut found);
    match registry().lock() {
        Ok(mut flags) => *flags = found,
        Err(poisoned) => *poisoned.into_inner() = found,
    }
    P::from_arg_matches(&matches).map_err(|err| err.format(&mut command))
}

/// Records the origins of `command`'s arguments found in `matches`, then its subcommands'.
fn record(
    command: &clap::Command,
    matches: &clap::ArgMatches,
    found: &mut HashMap<String, Origin>,
) {
    use clap::parser::ValueSource;
    for arg in command.get_arguments() {
        let (Some(long), Some(var)) = (arg.get_long(), arg.get_env()) else {
            continue;
        };
        let var = var.to_string_lossy().into_owned();
        let Some(key) = key_of_env(&var) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let Ok(Some(mut raw)) = matches.try_get_raw(id) else {
            continue;
        };
        let value = raw
            .next()
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let value = if secret(&key) { "***".into() } else { value };
        let origin = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Origin::Flag {
                flag: format!("--{long}"),
                value,
            },
            Some(ValueSource::EnvVariable) => Origin::Env { var, value },
            _ => continue,
        };
        // A flag typed after a subcommand wins over what the top level saw.
        found.insert(key, origin);
    }
    if let Some((name, sub_matches)) = matches.subcommand() {
        if let Some(sub) = command.find_subcommand(name) {
            record(sub, sub_matches, found);
        }
    }
}

/// Where every value of one load came from.
pub(crate) struct Sources {
    overrides: HashMap<String, Origin>,
    env: HashMap<String, Origin>,
    file: PathBuf,
    /// Keys (and section names) the file sets, with their lines.
    file_lines: HashMap<String, usize>,
}

impl Sources {
    /// The sources of a load from `file` (read if it exists), the process environment and
    /// `overrides`.
    pub(crate) fn gather(file: &Path, overrides: &[(&str, String)]) -> Self {
        let overrides = overrides
            .iter()
            .map(|(key, value)| {
                let origin = recorded(key).unwrap_or_else(|| Origin::Override {
                    key: (*key).to_owned(),
                    value: if secret(key) {
                        "***".into()
                    } else {
                        value.clone()
                    },
                });
                ((*key).to_owned(), origin)
            })
            .collect();
        let env = std::env::vars()
            .filter_map(|(var, value)| {
                let key = key_of_env(&var)?;
                let value = if secret(&key) { "***".into() } else { value };
                Some((key, Origin::Env { var, value }))
            })
            .collect();
        let file_lines = std::fs::read_to_string(file)
            .map(|text| lines_of_keys(&text))
            .unwrap_or_default();
        Self {
            overrides,
            env,
            file: file.to_path_buf(),
            file_lines,
        }
    }

    /// The configuration file of this load (whether it exists or not).
    pub(crate) fn file(&self) -> &Path {
        &self.file
    }

    /// Where `key` (`section.key`, or a section; `broker.hosts[1]` is `broker.hosts`) came
    /// from: flag > environment > file > default, as the values themselves. A section that
    /// nothing sets as a whole is where its first key was set.
    pub(crate) fn of(&self, key: &str) -> Origin {
        let key = key.split('[').next().unwrap_or(key);
        let within = format!("{key}.");
        let find = |map: &HashMap<String, Origin>| {
            map.get(key).cloned().or_else(|| {
                let mut inside: Vec<(&String, &Origin)> =
                    map.iter().filter(|(k, _)| k.starts_with(&within)).collect();
                inside.sort_by(|a, b| a.0.cmp(b.0));
                inside.first().map(|(_, origin)| (*origin).clone())
            })
        };
        if let Some(origin) = find(&self.overrides).or_else(|| find(&self.env)) {
            return origin;
        }
        if let Some(line) = self.file_lines.get(key) {
            return Origin::File {
                path: self.file.clone(),
                line: Some(*line),
            };
        }
        Origin::Default
    }

    /// The origin of a value the config crate says came from `uri` (a file, or nothing known),
    /// for `key` when [`Sources::of`] knows nothing better.
    pub(crate) fn of_reported(&self, key: &str, uri: Option<&str>) -> Origin {
        match self.of(key) {
            Origin::Default => match uri {
                Some(uri) if Path::new(uri).file_name() == self.file.file_name() => Origin::File {
                    path: self.file.clone(),
                    line: None,
                },
                _ => Origin::Default,
            },
            known => known,
        }
    }
}

/// The line of each `[section]` and `key = …` of a TOML text, keyed as the configuration names
/// them (`section.key`). Good enough to point at a line; anything unusual (a multi-line value,
/// a dotted key) is just not found, and the error names the file alone.
fn lines_of_keys(text: &str) -> HashMap<String, usize> {
    let mut found = HashMap::new();
    let mut section = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with("[[") || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            if let Some(name) = header.split(']').next() {
                section = name.trim().to_lowercase();
                found.entry(section.clone()).or_insert(number + 1);
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"').to_lowercase();
        if key.is_empty() || key.contains(char::is_whitespace) {
            continue;
        }
        let full = if section.is_empty() {
            key
        } else {
            format!("{section}.{key}")
        };
        found.entry(full).or_insert(number + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_variables_name_their_keys() {
        assert_eq!(
            key_of_env("OFFSET_TRACKING__TRACKER__STORE_EVERY").as_deref(),
            Some("tracker.store_every")
        );
        assert_eq!(
            key_of_env("OFFSET_TRACKING__BROKER__TLS__CA_FILE").as_deref(),
            Some("broker.tls.ca_file")
        );
        assert_eq!(key_of_env("OFFSET_TRACKING_CONFIG"), None);
        assert_eq!(key_of_env("OFFSET_TRACKING__"), None);
        assert_eq!(key_of_env("HOME"), None);
    }

    #[test]
    fn keys_and_sections_are_found_on_their_lines() {
        let lines = lines_of_keys(
            "# comment\nname = \"top\"\n[broker]\nhost = \"h\"\n\n  portt=1\n[broker.tls]\nca = 1\n",
        );
        assert_eq!(lines.get("name"), Some(&2));
        assert_eq!(lines.get("broker"), Some(&3));
        assert_eq!(lines.get("broker.host"), Some(&4));
        assert_eq!(lines.get("broker.portt"), Some(&6));
        assert_eq!(lines.get("broker.tls"), Some(&7));
        assert_eq!(lines.get("broker.tls.ca"), Some(&8));
    }

    #[test]
    fn secrets_are_never_shown() {
        let sources = Sources::gather(
            Path::new("/nonexistent.toml"),
            &[("broker.password", "hunter2".into())],
        );
        let shown = sources.of("broker.password").to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
