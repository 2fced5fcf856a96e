//! The docs test: every block fenced as ```sh in README.md and docs/*.md
//! runs, in order, with the real `idmint` on PATH, each file in a scratch
//! directory of its own, so a documented command that rots fails CI. Blocks
//! that cannot run here (a server that never exits, hardware, a
//! placeholder) are fenced as ```console or ```text instead.
//!
//! A file's blocks become one bash script (`set -e`) whose line N is line N
//! of the Markdown file, so the first failing command is reported with its
//! file and line, and the output that led to it.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one file's blocks may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(300);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// README.md and docs/*.md, in name order.
fn markdown_files() -> Vec<PathBuf> {
    let mut files = vec![repo().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .expect("docs/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The script for one file: the lines of its ```sh blocks at their own
/// line numbers, every other line blank. `None` when it has no such block.
fn script(markdown: &str) -> Option<String> {
    let mut out = String::new();
    let mut in_sh = false;
    let mut in_other = false;
    let mut any = false;
    for line in markdown.lines() {
        let fence = line.trim_start().starts_with("```");
        if fence && !in_sh && !in_other {
            let info = line.trim_start().trim_start_matches('`').trim();
            if info == "sh" {
                in_sh = true;
                any = true;
            } else {
                in_other = true;
            }
            out.push('\n');
            continue;
        }
        if fence {
            in_sh = false;
            in_other = false;
            out.push('\n');
            continue;
        }
        if in_sh {
            out.push_str(line);
        }
        out.push('\n');
    }
    any.then_some(out)
}

/// Runs one file's script in a fresh directory; the failure message if it
/// fails.
fn run_file(path: &Path) -> Option<String> {
    let markdown = std::fs::read_to_string(path).expect("read markdown");
    let body = script(&markdown)?;
    let name = path
        .strip_prefix(repo())
        .unwrap_or(path)
        .display()
        .to_string();
    let scratch = tempfile::tempdir().expect("scratch dir");
    // The ERR trap names the Markdown line (the script keeps its numbering);
    // the header sits on line 0's place by being one line: bash counts from
    // the first line of the file, so the header must not add lines.
    let header = "set -eE; trap 'echo \"DOCS-TEST-FAILED-AT-LINE $LINENO\" >&2' ERR; ";
    let mut lines = body.lines();
    let first = lines.next().unwrap_or("");
    let script = format!(
        "{header}{first}\n{}\n",
        lines.collect::<Vec<_>>().join("\n")
    );
    let script_path = scratch.path().join(".docs-test.sh");
    std::fs::write(&script_path, script).expect("write script");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_idmint"));
    let bin_dir = bin.parent().expect("binary directory");
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log_path = scratch.path().join(".docs-test.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new("bash")
        .arg(&script_path)
        .current_dir(scratch.path())
        .env("PATH", path_var)
        .env("HOME", scratch.path())
        .env_remove("IDMINT_DATA")
        .env_remove("IDMINT_STORE")
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_LOG")
        .env_remove("IDMINT_STATION_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        // Its own process group: whatever a block left running (a server
        // started in the background) is stopped with it.
        .process_group(0)
        .spawn()
        .expect("run bash");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > FILE_TIMEOUT {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Stop the whole group (kill(1): no libc call needed here).
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    let mut output = String::new();
    let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut output));
    match status {
        Some(s) if s.success() => None,
        _ => {
            let line = output
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix("DOCS-TEST-FAILED-AT-LINE "))
                .and_then(|n| n.trim().parse::<usize>().ok());
            let what = match (status, line) {
                (None, _) => format!("timed out after {} s", FILE_TIMEOUT.as_secs()),
                (Some(_), Some(n)) => format!(
                    "line {n} failed: {}",
                    markdown.lines().nth(n - 1).unwrap_or("").trim()
                ),
                (Some(s), None) => format!("failed ({s})"),
            };
            let tail: Vec<&str> = output.lines().collect();
            let tail = tail[tail.len().saturating_sub(40)..].join("\n");
            Some(format!(
                "{name}: {what}\n--- output (last 40 lines) ---\n{tail}\n"
            ))
        }
    }
}

#[test]
fn every_sh_block_in_the_docs_runs() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for file in markdown_files() {
        let text = std::fs::read_to_string(&file).expect("read");
        if script(&text).is_none() {
            continue;
        }
        ran += 1;
        if let Some(failure) = run_file(&file) {
            failures.push(failure);
        }
    }
    assert!(
        ran >= 5,
        "only {ran} files with ```sh blocks: the tutorials are gone"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_script_keeps_the_markdown_line_numbers() {
    let md = "# t\n\n```sh\necho one\n```\n\ntext\n```console\n$ no\n```\n```sh\nfalse\n```\n";
    let s = script(md).expect("has sh");
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[3], "echo one");
    assert_eq!(lines[11], "false");
    assert!(!s.contains("$ no"));
}

/// The fleet tutorial writes its template inline (so it can be pasted);
/// `docs/examples/fleet-template.json` is the same file to download.
#[test]
fn the_sample_fleet_template_is_the_tutorials() {
    let tutorial =
        std::fs::read_to_string(repo().join("docs/s5-est-and-fleet.md")).expect("tutorial");
    let inline = tutorial
        .split_once("cat > fleet-template.json <<'JSON'\n")
        .and_then(|(_, rest)| rest.split_once("\nJSON\n"))
        .map(|(body, _)| body)
        .expect("the tutorial writes fleet-template.json");
    let sample = std::fs::read_to_string(repo().join("docs/examples/fleet-template.json"))
        .expect("sample template");
    assert_eq!(inline.trim(), sample.trim());
    let _: serde_json::Value = serde_json::from_str(&sample).expect("the sample is JSON");
}
