//! Remote station mode end to end through the real binaries: `idmint
//! serve` on loopback, `idmint devsim` devices, and `idmint station run
//! --server https://127.0.0.1:PORT` from another directory without a data
//! directory, authenticated by a station token or a client certificate.
//! Checks the devices' certificates with `openssl verify`, the server's
//! batch counts, quota exhaustion per device, a wrong token, spoiled
//! certificates and the refusal to inject keys.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use common::{openssl, Env};

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `idmint serve` on a loopback port (with `extra` options); returns
/// it and its base URL.
fn serve(env: &Env, extra: &[&str]) -> (Proc, String) {
    let mut cmd = env.cmd();
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--mqtt-listen", "off"])
        .args(["--rate-limit", "0"])
        .args(extra);
    let (child, listening) = common::spawn_serve(&mut cmd, false, None);
    (
        Proc(child),
        format!("https://127.0.0.1:{}", listening.https),
    )
}

/// A simulated device; returns it, its address and its state directory.
fn devsim(env: &Env, name: &str, extra: &[&str]) -> (common::Devsim, String, PathBuf) {
    let device = common::devsim(env, name, extra);
    let (addr, state) = (device.addr.clone(), device.state.clone());
    (device, addr, state)
}

fn token(env: &Env, name: &str, role: &str, batch: &str) -> String {
    let out = env.ok(&[
        "token", "create", "--name", name, "--role", role, "--batch", batch,
    ]);
    out.lines()
        .last()
        .and_then(|l| l.split_whitespace().last())
        .expect("token")
        .to_string()
}

/// The remote station, run in `cwd` with no IDMINT_DATA and the token in
/// the environment (when given).
fn station<S: AsRef<std::ffi::OsStr>>(cwd: &Path, token: Option<&str>, args: &[S]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
    c.current_dir(cwd)
        .env_remove("IDMINT_DATA")
        .env_remove("IDMINT_STORE")
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_STATION_TOKEN")
        .env("HOME", cwd)
        .args(["station", "run", "--json", "--timeout-ms", "1500"])
        .args(args);
    if let Some(t) = token {
        c.env("IDMINT_STATION_TOKEN", t);
    }
    c.output().expect("run station")
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn assert_device_verifies(root: &Path, state: &Path) {
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

fn counts(env: &Env, batch: &str) -> (i64, i64) {
    let b = env.json(&["batch", "show", batch, "--json"]);
    (
        b["issued"].as_i64().unwrap_or(-1),
        b["spoiled"].as_i64().unwrap_or(-1),
    )
}

fn statuses(env: &Env, batch: &str) -> Vec<String> {
    let mut s: Vec<String> = env
        .json(&["cert", "list", "--json"])
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["batch"] == batch)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .collect();
    s.sort();
    s
}

#[test]
fn remote_station_issues_through_the_server() {
    let env = Env::init(&[]);
    let b = env
        .ok(&["batch", "create", "--product", "widget", "--count", "4"])
        .trim()
        .to_string();
    let secret = token(&env, "line1", "station", &b);
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let (_server, url) = serve(&env, &[]);
    // The station's own directory: no data dir, no idmint files.
    let cwd = tempfile::tempdir().expect("tempdir");
    let ca = root.to_string_lossy().to_string();
    let remote = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["--server", url.as_str(), "--batch", b.as_str()];
        a.extend(["--ca-cert", ca.as_str()]);
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect()
    };

    // No credentials, and a wrong token: one-line errors, nothing issued.
    let (_d0, a0, s0) = devsim(&env, "r0", &[]);
    let out = station(cwd.path(), None, &remote(&["--device", &a0]));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("IDMINT_STATION_TOKEN"), "{err}");
    let out = station(
        cwd.path(),
        Some("not-the-token"),
        &remote(&["--device", &a0]),
    );
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains("401"), "{err}");
    assert!(!s0.join("key.pem").exists(), "the device was touched");
    assert_eq!(counts(&env, &b), (0, 0));

    // The token from a file, two devices in parallel: both provisioned.
    let token_file = cwd.path().join("station.token");
    std::fs::write(&token_file, format!("{secret}\n")).expect("token file");
    let tf = token_file.to_string_lossy().to_string();
    let (_d1, a1, s1) = devsim(&env, "r1", &[]);
    let (_d2, a2, s2) = devsim(&env, "r2", &[]);
    let out = station(
        cwd.path(),
        None,
        &remote(&[
            "--token-file",
            &tf,
            "--device",
            &a1,
            "--device",
            &a2,
            "--lock",
        ]),
    );
    let got = lines(&out);
    assert!(
        out.status.success(),
        "{} {got:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(got.len(), 2);
    for l in &got {
        assert_eq!(l["ok"], true, "{l}");
        assert!(l["certificateId"].is_string(), "{l}");
    }
    assert_device_verifies(&root, &s1);
    assert_device_verifies(&root, &s2);
    assert!(s1.join("locked").exists());
    assert_eq!(counts(&env, &b), (2, 0));
    assert_eq!(statuses(&env, &b), vec!["ACTIVE", "ACTIVE"]);
    let entries: Vec<_> = std::fs::read_dir(cwd.path())
        .expect("cwd")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(entries, vec!["station.token"], "the station wrote files");

    // A clone of r1 (its hardware id, another key): the server refuses it,
    // nothing counted.
    let (_dk, ak, _) = devsim(&env, "r1-clone", &["--hw-id", "HW-r1"]);
    let out = station(cwd.path(), Some(&secret), &remote(&["--device", &ak]));
    assert!(!out.status.success());
    let got = lines(&out);
    assert!(
        got[0]["error"].as_str().unwrap_or("").contains("clone"),
        "{got:?}"
    );
    assert_eq!(got[0]["spoiled"], false, "{got:?}");
    assert_eq!(counts(&env, &b), (2, 0));

    // A device that fails its proof: its certificate ends spoiled on the
    // server; the other device is provisioned.
    let (_d3, a3, _) = devsim(&env, "r3", &["--misbehave", "bad-proof"]);
    let (_d4, a4, s4) = devsim(&env, "r4", &[]);
    let out = station(
        cwd.path(),
        Some(&secret),
        &remote(&["--device", &a3, "--device", &a4]),
    );
    assert!(!out.status.success());
    let got = lines(&out);
    let bad = got
        .iter()
        .find(|l| l["address"] == a3.as_str())
        .expect("r3");
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["stage"], "prove", "{bad}");
    assert_eq!(bad["spoiled"], true, "{bad}");
    let good = got
        .iter()
        .find(|l| l["address"] == a4.as_str())
        .expect("r4");
    assert_eq!(good["ok"], true, "{good}");
    assert_device_verifies(&root, &s4);
    assert_eq!(counts(&env, &b), (4, 1));
    assert_eq!(
        statuses(&env, &b),
        vec!["ACTIVE", "ACTIVE", "ACTIVE", "REVOKED"]
    );
    let audit = env.ok(&["audit", "verify"]);
    assert!(!audit.to_lowercase().contains("broken"), "{audit}");

    // Quota exhausted (4 of 4 issued): every device is told, none touched.
    let (_d5, a5, s5) = devsim(&env, "r5", &[]);
    let (_d6, a6, s6) = devsim(&env, "r6", &[]);
    let out = station(
        cwd.path(),
        Some(&secret),
        &remote(&["--device", &a5, "--device", &a6]),
    );
    assert!(!out.status.success());
    let got = lines(&out);
    assert_eq!(got.len(), 2);
    for l in &got {
        assert_eq!(l["stage"], "quota", "{l}");
        assert!(
            l["error"].as_str().unwrap_or("").contains("exhausted"),
            "{l}"
        );
    }
    assert!(!s5.join("key.pem").exists() && !s6.join("key.pem").exists());
    assert_eq!(counts(&env, &b), (4, 1));
}

#[test]
fn remote_station_quota_race_inject_refusal_and_client_certificate() {
    let env = Env::init(&[]);
    // One identity left for two devices asking at once: the server's
    // atomic quota gives it to one; the other is told per device.
    let b = env
        .ok(&[
            "batch",
            "create",
            "--product",
            "gadget",
            "--count",
            "1",
            "--allow-inject",
        ])
        .trim()
        .to_string();
    let secret = token(&env, "line2", "station", &b);
    let other = env
        .ok(&["batch", "create", "--product", "gadget", "--count", "5"])
        .trim()
        .to_string();
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let (_server, url) = serve(&env, &[]);
    let cwd = tempfile::tempdir().expect("tempdir");
    let ca = root.to_string_lossy().to_string();

    // Key injection is refused in remote mode, even when the batch allows it.
    let (_di, ai, si) = devsim(&env, "inj", &["--no-keygen"]);
    let out = station(
        cwd.path(),
        Some(&secret),
        &[
            "--server",
            &url,
            "--batch",
            &b,
            "--ca-cert",
            &ca,
            "--device",
            &ai,
        ],
    );
    assert!(!out.status.success());
    let got = lines(&out);
    assert!(
        got[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("remote station cannot inject"),
        "{got:?}"
    );
    assert!(!si.join("cert.pem").exists());
    assert_eq!(counts(&env, &b), (0, 0));

    let (_d1, a1, _) = devsim(&env, "q1", &[]);
    let (_d2, a2, _) = devsim(&env, "q2", &[]);
    let out = station(
        cwd.path(),
        Some(&secret),
        &[
            "--server",
            &url,
            "--batch",
            &b,
            "--ca-cert",
            &ca,
            "--device",
            &a1,
            "--device",
            &a2,
        ],
    );
    assert!(!out.status.success());
    let got = lines(&out);
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().filter(|l| l["ok"] == true).count(), 1, "{got:?}");
    let refused = got.iter().find(|l| l["ok"] == false).expect("one refused");
    assert_eq!(refused["stage"], "quota", "{refused}");
    assert_eq!(refused["spoiled"], false, "{refused}");
    assert_eq!(counts(&env, &b), (1, 0));

    // A station certificate instead of a token: a client certificate whose
    // thing has the station role.
    let csr = common::openssl_csr(
        env.dir.path(),
        "station-cert",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let cert = env.path("station-cert.pem");
    env.ok(&[
        "cert",
        "issue",
        "--csr",
        &csr.to_string_lossy(),
        "--thing",
        "station-cert",
        "--out",
        &cert.to_string_lossy(),
    ]);
    let station_id = env.json(&["cert", "list", "--thing", "station-cert", "--json"])[0]["id"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let scope = format!("batch:{other}");
    env.ok(&[
        "grant",
        "add",
        "--cert",
        &station_id,
        "--role",
        "station",
        "--scope",
        &scope,
    ]);
    let key = env.path("station-cert.key").to_string_lossy().to_string();
    let cert = cert.to_string_lossy().to_string();
    let (_dc, ac, sc) = devsim(&env, "c1", &[]);
    let out = station(
        cwd.path(),
        None,
        &[
            "--server",
            &url,
            "--batch",
            &other,
            "--ca-cert",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "--device",
            &ac,
        ],
    );
    let got = lines(&out);
    assert!(
        out.status.success(),
        "{} {got:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_device_verifies(&root, &sc);
    assert_eq!(counts(&env, &other), (1, 0));

    // The token is scoped to its batch; without trusting our CA the
    // server's certificate is refused. Both one-line errors.
    for (args, want) in [
        (
            vec![
                "--server",
                &url,
                "--batch",
                &other,
                "--ca-cert",
                &ca,
                "--device",
                &a1,
            ],
            "403",
        ),
        (
            vec!["--server", &url, "--batch", &b, "--device", &a1],
            "certificate",
        ),
    ] {
        let out = station(cwd.path(), Some(&secret), &args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// A station that dies between issue and activate leaves a PENDING_ACTIVATION
/// certificate; the server spoils it once the timeout (3 s here) has passed
/// (revoked, counted spoiled, audited) and leaves confirmed certificates alone.
#[test]
fn a_certificate_never_confirmed_on_its_device_is_spoiled() {
    let env = Env::init(&[]);
    let b = env
        .ok(&["batch", "create", "--product", "widget", "--count", "3"])
        .trim()
        .to_string();
    let secret = token(&env, "line3", "station", &b);
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let (_server, url) = serve(&env, &["--station-pending-timeout", "3"]);
    let csr = common::openssl_csr(
        env.dir.path(),
        "orphan",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let body = serde_json::json!({
        "csr": std::fs::read_to_string(&csr).expect("csr"),
        "pending": true,
    });
    let out = Command::new("curl")
        .args(["-sS", "--fail-with-body", "--cacert"])
        .arg(&root)
        .args(["-H", &format!("Authorization: Bearer {secret}")])
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("{url}/api/v1/batches/{b}/certificates"))
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let issued: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let id = issued["id"].as_str().expect("certificate id").to_string();
    let status = |id: &str| env.json(&["cert", "show", id, "--json"])["status"].clone();
    assert_eq!(status(&id), "PENDING_ACTIVATION");

    // Meanwhile a station provisions a device properly: that one stays.
    let (_d, addr, _) = devsim(&env, "kept", &[]);
    let cwd = tempfile::tempdir().expect("tempdir");
    let out = station(
        cwd.path(),
        Some(&secret),
        &[
            "--server",
            &url,
            "--batch",
            &b,
            "--ca-cert",
            &root.to_string_lossy(),
            "--device",
            &addr,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let start = Instant::now();
    while status(&id) != "REVOKED" {
        assert!(start.elapsed() < Duration::from_secs(60), "never spoiled");
        std::thread::sleep(Duration::from_millis(250));
    }
    let shown = env.json(&["batch", "show", &b, "--json"]);
    assert_eq!(
        (shown["issued"].as_i64(), shown["spoiled"].as_i64()),
        (Some(2), Some(1)),
        "{shown}"
    );
    let statuses: Vec<String> = env
        .json(&["cert", "list", "--json"])
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["batch"] == b.as_str())
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| *s == "ACTIVE").count(),
        1,
        "{statuses:?}"
    );
    // The sweep's writes are on the audit chain, which is intact.
    env.ok(&["audit", "verify"]);
}
