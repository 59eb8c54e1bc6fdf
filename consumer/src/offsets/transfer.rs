//! `offsets export` and `offsets import`: stored offsets to and from a file, for migrations and
//! disaster recovery. An import is planned whole (every stream known, every offset within its
//! stream) before anything is stored.

use std::collections::BTreeSet;
use std::path::Path;

use shared::error::{Error, Result};

use super::admin::Admin;
use super::files::{self, Record};
use super::names_of;
use super::plan::plan;
use super::set::check_and_apply;
use super::target::{Move, Target};

/// `offsets export`.
pub(super) async fn export(admin: &Admin, names: &[String], file: &Path) -> Result<()> {
    let mut records = vec![];
    let mut none = 0;
    for name in names {
        for stream in &admin.streams {
            match admin.stored(name, stream).await? {
                Some(offset) => records.push(Record {
                    consumer: name.clone(),
                    stream: stream.clone(),
                    offset,
                }),
                None => none += 1,
            }
        }
    }
    files::write(file, &records)?;
    let skipped = if none > 0 {
        format!("; {none} with nothing stored left out")
    } else {
        String::new()
    };
    let _ = shared::outln!(
        "exported {} offset{} ({}) to {}{skipped}",
        records.len(),
        if records.len() == 1 { "" } else { "s" },
        admin.kept_in(),
        file.display()
    );
    Ok(())
}

/// `offsets import`; `named`: the name to import onto.
pub(super) async fn import(
    admin: &Admin,
    named: Option<&str>,
    file: &Path,
    dry_run: bool,
    force: bool,
) -> Result<()> {
    let records = files::read(file)?;
    if records.is_empty() {
        return Err(Error::Usage(format!(
            "--file {}: holds no offset",
            file.display()
        )));
    }
    if let Some(target) = named {
        if names_of(target).len() != 1 {
            return Err(Error::Usage(format!(
                "import --name '{target}': one consumer name to import onto"
            )));
        }
        let consumers: BTreeSet<&str> = records.iter().map(|r| r.consumer.as_str()).collect();
        if consumers.len() > 1 {
            return Err(Error::Usage(format!(
                "--file {} holds the offsets of several consumers ({}): --name imports one \
                 consumer's onto another name",
                file.display(),
                consumers.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let unknown: Vec<&str> = records
        .iter()
        .map(|r| r.stream.as_str())
        .filter(|stream| !admin.streams.iter().any(|s| s == stream))
        .collect();
    if !unknown.is_empty() {
        return Err(Error::Usage(format!(
            "--file {}: offsets for {} not in '{}' (stream.name{}): nothing was changed",
            file.display(),
            unknown.join(", "),
            admin.settings.stream.name,
            if admin.partitioned {
                ", its partitions"
            } else {
                ""
            }
        )));
    }
    let mut plans = vec![];
    for record in &records {
        let name = named.unwrap_or(&record.consumer).trim();
        let movement = Move::To(Target::Offset(record.offset));
        plans.push(plan(admin, name, &record.stream, movement).await?);
    }
    check_and_apply(admin, &plans, dry_run, force).await
}
