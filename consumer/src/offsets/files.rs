//! The files of `offsets export` and `offsets import`: CSV (`consumer,stream,offset`) or JSON
//! (an array of `{"consumer", "stream", "offset"}`), by the file's extension.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use shared::error::{Error, Result};

/// One stored offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Record {
    pub(super) consumer: String,
    pub(super) stream: String,
    pub(super) offset: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Json,
}

fn format_of(path: &Path) -> Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(Format::Csv),
        Some("json") => Ok(Format::Json),
        _ => Err(Error::Usage(format!(
            "--file {}: the name must end in .csv or .json (that says the format)",
            path.display()
        ))),
    }
}

/// Writes `records` to `path` in the format its extension says.
pub(super) fn write(path: &Path, records: &[Record]) -> Result<()> {
    let format = format_of(path)?;
    let fail =
        |e: &dyn std::fmt::Display| Error::Local(format!("cannot write {}: {e}", path.display()));
    let bytes = match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(records).map_err(|e| fail(&e))?;
            text.push('\n');
            text.into_bytes()
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(vec![]);
            for record in records {
                writer.serialize(record).map_err(|e| fail(&e))?;
            }
            // With no record, serialize never wrote the header: write it, so the file says what it is.
            if records.is_empty() {
                writer
                    .write_record(["consumer", "stream", "offset"])
                    .map_err(|e| fail(&e))?;
            }
            writer.into_inner().map_err(|e| fail(&e))?
        }
    };
    std::fs::write(path, bytes).map_err(|e| fail(&e))
}

/// Reads the records of `path`; a malformed file or a consumer and stream given twice is a usage
/// error naming the file.
pub(super) fn read(path: &Path) -> Result<Vec<Record>> {
    let format = format_of(path)?;
    let bad = |e: &dyn std::fmt::Display| Error::Usage(format!("--file {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(&e))?;
    let records: Vec<Record> = match format {
        Format::Json => serde_json::from_str(&text).map_err(|e| bad(&e))?,
        Format::Csv => csv::Reader::from_reader(text.as_bytes())
            .deserialize()
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(&e))?,
    };
    let mut seen = BTreeSet::new();
    for record in &records {
        if !seen.insert((&record.consumer, &record.stream)) {
            return Err(bad(&format!(
                "consumer '{}' on stream '{}' appears twice",
                record.consumer, record.stream
            )));
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_csv_and_json_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let records = vec![
            Record {
                consumer: "a,\"quoted\"".into(),
                stream: "s-0".into(),
                offset: 41,
            },
            Record {
                consumer: "b".into(),
                stream: "s-1".into(),
                offset: 0,
            },
        ];
        for name in ["o.csv", "o.JSON"] {
            let path = dir.path().join(name);
            write(&path, &records).unwrap();
            assert_eq!(read(&path).unwrap(), records, "{name}");
        }
        let empty = dir.path().join("empty.csv");
        write(&empty, &[]).unwrap();
        assert_eq!(read(&empty).unwrap(), vec![]);

        let twice = dir.path().join("twice.csv");
        std::fs::write(&twice, "consumer,stream,offset\nc,s,1\nc,s,2\n").unwrap();
        assert!(read(&twice).unwrap_err().to_string().contains("twice"));
        let negative = dir.path().join("negative.json");
        std::fs::write(&negative, r#"[{"consumer":"c","stream":"s","offset":-1}]"#).unwrap();
        assert!(read(&negative).is_err());
        assert!(write(&dir.path().join("o.txt"), &records).is_err());
    }
}
