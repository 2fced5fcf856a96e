//! Scenarios 2 and 4 end to end through the real binaries: `idmint devsim`
//! processes on loopback ports, `idmint station run` against them, and
//! `openssl verify` on every certificate a simulated device ends up holding.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{devsim, openssl, Devsim, Env};

fn create_batch(env: &Env, count: &str, extra: &[&str]) -> String {
    let mut args = vec!["batch", "create", "--product", "widget", "--count", count];
    args.extend_from_slice(extra);
    env.ok(&args).trim().to_string()
}

/// Runs the station; returns (success, per-device JSON lines, stderr).
fn station(env: &Env, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    common::station_json(env, "1500", args)
}

fn batch(env: &Env, id: &str) -> serde_json::Value {
    env.json(&["batch", "show", id, "--json"])
}

/// `openssl verify` of the device's chain (leaf first) against the root,
/// and the certificate matches the device's key.
fn assert_device_verifies(env: &Env, state: &Path) {
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).unwrap();
    let cert = state.join("cert.pem");
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        "sslclient",
        "-CAfile",
        &root.to_string_lossy(),
        "-untrusted",
        &cert.to_string_lossy(),
        &cert.to_string_lossy(),
    ]);
    assert!(ok && text.contains(": OK"), "openssl verify: {text}");
    let (_, cert_key) = openssl(&["x509", "-in", &cert.to_string_lossy(), "-noout", "-pubkey"]);
    let key = state.join("key.pem");
    let (_, dev_key) = openssl(&["pkey", "-in", &key.to_string_lossy(), "-pubout"]);
    assert_eq!(
        cert_key, dev_key,
        "certificate does not certify the device key"
    );
}

fn statuses(env: &Env, batch: &str) -> Vec<String> {
    env.json(&["cert", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["batch"] == batch)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn keygen_path_over_tcp_and_quota() {
    let env = Env::init(&[]);
    let b = create_batch(&env, "2", &[]);
    let d1 = devsim(&env, "k1", &[]);
    let d2 = devsim(&env, "k2", &[]);
    // Two devices in parallel.
    let (ok, lines, err) = station(
        &env,
        &[
            "--batch", &b, "--device", &d1.addr, "--device", &d2.addr, "--lock",
        ],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        assert!(l["certificateId"].is_string());
        assert!(l["stationMs"].as_f64().unwrap() <= l["totalMs"].as_f64().unwrap());
    }
    assert_device_verifies(&env, &d1.state);
    assert_device_verifies(&env, &d2.state);
    assert!(d1.state.join("locked").exists());
    let shown = batch(&env, &b);
    assert_eq!(
        (shown["issued"].as_i64(), shown["spoiled"].as_i64()),
        (Some(2), Some(0))
    );
    assert_eq!(statuses(&env, &b), vec!["ACTIVE", "ACTIVE"]);
    // The device is registered as a thing with its hardware id.
    let things = env.json(&["thing", "list", "--json"]);
    assert!(things.to_string().contains("HW-k1"), "{things}");

    // Quota exhausted: the third device is not touched.
    let d3 = devsim(&env, "k3", &[]);
    let (ok, lines, _) = station(&env, &["--batch", &b, "--device", &d3.addr, "--count", "1"]);
    assert!(!ok);
    assert_eq!(lines[0]["stage"], "quota", "{lines:?}");
    assert!(!d3.state.join("cert.pem").exists());
    assert!(!d3.state.join("key.pem").exists(), "the device was touched");

    // A clone: the same hardware id again on another batch is refused.
    let b2 = create_batch(&env, "5", &[]);
    let (ok, lines, _) = station(
        &env,
        &["--batch", &b2, "--device", &d1.addr.clone(), "--count", "1"],
    );
    assert!(!ok);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("clone"),
        "{lines:?}"
    );
}

/// The other two transports: `serial:` (a simulator on a pseudo-terminal)
/// and `exec:` (a simulator on the stdin and stdout of a command the
/// station starts, as `exec:ssh HOST idmint-agent` would be).
#[test]
fn serial_and_exec_transports() {
    let env = Env::init(&[]);
    let b = create_batch(&env, "5", &[]);

    let state = env.path("pty");
    let mut child = Command::new(env!("CARGO_BIN_EXE_idmint"))
        .args(["devsim", "--pty", "--hw-id", "HW-pty", "--state"])
        .arg(&state)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn devsim");
    let mut said = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = said.next().and_then(Result::ok).unwrap_or_default();
    std::thread::spawn(move || for _ in said.by_ref() {});
    let addr = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("devsim said {line:?}"))
        .to_string();
    assert!(addr.starts_with("serial:/dev/"), "{addr}");
    let pty = Devsim { child, addr, state };
    let (ok, lines, err) = station(&env, &["--batch", &b, "--device", &pty.addr]);
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["ok"], true, "{lines:?}");
    assert_device_verifies(&env, &pty.state);

    let state = env.path("exec");
    let exec = format!(
        "exec:{} devsim --listen stdio --hw-id HW-exec --state {}",
        env!("CARGO_BIN_EXE_idmint"),
        state.display()
    );
    let (ok, lines, err) = station(&env, &["--batch", &b, "--device", &exec]);
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["ok"], true, "{lines:?}");
    assert_device_verifies(&env, &state);

    assert_eq!(statuses(&env, &b), vec!["ACTIVE", "ACTIVE"]);
    let things = env.json(&["thing", "list", "--json"]).to_string();
    assert!(
        things.contains("HW-pty") && things.contains("HW-exec"),
        "{things}"
    );
}

#[test]
fn count_reconnects_to_the_same_address() {
    let env = Env::init(&[]);
    let b = create_batch(&env, "10", &[]);
    let d = devsim(&env, "loop", &[]);
    // The same simulator answers twice: the second time it is a clone.
    let (ok, lines, _) = station(&env, &["--batch", &b, "--device", &d.addr, "--count", "2"]);
    assert!(!ok);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["ok"], true);
    assert!(lines[1]["error"].as_str().unwrap().contains("clone"));
}

#[test]
fn inject_path() {
    let env = Env::init(&[]);
    let d = devsim(&env, "inj", &["--no-keygen"]);
    let no_inject = create_batch(&env, "3", &[]);
    let (ok, lines, _) = station(&env, &["--batch", &no_inject, "--device", &d.addr]);
    assert!(!ok);
    assert!(
        lines[0]["error"].as_str().unwrap().contains("injection"),
        "{lines:?}"
    );
    assert_eq!(batch(&env, &no_inject)["issued"], 0);

    let b = create_batch(&env, "3", &["--allow-inject"]);
    let (ok, lines, err) = station(&env, &["--batch", &b, "--device", &d.addr]);
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["injected"], true);
    assert_device_verifies(&env, &d.state);
    assert_eq!(statuses(&env, &b), vec!["ACTIVE"]);
}

#[test]
fn misbehaving_devices_fail_with_reasons_and_station_goes_on() {
    let env = Env::init(&[]);
    let b = create_batch(&env, "20", &[]);
    // (misbehaviour, failing stage, whether a certificate was issued)
    let cases: &[(&str, &str, bool)] = &[
        ("garbage-at=keygen", "keygen", false),
        ("drop-at=install", "install", true),
        ("drop-after=1", "keygen", false),
        ("delay-ms=3000", "hello", false),
        ("bad-csr-signature", "csr", false),
        ("wrong-key-type", "csr", false),
        ("bad-proof", "prove", true),
        ("garbage-at=prove", "prove", true),
    ];
    let sims: Vec<Devsim> = cases
        .iter()
        .enumerate()
        .map(|(i, (m, _, _))| devsim(&env, &format!("bad{i}"), &["--misbehave", m]))
        .collect();
    let good = devsim(&env, "good", &[]);
    let mut args = vec!["--batch", b.as_str()];
    for s in &sims {
        args.extend(["--device", s.addr.as_str()]);
    }
    args.extend(["--device", good.addr.as_str()]);
    let (ok, lines, _) = station(&env, &args);
    assert!(!ok, "a failed device must make the station exit non-zero");
    assert_eq!(lines.len(), cases.len() + 1);
    let mut spoiled = 0;
    for (s, (m, stage, issued)) in sims.iter().zip(cases) {
        let line = lines
            .iter()
            .find(|l| l["address"] == s.addr.as_str())
            .expect("a line per device");
        assert_eq!(line["ok"], false, "{m}: {line}");
        assert_eq!(line["stage"], *stage, "{m}: {line}");
        assert!(!line["error"].as_str().unwrap().is_empty());
        assert_eq!(line["spoiled"], *issued, "{m}: {line}");
        spoiled += usize::from(*issued);
    }
    let line = lines
        .iter()
        .find(|l| l["address"] == good.addr.as_str())
        .unwrap();
    assert_eq!(line["ok"], true, "{line}");
    assert_device_verifies(&env, &good.state);
    // Nothing ACTIVE for a failed device; issued = active + spoiled.
    let st = statuses(&env, &b);
    assert_eq!(st.iter().filter(|s| *s == "ACTIVE").count(), 1, "{st:?}");
    assert_eq!(
        st.iter().filter(|s| *s == "REVOKED").count(),
        spoiled,
        "{st:?}"
    );
    let shown = batch(&env, &b);
    assert_eq!(shown["issued"].as_i64(), Some(1 + spoiled as i64));
    assert_eq!(shown["spoiled"].as_i64(), Some(spoiled as i64));
    // A device whose certificate was spoiled can be provisioned again.
    let (ok, lines, err) = station(
        &env,
        &["--batch", &b, "--device", &sims[1].addr, "--count", "1"],
    );
    assert!(!ok, "drop-at=install still drops: {err}");
    assert_eq!(lines[0]["stage"], "install");
}
