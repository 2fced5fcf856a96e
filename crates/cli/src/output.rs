//! Printing results: `--json` arrays and objects for scripts, aligned
//! tables for people.

use std::io::Write;

use serde::Serialize;

/// Prints a value as pretty JSON on stdout. A closed pipe (`| head`) is an
/// error that `main` turns into a quiet exit, never a panic.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// Prints rows as a table with a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        // A reader that went away (`| head`) ends the table, quietly.
        let _ = writeln!(std::io::stdout().lock(), "{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `n` and a noun, the noun plural unless `n` is 1: `1 certificate`,
/// `2 certificates`. Nouns here take an `s`; `identity` becomes `identities`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else if let Some(stem) = noun.strip_suffix('y') {
        format!("{n} {stem}ies")
    } else {
        format!("{n} {noun}s")
    }
}

/// Unix seconds as RFC 3339 (the seconds themselves if out of range), so
/// every timestamp in JSON output has one form.
pub fn unix_time(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(self::time)
        .unwrap_or_else(|_| secs.to_string())
}

/// A timestamp as RFC 3339.
pub fn time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Fails, naming the first one, if any of the files a command is about to
/// write already exists: checked before anything is issued, so a refused
/// command leaves no certificate whose key went nowhere.
pub fn refuse_existing(paths: &[&std::path::Path]) -> anyhow::Result<()> {
    for path in paths {
        if path.exists() {
            anyhow::bail!(
                "{} already exists; refusing to overwrite it (move it away or choose another path)",
                path.display()
            );
        }
    }
    Ok(())
}
