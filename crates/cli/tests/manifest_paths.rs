//! CSV manifest certificate paths stay inside the manifest's folder, end to
//! end through the real binary: an absolute path, a `..` component, a
//! symlink leading out of the folder, a FIFO and a directory are each
//! refused with a one-line error naming the CSV line and the rule, before
//! anything is registered (a good row before the bad one is not imported
//! either); relative paths inside the folder still import.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;

/// An initialised data dir with the vendor test set in `set/` and the
/// vendor's CAs registered.
fn vendor_env() -> (Env, PathBuf) {
    let env = Env::init(&[]);
    let set = env.path("set");
    env.ok(&[
        "manifest",
        "generate-test",
        "--test-set",
        "--count",
        "3",
        "--out",
        set.to_str().unwrap(),
    ]);
    let p = |n: &str| set.join(n).to_str().unwrap().to_string();
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor",
        "--cert",
        &p("vendor-root.pem"),
        "--signer",
        &p("log-signer.pem"),
    ]);
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor-signer",
        "--cert",
        &p("signer-ca.pem"),
    ]);
    (env, set)
}

/// The vendor certificate files in `set/certs`, sorted.
fn certs(set: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(set.join("certs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    all
}

/// Runs `idmint manifest import CSV --ca vendor-signer`, killing it after
/// 30 s (reading a FIFO would block for ever).
fn import(env: &Env, csv: &Path) -> Output {
    let mut child = env
        .cmd()
        .args(["manifest", "import", csv.to_str().unwrap()])
        .args(["--ca", "vendor-signer", "--format", "csv"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn idmint");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "manifest import of {} hung: {}",
                csv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

fn thing_count(env: &Env) -> usize {
    env.json(&["thing", "list", "--json"])
        .as_array()
        .map(Vec::len)
        .unwrap_or(0)
}

#[test]
fn certificate_paths_leaving_the_manifest_folder_are_refused() {
    let (env, set) = vendor_env();
    let certs = certs(&set);
    let good_row = format!(
        "0600000000000000,certs/{}",
        certs[0].file_name().unwrap().to_string_lossy()
    );
    // Real vendor certificates outside the folder, so the only thing wrong
    // with each bad row is where its path leads.
    let outside = env.path("outside.pem");
    std::fs::copy(&certs[1], &outside).unwrap();
    std::os::unix::fs::symlink(&outside, set.join("link.pem")).unwrap();
    let fifo = set.join("fifo.pem");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());

    let cases: [(&str, &str, &str); 5] = [
        ("absolute", "/etc/passwd", "absolute"),
        ("dotdot", "../outside.pem", ".."),
        ("symlink", "link.pem", "outside the manifest's folder"),
        ("fifo", "fifo.pem", "not a regular file"),
        ("directory", "certs", "not a regular file"),
    ];
    let before = (env.counts(), thing_count(&env));
    for (name, path, rule) in cases {
        let csv = set.join(format!("{name}.csv"));
        std::fs::write(
            &csv,
            format!("unique_id,certificate_pem_or_path\n{good_row}\n0600000000000001,{path}\n"),
        )
        .unwrap();
        let out = import(&env, &csv);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{name}: imported: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{name}: panicked: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: not a one-line error: {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(stderr.contains("line 3"), "{name}: no CSV line: {stderr}");
        assert!(stderr.contains(path), "{name}: no path: {stderr}");
        assert!(stderr.contains(rule), "{name}: no rule {rule:?}: {stderr}");
        assert!(
            !stderr.contains("root:"),
            "{name}: file content leaked: {stderr}"
        );
        assert_eq!(
            (env.counts(), thing_count(&env)),
            before,
            "{name}: the registry changed"
        );
    }

    // Paths inside the folder (also through a subfolder) import as before.
    let ok = set.join("inside.csv");
    std::fs::write(
        &ok,
        format!(
            "unique_id,certificate_pem_or_path\n{good_row}\n0600000000000001,./certs/{}\n",
            certs[1].file_name().unwrap().to_string_lossy()
        ),
    )
    .unwrap();
    let out = import(&env, &ok);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(thing_count(&env), before.1 + 2);
}
