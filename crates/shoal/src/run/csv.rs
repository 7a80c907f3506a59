//! `metrics.csv`: one row per training iteration, columns fixed by the first row.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

/// Appends rows to a CSV file, writing the header when the file is new.
pub struct CsvWriter {
    out: BufWriter<File>,
    columns: Option<Vec<String>>,
}

impl CsvWriter {
    /// Opens `path` for appending (a resumed run continues the same file).
    pub fn open(path: &Path) -> Result<Self> {
        let existing = std::fs::read_to_string(path).ok();
        let columns =
            existing.as_deref().and_then(|t| t.lines().next()).map(|h| h.split(',').map(String::from).collect());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(CsvWriter { out: BufWriter::new(file), columns })
    }

    /// Writes one row of named values; the first row fixes the columns.
    pub fn row(&mut self, values: &[(&str, f64)]) -> Result<()> {
        if self.columns.is_none() {
            let header: Vec<String> = values.iter().map(|(k, _)| k.to_string()).collect();
            writeln!(self.out, "{}", header.join(","))?;
            self.columns = Some(header);
        }
        let columns = self.columns.as_deref().unwrap_or_default();
        let cells: Vec<String> = columns
            .iter()
            .map(|c| {
                values.iter().find(|(k, _)| k == c).map_or(String::new(), |(_, v)| {
                    if v.is_nan() {
                        String::new()
                    } else {
                        v.to_string()
                    }
                })
            })
            .collect();
        writeln!(self.out, "{}", cells.join(","))?;
        self.out.flush()?;
        Ok(())
    }
}
