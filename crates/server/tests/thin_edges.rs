//! The edges (this server and the CLI) parse input and call flows; they
//! never open a registry write transaction themselves. Every write is a
//! typed flow call, so the access module's proof and the audit log cannot
//! be skipped by an edge. This test fails when edge code starts writing.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn edges_never_open_a_write_transaction() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates.join("server/src"), &mut files);
    rust_files(&crates.join("cli/src"), &mut files);
    assert!(
        files.len() > 20,
        "found only {} edge source files",
        files.len()
    );
    let mut writers = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".begin(") || code.contains("WriteTx") {
                writers.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        writers.is_empty(),
        "edge code writes to the registry; move it into a flow:\n{}",
        writers.join("\n")
    );
}

/// The edges, the flows core, the scenario crates and the registry hold no
/// crypto of their own: hashing, signing, verifying and OCSP all go through
/// idmint-pki (rustls' own provider aside).
#[test]
fn only_pki_calls_a_crypto_library() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut offenders = Vec::new();
    for edge in [
        "server", "cli", "flows", "mint", "station", "manifest", "fleet", "registry", "tools",
        "rest",
    ] {
        let manifest =
            std::fs::read_to_string(crates.join(edge).join("Cargo.toml")).unwrap_or_default();
        assert!(manifest.contains("[dependencies]"), "{edge}/Cargo.toml");
        for line in manifest.lines() {
            if line.trim_start().starts_with("aws-lc-rs") || line.trim_start().starts_with("ring ")
            {
                offenders.push(format!("{edge}/Cargo.toml: {line}"));
            }
        }
        let mut files = Vec::new();
        rust_files(&crates.join(edge), &mut files);
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                if code.contains("aws_lc_rs::") && !code.contains("rustls::crypto::aws_lc_rs") {
                    offenders.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "edge code calls a crypto library; use idmint-pki:\n{}",
        offenders.join("\n")
    );
}
