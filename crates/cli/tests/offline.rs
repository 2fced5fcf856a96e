//! Offline batches end to end through the real binaries: `idmint batch
//! authorize` at the maker, `idmint station run --authorization` at a
//! factory without the maker's data directory against `idmint devsim`
//! processes over TCP on loopback, and `idmint batch reconcile` back at the
//! maker. `openssl verify` checks every certificate a simulated device ends
//! up holding, chain device -> batch CA -> maker CA -> root.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{devsim, openssl, softhsm_token, Env};

/// A factory's age identity (file) and recipient.
struct Factory {
    identity: PathBuf,
    recipient: String,
}

fn factory(env: &Env, name: &str) -> Factory {
    let identity = age::x25519::Identity::generate();
    let path = env.path(&format!("{name}.agekey"));
    std::fs::write(
        &path,
        format!(
            "# factory {name}\n{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .unwrap();
    Factory {
        identity: path,
        recipient: identity.to_public().to_string(),
    }
}

/// `batch authorize ... --out <name>.json --json`; returns (batch id, bundle).
fn authorize(env: &Env, name: &str, args: &[&str]) -> (String, PathBuf) {
    let out = env.path(&format!("{name}.json"));
    let mut all = vec![
        "batch",
        "authorize",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    let report = env.json(&all);
    (report["batch"].as_str().unwrap().to_string(), out)
}

/// The `idmint` command as a factory runs it: no maker data directory, no
/// CA passphrase.
fn factory_cmd(env: &Env) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
    c.env("IDMINT_DATA", env.path("no-maker-data-here"))
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_STORE")
        .env_remove("IDMINT_PKCS11_MODULE")
        .current_dir(env.dir.path());
    c
}

/// Runs the offline station; returns (success, per-device JSON lines, stderr).
fn station(
    env: &Env,
    auth: &Path,
    identity: Option<&Path>,
    log: &Path,
    extra: &[&str],
    vars: &[(String, String)],
) -> (bool, Vec<serde_json::Value>, String) {
    let mut cmd = factory_cmd(env);
    cmd.args(["station", "run", "--json", "--timeout-ms", "1500"])
        .arg("--authorization")
        .arg(auth)
        .arg("--log")
        .arg(log);
    if let Some(id) = identity {
        cmd.arg("--identity").arg(id);
    }
    cmd.args(extra);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run station");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (out.status.success(), lines, stderr)
}

/// Asserts the station failed with a one-line error containing `needle`.
fn station_refuses(env: &Env, args: &[&str], needle: &str) {
    let mut cmd = factory_cmd(env);
    cmd.args(["station", "run", "--timeout-ms", "1500"])
        .args(args);
    let out = cmd.output().unwrap();
    one_line_error(&out, needle);
}

fn one_line_error(out: &Output, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "unexpectedly succeeded: {stderr}");
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    stderr
}

/// `batch reconcile LOG --json`; returns (success, report, stderr).
fn reconcile(env: &Env, log: &Path) -> (bool, serde_json::Value, String) {
    let out = env.run(&["batch", "reconcile", log.to_str().unwrap(), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.success(), report, stderr)
}

fn batch(env: &Env, id: &str) -> serde_json::Value {
    env.json(&["batch", "show", id, "--json"])
}

fn statuses(env: &Env, batch: &str) -> Vec<String> {
    let mut s: Vec<String> = env
        .json(&["cert", "list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["batch"] == batch)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .collect();
    s.sort();
    s
}

/// `openssl verify` of what the device holds: the leaf (which certifies the
/// device's own key) -> the batch CA (path length 0) -> the maker's offline
/// CA -> the root, the root alone trusted.
fn assert_device_verifies(env: &Env, state: &Path, batch: &str) {
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).unwrap();
    let cert = state.join("cert.pem");
    let (ok, text) = openssl(&[
        "verify",
        "-show_chain",
        "-purpose",
        "sslclient",
        "-CAfile",
        &root.to_string_lossy(),
        "-untrusted",
        &cert.to_string_lossy(),
        &cert.to_string_lossy(),
    ]);
    assert!(ok && text.contains(": OK"), "openssl verify: {text}");
    let depth = |d: usize| {
        text.lines()
            .find(|l| l.starts_with(&format!("depth={d}:")))
            .unwrap_or_else(|| panic!("no depth={d} in {text}"))
            .to_string()
    };
    assert!(depth(1).contains(&format!("Batch {batch} CA")), "{text}");
    assert!(depth(2).contains("Offline Batches CA"), "{text}");
    assert!(depth(3).contains("Root CA"), "{text}");
    let (_, cert_key) = openssl(&["x509", "-in", &cert.to_string_lossy(), "-noout", "-pubkey"]);
    let (_, dev_key) = openssl(&[
        "pkey",
        "-in",
        &state.join("key.pem").to_string_lossy(),
        "-pubout",
    ]);
    assert_eq!(
        cert_key, dev_key,
        "certificate does not certify the device key"
    );
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

#[test]
fn keygen_and_inject_paths_then_an_honest_reconcile() {
    let env = Env::init(&[]);
    let f = factory(&env, "acme");
    let (b, auth) = authorize(
        &env,
        "auth",
        &[
            "--factory",
            "acme",
            "--product",
            "widget",
            "--count",
            "4",
            "--serial-range",
            "100..199",
            "--valid-days",
            "14",
            "--allow-inject",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    // The bundle: versioned, the key encrypted to the factory only, a
    // batch CA of path length 0 valid for the 14 days asked.
    let text = std::fs::read_to_string(&auth).unwrap();
    assert!(!text.contains("PRIVATE KEY"), "plaintext key in the bundle");
    let bundle: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(bundle["format"], "idmint-offline-authorization");
    assert_eq!(bundle["version"], 1);
    assert_eq!(bundle["key"]["kind"], "age");
    assert_eq!(bundle["key"]["recipient"], f.recipient.as_str());
    let batch_ca = env.path("batch-ca.pem");
    std::fs::write(&batch_ca, bundle["batchCa"].as_str().unwrap()).unwrap();
    let (_, ca_text) = openssl(&["x509", "-in", batch_ca.to_str().unwrap(), "-noout", "-text"]);
    assert!(ca_text.contains("CA:TRUE, pathlen:0"), "{ca_text}");
    let (_, end) = openssl(&[
        "x509",
        "-in",
        batch_ca.to_str().unwrap(),
        "-noout",
        "-checkend",
        "1296000",
    ]);
    assert!(end.contains("will expire"), "not short-lived: {end}");
    let shown = batch(&env, &b);
    assert_eq!(
        (
            shown["kind"].as_str(),
            shown["count"].as_i64(),
            shown["issued"].as_i64()
        ),
        (Some("authorization"), Some(4), Some(0))
    );

    let k1 = devsim(&env, "k1", &[]);
    let k2 = devsim(&env, "k2", &[]);
    let inj = devsim(&env, "inj", &["--no-keygen"]);
    let log = env.path("issuance.log");
    let before = env.counts();
    let (ok, lines, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &[
            "--device", &k1.addr, "--device", &k2.addr, "--device", &inj.addr, "--lock",
        ],
        &[],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines.len(), 3);
    let mut serials: Vec<i64> = lines
        .iter()
        .map(|l| l["serial"].as_i64().unwrap())
        .collect();
    serials.sort();
    assert_eq!(serials, vec![100, 101, 102]);
    for l in &lines {
        assert_eq!(l["ok"], true, "{l}");
        let injected = l["address"] == inj.addr.as_str();
        assert_eq!(l["injected"], injected, "{l}");
    }
    for d in [&k1, &k2, &inj] {
        assert_device_verifies(&env, &d.state, &b);
        assert!(d.state.join("locked").exists());
    }
    // The factory needed nothing of the maker's registry, and wrote nothing to it.
    assert_eq!(env.counts(), before);
    let records = log_lines(&log);
    assert_eq!(
        records.len(),
        7,
        "3 issued, 3 provisioned, closed: {records:?}"
    );
    assert!(records[6].contains(r#""type":"closed""#));
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.path("issuance.log.state")).unwrap()).unwrap();
    assert_eq!(
        (state["records"].as_i64(), state["issued"].as_i64()),
        (Some(7), Some(3))
    );

    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err} {report}");
    assert_eq!(report["accepted"], true);
    assert_eq!(report["findings"], serde_json::json!([]));
    assert_eq!(
        (
            report["registered"].as_i64(),
            report["issued"].as_i64(),
            report["provisioned"].as_i64()
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(statuses(&env, &b), vec!["ACTIVE"; 3]);
    let things = env.json(&["thing", "list", "--json"]).to_string();
    for hw in ["HW-k1", "HW-k2", "HW-inj"] {
        assert!(things.contains(hw), "{things}");
    }
    let shown = batch(&env, &b);
    assert_eq!(
        (
            shown["issued"].as_i64(),
            shown["spoiled"].as_i64(),
            shown["remaining"].as_i64()
        ),
        (Some(3), Some(0), Some(1))
    );
    assert!(env.ok(&["audit", "verify"]).contains("intact"));

    // Again: nothing new is registered, nothing is written.
    let counts = env.counts();
    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err}");
    assert_eq!(
        (report["newRecords"].as_i64(), report["registered"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(env.counts(), counts);
}

#[test]
fn quota_exhaustion_serial_range_and_a_counter_that_survives_restarts() {
    let env = Env::init(&[]);
    // A profile that puts the device serial number into the subject.
    let config = env.data().join("idmint.toml");
    let mut toml = std::fs::read_to_string(&config).unwrap();
    toml.push_str("\n[profiles.serial]\nsubject = [\"CN={thing}\", \"serialNumber={serial}\"]\n");
    std::fs::write(&config, toml).unwrap();
    let f = factory(&env, "acme");
    let (b, auth) = authorize(
        &env,
        "auth",
        &[
            "--factory",
            "acme",
            "--count",
            "2",
            "--serial-range",
            "10..11",
            "--profile",
            "serial",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let log = env.path("line1.log");
    let a = devsim(&env, "a", &[]);
    let (ok, lines, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &a.addr],
        &[],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["serial"], 10);
    let (_, subject) = openssl(&[
        "x509",
        "-in",
        &a.state.join("cert.pem").to_string_lossy(),
        "-noout",
        "-subject",
    ]);
    assert!(subject.contains("serialNumber = 10"), "{subject}");

    // A restarted station continues the count and the serial numbers.
    let b_dev = devsim(&env, "b", &[]);
    let (ok, lines, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &b_dev.addr],
        &[],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["serial"], 11);

    // Quota exhausted: the next device is not touched.
    let c = devsim(&env, "c", &[]);
    let (ok, lines, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &c.addr],
        &[],
    );
    assert!(!ok);
    assert_eq!(lines[0]["stage"], "quota", "{lines:?}");
    assert!(
        lines[0]["error"]
            .as_str()
            .unwrap()
            .contains("2 of 2 issued"),
        "{lines:?}"
    );
    assert!(err.is_empty(), "{err}");
    assert!(!c.state.join("key.pem").exists(), "the device was touched");

    // Deleting or truncating the log does not reset the counter.
    let saved = log_lines(&log);
    let args = |log: &Path| {
        vec![
            "--authorization".to_string(),
            auth.to_string_lossy().to_string(),
            "--identity".to_string(),
            f.identity.to_string_lossy().to_string(),
            "--log".to_string(),
            log.to_string_lossy().to_string(),
            "--device".to_string(),
            c.addr.clone(),
        ]
    };
    let argv = args(&log);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    write_lines(&log, &saved[..saved.len() - 3]);
    station_refuses(&env, &argv, "truncated or replaced");
    std::fs::remove_file(&log).unwrap();
    station_refuses(&env, &argv, "restore the log");
    write_lines(&log, &saved);
    // Another authorization's station may not continue this log.
    let (_, auth2) = authorize(
        &env,
        "auth2",
        &[
            "--factory",
            "acme",
            "--count",
            "1",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let mut other = argv.clone();
    let auth2_text = auth2.to_string_lossy().to_string();
    other[1] = &auth2_text;
    station_refuses(&env, &other, "belongs to another authorization");
    assert!(!c.state.join("key.pem").exists());

    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err} {report}");
    assert_eq!(report["registered"], 2);
    let shown = batch(&env, &b);
    assert_eq!(
        (shown["issued"].as_i64(), shown["remaining"].as_i64()),
        (Some(2), Some(0))
    );

    // A serial range smaller than the count is refused at the maker.
    let err = env.fails(&[
        "batch",
        "authorize",
        "--factory",
        "acme",
        "--count",
        "5",
        "--serial-range",
        "10..11",
        "--encrypt-to",
        &f.recipient,
        "--out",
        env.path("small.json").to_str().unwrap(),
    ]);
    assert!(
        err.contains("holds 2 serial numbers, fewer than --count 5"),
        "{err}"
    );
}

#[test]
fn tampered_logs_are_rejected_with_the_reason() {
    let env = Env::init(&[]);
    let f = factory(&env, "acme");
    let (b, auth) = authorize(
        &env,
        "auth",
        &[
            "--factory",
            "acme",
            "--count",
            "5",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let log = env.path("honest.log");
    let s1 = devsim(&env, "s1", &[]);
    let bad = devsim(&env, "bad", &["--misbehave", "drop-at=install"]);
    let (ok, lines, _) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &s1.addr, "--device", &bad.addr],
        &[],
    );
    assert!(!ok, "the install failure makes the run fail");
    let spoiled = lines
        .iter()
        .find(|l| l["address"] == bad.addr.as_str())
        .unwrap();
    assert_eq!(
        (spoiled["stage"].as_str(), spoiled["spoiled"].as_bool()),
        (Some("install"), Some(true))
    );
    let s2 = devsim(&env, "s2", &[]);
    let (ok, _, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &s2.addr],
        &[],
    );
    assert!(ok, "{err}");
    let honest = log_lines(&log);
    // issued x3, provisioned x2, spoiled, closed x2
    assert_eq!(honest.len(), 8, "{honest:?}");
    let first_close = honest
        .iter()
        .position(|l| l.contains(r#""type":"closed""#))
        .unwrap();

    // Another authorization of the same maker, and another maker's.
    let (_, auth_b) = authorize(
        &env,
        "auth-b",
        &[
            "--factory",
            "acme",
            "--count",
            "2",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let log_b = env.path("b.log");
    let s3 = devsim(&env, "s3", &[]);
    assert!(
        station(
            &env,
            &auth_b,
            Some(&f.identity),
            &log_b,
            &["--device", &s3.addr],
            &[]
        )
        .0
    );
    let other_maker = Env::init(&[]);
    let (_, auth_c) = authorize(
        &other_maker,
        "auth-c",
        &[
            "--factory",
            "acme",
            "--count",
            "2",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let log_c = env.path("c.log");
    let s4 = devsim(&env, "s4", &[]);
    assert!(
        station(
            &env,
            &auth_c,
            Some(&f.identity),
            &log_c,
            &["--device", &s4.addr],
            &[]
        )
        .0
    );
    let b_lines = log_lines(&log_b);

    let before = env.counts();
    let tampered = env.path("tampered.log");
    let cases: Vec<(&str, Vec<u8>, &str, &str)> = vec![
        {
            let text = std::fs::read(&log).unwrap();
            (
                "cut mid-line",
                text[..text.len() - 40].to_vec(),
                "truncated",
                "cut short",
            )
        },
        {
            let l = &honest[..honest.len() - 1];
            (
                "last record dropped",
                (l.join("\n") + "\n").into_bytes(),
                "truncated",
                "closing record",
            )
        },
        {
            let mut l = honest.clone();
            l.swap(1, 2);
            (
                "two records swapped",
                (l.join("\n") + "\n").into_bytes(),
                "reordered",
                "out of order",
            )
        },
        {
            let mut l = honest.clone();
            let i = l.iter().position(|x| x.contains("HW-s1")).unwrap();
            l[i] = l[i].replace("HW-s1", "HW-s9");
            (
                "hardware id edited",
                (l.join("\n") + "\n").into_bytes(),
                "edited",
                "was edited",
            )
        },
        {
            let mut l = honest.clone();
            l.remove(2);
            (
                "a record removed",
                (l.join("\n") + "\n").into_bytes(),
                "gap",
                "missing",
            )
        },
        {
            let mut l = honest.clone();
            l[1] = b_lines[1].clone();
            (
                "a record of another authorization",
                (l.join("\n") + "\n").into_bytes(),
                "foreign",
                "another authorization",
            )
        },
        (
            "another maker's log",
            std::fs::read(&log_c).unwrap(),
            "foreign",
            "not an offline authorization of this registry",
        ),
    ];
    for (name, bytes, kind, needle) in cases {
        std::fs::write(&tampered, &bytes).unwrap();
        let (ok, report, err) = reconcile(&env, &tampered);
        assert!(!ok, "{name}: accepted");
        assert_eq!(report["accepted"], false, "{name}: {report}");
        let kinds: Vec<&str> = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&kind), "{name}: {kinds:?} {report}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("error: issuance log"), "{name}: {err}");
        assert!(
            err.contains("rejected, nothing registered"),
            "{name}: {err}"
        );
        assert!(err.contains(needle), "{name}: expected {needle:?} in {err}");
        assert_eq!(env.counts(), before, "{name}: something was registered");
    }

    // The honest log is accepted, with its spoiled certificate.
    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err} {report}");
    assert_eq!(
        (report["registered"].as_i64(), report["spoiled"].as_i64()),
        (Some(3), Some(1))
    );
    assert_eq!(statuses(&env, &b), vec!["ACTIVE", "ACTIVE", "REVOKED"]);
    let shown = batch(&env, &b);
    assert_eq!(
        (shown["issued"].as_i64(), shown["spoiled"].as_i64()),
        (Some(3), Some(1))
    );
    // A shorter copy that ends at the first run's closing record looks
    // complete, but the registry has seen more.
    write_lines(&tampered, &honest[..=first_close]);
    let (ok, report, err) = reconcile(&env, &tampered);
    assert!(!ok);
    assert!(err.contains("truncated"), "{err} {report}");
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn an_interrupted_station_closes_its_log_on_restart() {
    let env = Env::init(&[]);
    let f = factory(&env, "acme");
    let (b, auth) = authorize(
        &env,
        "auth",
        &[
            "--factory",
            "acme",
            "--count",
            "3",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let slow = devsim(&env, "slow", &["--misbehave", "delay-ms=700"]);
    let log = env.path("killed.log");
    let mut child = factory_cmd(&env)
        .args(["station", "run", "--timeout-ms", "5000", "--authorization"])
        .arg(&auth)
        .arg("--identity")
        .arg(&f.identity)
        .arg("--log")
        .arg(&log)
        .args(["--device", &slow.addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill -9 once the certificate is issued, before the device has it.
    let started = Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(r#""type":"issued""#)
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing issued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let (ok, _, err) = reconcile(&env, &log);
    assert!(!ok);
    assert!(err.contains("closing record"), "{err}");

    // Run again without devices: the unfinished certificate is spoiled
    // and the log closed.
    let (ok, lines, err) = station(
        &env,
        &auth,
        Some(&f.identity),
        &log,
        &["--device", &slow.addr, "--count", "0"],
        &[],
    );
    assert!(ok, "{err}");
    assert!(lines.is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("the station stopped before the device finished"),
        "{text}"
    );
    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err} {report}");
    assert_eq!(
        (report["issued"].as_i64(), report["spoiled"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(statuses(&env, &b), vec!["REVOKED"]);
    assert_eq!(batch(&env, &b)["remaining"], 2);
}

#[test]
fn bad_input_gives_a_one_line_error() {
    let env = Env::init(&[]);
    let f = factory(&env, "acme");
    let g = factory(&env, "elsewhere");
    let (_, auth) = authorize(
        &env,
        "auth",
        &[
            "--factory",
            "acme",
            "--count",
            "2",
            "--encrypt-to",
            &f.recipient,
        ],
    );
    let d = devsim(&env, "d", &[]);
    let log = env.path("x.log");
    let run = |bundle: &Path, identity: Option<&Path>, needle: &str| {
        let mut args = vec![
            "--authorization".to_string(),
            bundle.to_string_lossy().to_string(),
            "--log".to_string(),
            log.to_string_lossy().to_string(),
            "--device".to_string(),
            d.addr.clone(),
        ];
        if let Some(i) = identity {
            args.extend(["--identity".to_string(), i.to_string_lossy().to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        station_refuses(&env, &args, needle);
    };
    let write = |name: &str, bytes: &[u8]| {
        let p = env.path(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    // Garbage and foreign bundles.
    run(
        &write("garbage.json", b"\x00\xffnot json"),
        Some(&f.identity),
        "not a usable authorization bundle",
    );
    run(
        &write("other.json", br#"{"format":"something-else"}"#),
        Some(&f.identity),
        "format",
    );
    run(&env.path("missing.json"), Some(&f.identity), "missing.json");
    // Edited limits: the id no longer matches; with the id recomputed, the
    // maker's signature no longer does.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth).unwrap()).unwrap();
    let limits = bundle["limits"]
        .as_str()
        .unwrap()
        .replace(r#""count":2"#, r#""count":2000"#);
    bundle["limits"] = limits.clone().into();
    run(
        &write("edited.json", bundle.to_string().as_bytes()),
        Some(&f.identity),
        "edited",
    );
    let id = idmint_pki::sha256_hex(limits.as_bytes());
    bundle["authorization"] = id.into();
    run(
        &write("forged.json", bundle.to_string().as_bytes()),
        Some(&f.identity),
        "not signed by the maker CA",
    );
    // Keys: another factory's identity, none, garbage.
    run(&auth, Some(&g.identity), "cannot open the batch CA key");
    run(&auth, None, "give --identity");
    run(
        &auth,
        Some(&write("junk.key", b"hello")),
        "holds no age identity",
    );
    assert!(!d.state.join("key.pem").exists(), "a device was touched");
    assert!(!log.exists(), "a log was started");

    // Reconcile of things that are not logs.
    let out = env.run(&[
        "batch",
        "reconcile",
        write("junk.log", b"\x01\x02garbage\n").to_str().unwrap(),
    ]);
    one_line_error(&out, "not an idmint issuance log");
    let out = env.run(&[
        "batch",
        "reconcile",
        write("empty.log", b"").to_str().unwrap(),
    ]);
    one_line_error(&out, "empty");
    let out = env.run(&["batch", "reconcile", env.path("nope.log").to_str().unwrap()]);
    one_line_error(&out, "nope.log");

    // Authorize refusals register nothing.
    let before = env.counts();
    let batches = env
        .json(&["batch", "list", "--json"])
        .as_array()
        .unwrap()
        .len();
    let out = |n: &str| env.path(n).to_string_lossy().to_string();
    for (args, needle) in [
        (
            vec![
                "--count",
                "2",
                "--encrypt-to",
                "age1nope",
                "--out",
                &out("a1.json"),
            ],
            "recipient",
        ),
        (
            vec![
                "--count",
                "0",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a2.json"),
            ],
            "at least 1",
        ),
        (
            vec![
                "--count",
                "2",
                "--serial-range",
                "1-5",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a3.json"),
            ],
            "FIRST..LAST",
        ),
        (
            vec![
                "--count",
                "2",
                "--serial-range",
                "9..3",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a4.json"),
            ],
            "empty",
        ),
        (
            vec![
                "--count",
                "2",
                "--encrypt-to",
                &f.recipient,
                "--out",
                auth.to_str().unwrap(),
            ],
            "exists",
        ),
        (
            vec![
                "--count",
                "2",
                "--profile",
                "nope",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a5.json"),
            ],
            "unknown profile",
        ),
        (
            vec![
                "--count",
                "2",
                "--ca",
                "issuing",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a6.json"),
            ],
            "path length 0",
        ),
        (
            vec![
                "--count",
                "2",
                "--valid-days",
                "0",
                "--encrypt-to",
                &f.recipient,
                "--out",
                &out("a7.json"),
            ],
            "--valid-days",
        ),
        (
            vec![
                "--count",
                "2",
                "--pkcs11-key",
                "pkcs11:token=t;object=o",
                "--out",
                &out("a8.json"),
            ],
            "IDMINT_PKCS11_MODULE",
        ),
    ] {
        let mut all = vec!["batch", "authorize", "--factory", "acme"];
        all.extend(args);
        let err = env.fails(&all);
        assert!(err.contains(needle), "expected {needle:?} in {err}");
    }
    assert_eq!(env.counts(), before);
    assert_eq!(
        env.json(&["batch", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        batches
    );
    for n in ["a1.json", "a2.json", "a5.json", "a6.json"] {
        assert!(!env.path(n).exists());
    }
}

#[test]
fn a_batch_ca_held_in_softhsm2() {
    let env = Env::init(&[]);
    let Some(vars) = softhsm_token(&env, "factory") else {
        return;
    };
    let uri = "pkcs11:token=factory;object=batch%20key";
    let bundle = env.path("hsm.json");
    let mut cmd = env.cmd();
    cmd.args([
        "batch",
        "authorize",
        "--json",
        "--factory",
        "acme",
        "--count",
        "2",
        "--pkcs11-key",
        uri,
        "--out",
    ])
    .arg(&bundle);
    for (k, v) in &vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let b = report["batch"].as_str().unwrap().to_string();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(
        json["key"],
        serde_json::json!({"kind": "pkcs11", "uri": uri})
    );

    let log = env.path("hsm.log");
    let d = devsim(&env, "hsm", &[]);
    // Without the module the station says what to set.
    station_refuses(
        &env,
        &[
            "--authorization",
            bundle.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--device",
            &d.addr,
        ],
        "IDMINT_PKCS11_MODULE",
    );
    let (ok, lines, err) = station(&env, &bundle, None, &log, &["--device", &d.addr], &vars);
    assert!(ok, "{err} {lines:?}");
    assert_device_verifies(&env, &d.state, &b);
    let (ok, report, err) = reconcile(&env, &log);
    assert!(ok, "{err} {report}");
    assert_eq!(report["registered"], 1);
    // The batch CA signed a CRL signer for the maker while the token was
    // here: the device's revocation is on the batch CA's CRL.
    let certs = env.json(&["cert", "list", "--json"]);
    let id = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["batch"] == b.as_str())
        .and_then(|c| c["id"].as_str())
        .unwrap()
        .to_string();
    env.ok(&["cert", "revoke", &id, "--reason", "keyCompromise"]);
    let batch_ca = format!("{b}-ca");
    let file = |name: &str, text: String| {
        let path = env.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    };
    let root = file("root.pem", env.ok(&["ca", "show", "root", "--pem"]));
    let offline = file("offline.pem", env.ok(&["ca", "show", "offline", "--pem"]));
    let batch_pem = file("batch.pem", env.ok(&["ca", "show", &batch_ca, "--pem"]));
    let signer = file(
        "signer.pem",
        env.ok(&["ca", "show", &batch_ca, "--crl-signer"]),
    );
    let crl = file("batch.crl", env.ok(&["crl", "--ca", &batch_ca]));
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-extended_crl",
        "-CAfile",
        &root,
        "-untrusted",
        &offline,
        "-untrusted",
        &batch_pem,
        "-untrusted",
        &signer,
        "-CRLfile",
        &crl,
        &d.state.join("cert.pem").to_string_lossy(),
    ]);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    // The key never left the token: its label is there, and no PEM of it anywhere.
    assert!(!std::fs::read_to_string(&bundle)
        .unwrap()
        .contains("PRIVATE KEY"));
}
