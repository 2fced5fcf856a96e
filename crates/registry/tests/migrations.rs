//! The SQLite and PostgreSQL migrations are one schema written twice: they
//! may differ only in the byte-string type (`BLOB` / `BYTEA`) and in their
//! comments, plus the statements a backend needs alone (named below). A
//! column added to one and not the other fails here, before it fails a
//! user whose registry lives on the other backend.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Statements only PostgreSQL has, by migration: the events table behind
/// LISTEN/NOTIFY for payloads too large for a notification (events cross
/// servers only on PostgreSQL).
const POSTGRES_ONLY: &[(&str, &str)] = &[
    ("0012_shared_state.sql", "CREATE TABLE events"),
    ("0012_shared_state.sql", "CREATE INDEX events_created"),
];

fn migrations(backend: &str) -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect()
}

/// The statements of a migration, comments dropped and whitespace folded,
/// `BLOB` written as PostgreSQL's `BYTEA`.
fn statements(path: &PathBuf) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let code: String = text
        .lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ");
    code.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("BLOB", "BYTEA"))
        .collect()
}

#[test]
fn both_backends_have_the_same_migrations() {
    let sqlite = migrations("sqlite");
    let postgres = migrations("postgres");
    assert!(sqlite.len() >= 10, "found only {} migrations", sqlite.len());
    assert_eq!(sqlite, postgres, "a migration exists for one backend only");
}

#[test]
fn migrations_differ_only_in_the_byte_string_type() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for name in migrations("sqlite") {
        let sqlite = statements(&root.join("sqlite").join(&name));
        let postgres: Vec<String> = statements(&root.join("postgres").join(&name))
            .into_iter()
            .filter(|s| {
                !POSTGRES_ONLY
                    .iter()
                    .any(|(file, prefix)| *file == name && s.starts_with(prefix))
            })
            .collect();
        assert_eq!(
            sqlite, postgres,
            "{name}: the SQLite and PostgreSQL schemas have drifted apart"
        );
    }
}

#[test]
fn the_postgres_only_statements_are_still_there() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for (file, prefix) in POSTGRES_ONLY {
        let found = statements(&root.join("postgres").join(file))
            .iter()
            .any(|s| s.starts_with(prefix));
        assert!(found, "{file}: no statement starting {prefix:?}");
    }
}
