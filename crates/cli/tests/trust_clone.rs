//! Issue 11, clone refusal and remote-station policy, end to end through
//! the real binary with curl and openssl: two remote stations certifying
//! one key at the same moment (exactly one wins, the other gets `409
//! clone`), on SQLite and (with IDMINT_TEST_POSTGRES) PostgreSQL; a
//! station that asks for no clone refusal or no pending activation gets
//! the batch's policy anyway; `spoil` only for PENDING_ACTIVATION
//! certificates; and a local station's device whose hardware id names
//! another batch's thing is refused, audited, and the thing left alone.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use common::http::postgres_database;

/// A scratch data directory on SQLite, or on a PostgreSQL database.
struct Env {
    dir: tempfile::TempDir,
    store: Option<String>,
}

impl Env {
    fn new(store: Option<String>) -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
            store,
        };
        env.ok(&["init", "--org", "Clone Co"]);
        env
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn idmint(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
        c.args(args)
            .env("IDMINT_DATA", self.path("data"))
            .env("IDMINT_CA_PASSPHRASE", "clone-test-passphrase")
            .env_remove("IDMINT_STORE")
            .current_dir(self.dir.path());
        if let Some(s) = &self.store {
            c.env("IDMINT_STORE", s);
        }
        c
    }
    fn ok(&self, args: &[&str]) -> String {
        let out = self.idmint(args).output().expect("run idmint");
        assert!(
            out.status.success(),
            "idmint {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).expect("JSON output")
    }
    fn serve(&self) -> Server {
        let (child, listening) = common::spawn_serve(
            &mut self.idmint(&[
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--mqtt-listen",
                "off",
                "--rate-limit",
                "0",
            ]),
            false,
            None,
        );
        Server {
            child,
            port: listening.https,
        }
    }
    fn root(&self) -> PathBuf {
        let root = self.path("root.pem");
        std::fs::write(&root, self.ok(&["ca", "show", "root", "--pem"])).expect("root");
        root
    }
    fn station_token(&self, name: &str, batch: &str) -> String {
        let out = self.ok(&[
            "token", "create", "--name", name, "--role", "station", "--batch", batch,
        ]);
        out.lines()
            .last()
            .and_then(|l| l.split_whitespace().last())
            .expect("token")
            .to_string()
    }
    /// A fresh P-256 key and a CSR for it (CN `cn`); returns the CSR PEM.
    fn csr(&self, name: &str, cn: &str) -> String {
        let csr = self.path(&format!("{name}.csr"));
        let out = Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
            .arg(self.path(&format!("{name}.key")))
            .args(["-subj", &format!("/CN={cn}"), "-out"])
            .arg(&csr)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl req failed");
        std::fs::read_to_string(&csr).expect("csr")
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// curl POST `body` with a bearer token; returns (HTTP status, JSON body).
fn post(root: &Path, url: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(root)
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .args(["-w", "\n%{http_code}", url])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Two stations send one CSR at the same moment, for two different
/// things, many rounds: exactly one certificate per key, the other station
/// `409 clone`; and a station that asks for no clone refusal is refused too.
fn two_stations_certify_one_key(env: &Env) {
    const ROUNDS: usize = 12;
    let b = env
        .ok(&["batch", "create", "--product", "race", "--count", "100"])
        .trim()
        .to_string();
    let tokens = [
        env.station_token("line-a", &b),
        env.station_token("line-b", &b),
    ];
    let root = env.root();
    let server = env.serve();
    let url = format!(
        "https://127.0.0.1:{}/api/v1/batches/{b}/certificates",
        server.port
    );
    for round in 0..ROUNDS {
        let csr = env.csr(&format!("race{round}"), &format!("race-{round}"));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let handles: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let body = serde_json::json!({"csr": csr, "thing": format!("race-{round}-{i}")})
                    .to_string();
                let (root, url, token, barrier) =
                    (root.clone(), url.clone(), token.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    post(&root, &url, &token, &body)
                })
            })
            .collect();
        let answers: Vec<(u16, serde_json::Value)> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let won = answers.iter().filter(|(c, _)| *c == 201).count();
        let cloned = answers
            .iter()
            .filter(|(c, v)| *c == 409 && v["error"] == "clone")
            .count();
        assert_eq!((won, cloned), (1, 1), "round {round}: {answers:?}");
    }
    // Exactly one live certificate per key in the registry.
    let certs = env.json(&["cert", "list", "--json"]);
    let live: Vec<&serde_json::Value> = certs
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["batch"] == b.as_str() && c["status"] != "REVOKED")
        .collect();
    assert_eq!(live.len(), ROUNDS);
    let keys: std::collections::HashSet<&str> = live
        .iter()
        .filter_map(|c| c["publicKeySha256"].as_str())
        .collect();
    assert_eq!(keys.len(), ROUNDS);
    // The batch counts the winners only.
    assert_eq!(
        env.json(&["batch", "show", &b, "--json"])["issued"],
        ROUNDS as i64
    );

    // A station asking for no clone refusal: the key is refused anyway.
    let csr = std::fs::read_to_string(env.path("race0.csr")).expect("csr");
    let body =
        serde_json::json!({"csr": csr, "thing": "sneaky", "refuseClones": false, "pending": false})
            .to_string();
    let (code, v) = post(&root, &url, &tokens[0], &body);
    assert_eq!((code, v["error"].as_str()), (409, Some("clone")), "{v}");
    assert!(env
        .json(&["thing", "list", "--json"])
        .as_array()
        .expect("things")
        .iter()
        .all(|t| t["name"] != "sneaky"));
}

#[test]
fn two_stations_certifying_one_key_at_once_sqlite() {
    two_stations_certify_one_key(&Env::new(None));
}

#[test]
fn two_stations_certifying_one_key_at_once_postgres() {
    if let Some(db) = postgres_database("clone_race") {
        two_stations_certify_one_key(&Env::new(Some(db)));
    }
}

#[test]
fn pending_and_clone_refusal_are_the_batchs_policy() {
    let env = Env::new(None);
    // The default: what remote stations used to ask for.
    let strict = env
        .ok(&["batch", "create", "--product", "strict", "--count", "5"])
        .trim()
        .to_string();
    let shown = env.json(&["batch", "show", &strict, "--json"]);
    assert_eq!(shown["pendingActivation"], true, "{shown}");
    assert_eq!(shown["refuseClones"], true, "{shown}");
    let text = env.ok(&["batch", "show", &strict]);
    assert!(
        text.contains("pending-activation true, refuse-clones true"),
        "{text}"
    );
    let lax = env
        .ok(&[
            "batch",
            "create",
            "--product",
            "lax",
            "--count",
            "5",
            "--pending-activation",
            "false",
            "--refuse-clones",
            "false",
        ])
        .trim()
        .to_string();
    let shown = env.json(&["batch", "show", &lax, "--json"]);
    assert_eq!(
        (&shown["pendingActivation"], &shown["refuseClones"]),
        (&serde_json::json!(false), &serde_json::json!(false)),
        "{shown}"
    );
    let root = env.root();
    let t_strict = env.station_token("s-strict", &strict);
    let t_lax = env.station_token("s-lax", &lax);
    let server = env.serve();
    let base = format!("https://127.0.0.1:{}/api/v1/batches", server.port);

    // A station asking for ACTIVE and no clone refusal on a strict batch:
    // PENDING_ACTIVATION, and the provisioned thing is refused again.
    let body = serde_json::json!({"csr": env.csr("p1", "dev-p1"), "pending": false, "refuseClones": false})
        .to_string();
    let (code, v) = post(
        &root,
        &format!("{base}/{strict}/certificates"),
        &t_strict,
        &body,
    );
    assert_eq!(code, 201, "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    assert_eq!(
        env.json(&["cert", "show", &id, "--json"])["status"],
        "PENDING_ACTIVATION"
    );
    let body =
        serde_json::json!({"csr": env.csr("p1b", "dev-p1"), "refuseClones": false}).to_string();
    let (code, v) = post(
        &root,
        &format!("{base}/{strict}/certificates"),
        &t_strict,
        &body,
    );
    assert_eq!((code, v["error"].as_str()), (409, Some("clone")), "{v}");

    // The lax batch issues ACTIVE; a station may still ask for pending.
    let body = serde_json::json!({"csr": env.csr("l1", "dev-l1")}).to_string();
    let (code, v) = post(&root, &format!("{base}/{lax}/certificates"), &t_lax, &body);
    assert_eq!(code, 201, "{v}");
    let active = v["id"].as_str().expect("id").to_string();
    assert_eq!(
        env.json(&["cert", "show", &active, "--json"])["status"],
        "ACTIVE"
    );
    let body = serde_json::json!({"csr": env.csr("l2", "dev-l2"), "pending": true}).to_string();
    let (code, v) = post(&root, &format!("{base}/{lax}/certificates"), &t_lax, &body);
    assert_eq!(code, 201, "{v}");
    let pending = v["id"].as_str().expect("id").to_string();
    assert_eq!(
        env.json(&["cert", "show", &pending, "--json"])["status"],
        "PENDING_ACTIVATION"
    );

    // Spoil: 409 for the ACTIVE certificate, which stays ACTIVE and
    // uncounted; the PENDING_ACTIVATION one is spoiled.
    let (code, v) = post(
        &root,
        &format!("{base}/{lax}/certificates/{active}/spoil"),
        &t_lax,
        "{}",
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(
        env.json(&["cert", "show", &active, "--json"])["status"],
        "ACTIVE"
    );
    assert_eq!(env.json(&["batch", "show", &lax, "--json"])["spoiled"], 0);
    let (code, v) = post(
        &root,
        &format!("{base}/{lax}/certificates/{pending}/spoil"),
        &t_lax,
        "{}",
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "REVOKED", "{v}");
    assert_eq!(env.json(&["batch", "show", &lax, "--json"])["spoiled"], 1);
}

/// Hole 4, the station: a device reporting a hardware id that names an
/// existing thing of no batch (an operator's `admin-box`) or of another
/// batch is refused, audited `station.refused`, and the thing keeps its
/// batch and certificates.
#[test]
fn a_hardware_id_naming_another_batchs_thing_is_refused() {
    let env = common::Env::init(&[]);
    env.ok(&["cert", "new", "--thing", "admin-box"]);
    let a = env
        .ok(&["batch", "create", "--product", "first", "--count", "3"])
        .trim()
        .to_string();
    let b = env
        .ok(&["batch", "create", "--product", "second", "--count", "3"])
        .trim()
        .to_string();
    // A device of batch A, provisioned; its certificate later revoked.
    let first = common::devsim(&env, "a1", &[]);
    let out = env.run(&[
        "station",
        "run",
        "--json",
        "--timeout-ms",
        "1500",
        "--batch",
        &a,
        "--device",
        &first.addr,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owned = env.json(&["thing", "show", "HW-a1", "--json"]);
    let cert = owned["certificates"][0]["id"]
        .as_str()
        .expect("cert")
        .to_string();
    env.ok(&["cert", "revoke", &cert]);

    for (name, hw_id, thing) in [("b1", "admin-box", "admin-box"), ("b2", "HW-a1", "HW-a1")] {
        let device = common::devsim(&env, name, &["--hw-id", hw_id]);
        let out = env.run(&[
            "station",
            "run",
            "--json",
            "--timeout-ms",
            "1500",
            "--batch",
            &b,
            "--device",
            &device.addr,
        ]);
        assert!(
            !out.status.success(),
            "{hw_id}: the station accepted the device"
        );
        let line: serde_json::Value = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["address"] == device.addr.as_str())
            .expect("the device's line");
        assert_eq!(line["ok"], false, "{line}");
        let error = line["error"].as_str().unwrap_or("");
        assert!(error.contains("refused") && error.contains(thing), "{line}");
        assert!(
            !device.state.join("cert.pem").exists(),
            "{hw_id}: device provisioned"
        );
        let shown = env.json(&["thing", "show", thing, "--json"]);
        assert_ne!(shown["batch"], b.as_str(), "{hw_id}: thing moved: {shown}");
        let certs = shown["certificates"].as_array().expect("certificates");
        assert_eq!(
            certs.len(),
            1,
            "{hw_id}: a certificate was attached: {shown}"
        );
    }
    let audit = env.json(&["audit", "list", "--json"]);
    let refused: Vec<&serde_json::Value> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|r| r["action"] == "station.refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert_eq!(env.json(&["batch", "show", &b, "--json"])["issued"], 0);
}
