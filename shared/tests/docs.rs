//! The documentation matches the configuration: every key the programs read (what `config`
//! lists) has a row in the README's configuration table and an entry in `config.toml`, and the
//! README documents no key that does not exist.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use shared::config::show::{effective, CONSUMER_SECTIONS, PRODUCER_SECTIONS};
use shared::config::Settings;

/// Every key either program reads.
fn keys() -> BTreeSet<&'static str> {
    let settings = Settings::default();
    [PRODUCER_SECTIONS, CONSUMER_SECTIONS]
        .iter()
        .flat_map(|sections| effective(&settings, None, &[], sections))
        .map(|shown| shown.key)
        .collect()
}

fn workspace_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_readme_documents_every_key_and_only_keys_that_exist() {
    let readme = workspace_file("README.md");
    let keys = keys();
    assert!(keys.len() > 40, "the listing shrank: {keys:?}");
    let missing: Vec<_> = keys
        .iter()
        .filter(|key| !readme.contains(&format!("| `{key}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "README.md has no row `| `key` |` for {missing:?}"
    );
    // Rows of the configuration table: `| `section.key` | default | meaning |`.
    let documented: BTreeSet<&str> = readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `")?.split_once("` |"))
        .map(|(key, _)| key)
        .filter(|key| {
            key.split_once('.').is_some_and(|(section, _)| {
                PRODUCER_SECTIONS.contains(&section) || CONSUMER_SECTIONS.contains(&section)
            })
        })
        .collect();
    let unknown: Vec<_> = documented.difference(&keys).collect();
    assert!(
        unknown.is_empty(),
        "README.md documents keys that do not exist: {unknown:?}"
    );
}

#[test]
fn config_toml_mentions_every_key_in_its_section() {
    let file = workspace_file("config.toml");
    // Section by section: `[name]` headers, then `key = …` lines, either commented out or not
    // (`# [broker.tls]` opens a section of examples).
    let mut section = "";
    let mut mentioned = BTreeSet::new();
    for line in file.lines() {
        let entry = line.trim_start().trim_start_matches('#').trim_start();
        let header = entry
            .strip_prefix('[')
            .and_then(|l| l.split_once(']'))
            .filter(|(_, rest)| rest.trim().is_empty() || rest.trim_start().starts_with('#'));
        if let Some((name, _)) = header {
            section = name;
            continue;
        }
        if let Some((key, _)) = entry.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                mentioned.insert(format!("{section}.{key}"));
            }
        }
    }
    let missing: Vec<_> = keys()
        .into_iter()
        .filter(|key| !mentioned.contains(*key))
        .collect();
    assert!(
        missing.is_empty(),
        "config.toml does not mention {missing:?} (as `key = …` in its section, commented out or \
         not)"
    );
}
