//! The trust boundary, tried as an attacker would through the real binary
//! with curl and openssl: an enrollment token naming someone else's thing,
//! a registered vendor's chip used as an EST credential, a `role` attribute
//! used as a role, re-enrollment used to pile up live certificates. Each
//! test is one hole of issue 11; the SQLite runs always, the PostgreSQL
//! variant when `IDMINT_TEST_POSTGRES` is set.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{batch, cert_id, csr, curl, json, p7_to_pem, postgres_env, run, token, Env};

fn sqlite_env() -> Env {
    Env::new()
}

/// POSTs a base64 CSR body to an EST endpoint.
fn est_post(root: &Path, url: &str, body: &Path, extra: &[&str]) -> (u16, String) {
    let data = format!("@{}", body.display());
    let mut args = vec![
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        data.as_str(),
    ];
    args.extend_from_slice(extra);
    curl(root, url, &args)
}

fn client(cert: &Path, key: &Path) -> Vec<String> {
    vec![
        "--cert".into(),
        cert.display().to_string(),
        "--key".into(),
        key.display().to_string(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn root_pem(env: &Env) -> PathBuf {
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    root
}

/// `cert new --thing NAME`: (cert path, key path, id).
fn identity(env: &Env, thing: &str) -> (PathBuf, PathBuf, String) {
    let cert = env.path(&format!("{thing}.cert.pem"));
    let key = env.path(&format!("{thing}.key.pem"));
    env.ok(&[
        "cert",
        "new",
        "--thing",
        thing,
        "--out",
        cert.to_str().unwrap_or(""),
        "--out-key",
        key.to_str().unwrap_or(""),
    ]);
    let id = cert_id(&cert);
    (cert, key, id)
}

fn status_of(env: &Env, id: &str) -> String {
    json(env, &["cert", "show", id, "--json"])["status"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Hole 1 (and 3): an enroll token's CSR names an existing admin thing;
/// a device certificate whose thing has `role=admin` acts as admin.
fn enroll_token_cannot_take_over_a_thing(env: Env) {
    env.ok(&["init", "--org", "Trust Co"]);
    let b = batch(&env, "10");
    let enroll = token(&env, "line-1", "enroll", Some(&b));
    let (boss_cert, boss_key, boss_id) = identity(&env, "boss");
    env.ok(&["grant", "add", "--cert", &boss_id, "--role", "admin"]);
    let (_, _, victim_id) = identity(&env, "victim");
    let root = root_pem(&env);
    let server = env.serve(&["--rate-limit", "0"]);
    let est = format!("https://localhost:{}/.well-known/est", server.port);
    let api = format!("https://localhost:{}/api/v1", server.port);
    let auth = format!("line-1:{enroll}");

    // The attack: a CSR whose CN is the admin's thing.
    let evil = csr(&env, "evil", "boss");
    let (code, body) = est_post(&root, &format!("{est}/simpleenroll"), &evil, &["-u", &auth]);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains("thing_exists") && body.contains("boss"),
        "{body}"
    );
    let boss_certs = json(&env, &["cert", "list", "--thing", "boss", "--json"]);
    assert_eq!(boss_certs.as_array().map(Vec::len), Some(1), "{boss_certs}");

    // A label naming the root CA or another batch is refused too.
    let other = batch(&env, "5");
    for label in ["root", other.as_str()] {
        let (code, body) = est_post(
            &root,
            &format!("{est}/{label}/simpleenroll"),
            &evil,
            &["-u", &auth],
        );
        assert_eq!(code, 403, "label {label}: {body}");
    }

    // A CN that would widen a topic, a broker ACL or a policy pattern it is
    // substituted into (or escape a path) names no thing: 400, nothing kept.
    // (openssl -subj: a backslash makes `/` and `+` literal.)
    for (i, cn) in [r"\+", r"dev\/\+\/x", "#", "a*", "..", "dev 1"]
        .iter()
        .enumerate()
    {
        let wild = csr(&env, &format!("wild-{i}"), cn);
        let (code, body) = est_post(&root, &format!("{est}/simpleenroll"), &wild, &["-u", &auth]);
        assert_eq!(code, 400, "CN {cn:?}: {body}");
        assert!(
            body.contains("not a valid thing name") || body.contains("invalid thing name"),
            "CN {cn:?}: {body}"
        );
    }
    // Only boss, victim and the server's own TLS certificate exist.
    let listed = json(&env, &["cert", "list", "--json"]);
    let subjects: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["subject"].as_str())
        .collect();
    assert_eq!(subjects.len(), 3, "{subjects:?}");
    assert!(
        subjects
            .iter()
            .all(|s| ["CN=boss,", "CN=victim,", "CN=idmint-server,"]
                .iter()
                .any(|p| s.starts_with(p))),
        "{subjects:?}"
    );

    // A new device enrolls; its certificate has no role at all.
    let dev = csr(&env, "dev", "dev-0001");
    let (code, body) = est_post(&root, &format!("{est}/simpleenroll"), &dev, &["-u", &auth]);
    assert_eq!(code, 200, "{body}");
    let dev_cert = p7_to_pem(&env, &body, "dev");
    let dev_key = env.path("dev.key");
    let dev_client = client(&dev_cert, &dev_key);
    let revoke = format!("{api}/certificates/{victim_id}/revoke");
    let mut args = strs(&dev_client);
    args.extend_from_slice(&["-X", "POST"]);
    assert_eq!(curl(&root, &revoke, &args).0, 403);

    // Hole 3: a role attribute confers nothing.
    env.ok(&["thing", "update", "dev-0001", "--attribute", "role=admin"]);
    let (code, body) = curl(&root, &revoke, &args);
    assert_eq!(code, 403, "a role attribute made an admin: {body}");
    assert_eq!(status_of(&env, &victim_id), "ACTIVE");

    // The granted admin certificate may revoke.
    let boss_client = client(&boss_cert, &boss_key);
    let mut args = strs(&boss_client);
    args.extend_from_slice(&["-X", "POST"]);
    let (code, body) = curl(&root, &revoke, &args);
    assert_eq!(code, 200, "{body}");
    assert_eq!(status_of(&env, &victim_id), "REVOKED");

    // Grants are audited and listed.
    let grants = json(&env, &["grant", "list", "--json"]);
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
    assert_eq!(grants[0]["principal"], format!("cert:{boss_id}"));
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

#[test]
fn enroll_token_cannot_take_over_a_thing_sqlite() {
    enroll_token_cannot_take_over_a_thing(sqlite_env());
}

#[test]
fn enroll_token_cannot_take_over_a_thing_postgres() {
    if let Some(env) = postgres_env("trust_takeover") {
        enroll_token_cannot_take_over_a_thing(env);
    }
}

/// A vendor CA and one chip certificate signed by it (openssl).
fn vendor_chip(env: &Env, chip: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = env.path("vendor-ca.key");
    let ca = env.path("vendor-ca.pem");
    if !ca.exists() {
        let (ok, text) = run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "30",
                "-subj",
                "/CN=Vendor Root/O=Vendor",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
            ])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca));
        assert!(ok, "{text}");
    }
    let key = env.path(&format!("{chip}.key"));
    let req = env.path(&format!("{chip}.req"));
    let cert = env.path(&format!("{chip}.pem"));
    let (ok, text) = run(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={chip}"),
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&req));
    assert!(ok, "{text}");
    let ext = env.path("chip.ext");
    std::fs::write(&ext, "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n").expect("ext");
    let (ok, text) = run(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-in"])
        .arg(&req)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    assert!(ok, "{text}");
    (ca, cert, key)
}

fn subject_of(pem: &Path) -> String {
    let (_, text) = run(Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-in"])
        .arg(pem));
    text
}

/// Hole 2: any chip of a registered vendor enrolls without limit, names its
/// thing from the CSR, and picks any label.
fn vendor_chip_is_a_credential_only_when_opted_in(env: Env) {
    env.ok(&["init", "--org", "Trust Co"]);
    let b = batch(&env, "10");
    let other = batch(&env, "10");
    let (vendor, chip, chip_key) = vendor_chip(&env, "chip-0001");
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor",
        "--cert",
        vendor.to_str().unwrap_or(""),
    ]);
    let root = root_pem(&env);
    let server = env.serve(&["--rate-limit", "0"]);
    let est = format!("https://localhost:{}/.well-known/est", server.port);
    let chip_client = client(&chip, &chip_key);
    let enroll = |label: &str, csr_path: &Path| {
        let url = if label.is_empty() {
            format!("{est}/simpleenroll")
        } else {
            format!("{est}/{label}/simpleenroll")
        };
        est_post(&root, &url, csr_path, &strs(&chip_client))
    };
    let csr1 = csr(&env, "c1", "someone-else");

    // Registered for manifest import only: not an EST credential.
    let (code, body) = enroll("", &csr1);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("est-bootstrap"), "{body}");

    // Opted in, into one batch.
    env.ok(&[
        "ca",
        "update",
        "vendor",
        "--est-bootstrap",
        "true",
        "--batch",
        &b,
    ]);
    for label in ["root", other.as_str()] {
        let (code, body) = enroll(label, &csr1);
        assert_eq!(code, 403, "label {label}: {body}");
    }
    let (code, body) = enroll("", &csr1);
    assert_eq!(code, 200, "{body}");
    let issued = p7_to_pem(&env, &body, "chip-issued");
    assert!(
        subject_of(&issued).contains("chip-0001"),
        "the thing is named by the bootstrap certificate, not the CSR: {}",
        subject_of(&issued)
    );
    assert!(json(&env, &["thing", "show", "chip-0001", "--json"])["batch"] == b.as_str());
    let listed = json(&env, &["cert", "list", "--thing", "someone-else", "--json"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");

    // Once only.
    let csr2 = csr(&env, "c2", "chip-0001");
    let (code, body) = enroll("", &csr2);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("already_enrolled"), "{body}");
    let batch_v = json(&env, &["batch", "show", &b, "--json"]);
    assert_eq!(batch_v["issued"], 1, "{batch_v}");

    // Turned off again: refused.
    env.ok(&["ca", "update", "vendor", "--est-bootstrap", "false"]);
    let (_, chip2, chip2_key) = vendor_chip(&env, "chip-0002");
    let c = client(&chip2, &chip2_key);
    let (code, _) = est_post(&root, &format!("{est}/simpleenroll"), &csr2, &strs(&c));
    assert_eq!(code, 401);
}

#[test]
fn vendor_chip_is_a_credential_only_when_opted_in_sqlite() {
    vendor_chip_is_a_credential_only_when_opted_in(sqlite_env());
}

#[test]
fn vendor_chip_is_a_credential_only_when_opted_in_postgres() {
    if let Some(env) = postgres_env("trust_bootstrap") {
        vendor_chip_is_a_credential_only_when_opted_in(env);
    }
}

/// Hole 5: each `simplereenroll` minted another ACTIVE certificate, and
/// earlier replacements lost their rotation and never retired.
fn reenroll_keeps_one_pending_rotation(env: Env) {
    env.ok(&["init", "--org", "Trust Co"]);
    let b = batch(&env, "10");
    let enroll = token(&env, "line-1", "enroll", Some(&b));
    let root = root_pem(&env);
    let server = env.serve(&["--rate-limit", "0"]);
    let est = format!("https://localhost:{}/.well-known/est", server.port);
    let auth = format!("line-1:{enroll}");
    let first = csr(&env, "r0", "rot-0001");
    let (code, body) = est_post(
        &root,
        &format!("{est}/simpleenroll"),
        &first,
        &["-u", &auth],
    );
    assert_eq!(code, 200, "{body}");
    let old = p7_to_pem(&env, &body, "r0");
    let old_client = client(&old, &env.path("r0.key"));

    let mut replacements = Vec::new();
    for round in 1..=3 {
        let next = csr(&env, &format!("r{round}"), "rot-0001");
        let (code, body) = est_post(
            &root,
            &format!("{est}/simplereenroll"),
            &next,
            &strs(&old_client),
        );
        assert_eq!(code, 200, "round {round}: {body}");
        replacements.push(cert_id(&p7_to_pem(&env, &body, &format!("r{round}"))));
    }
    let old_id = cert_id(&old);
    assert_eq!(status_of(&env, &old_id), "ACTIVE", "inside the overlap");
    assert_eq!(status_of(&env, &replacements[0]), "REVOKED");
    assert_eq!(status_of(&env, &replacements[1]), "REVOKED");
    assert_eq!(status_of(&env, &replacements[2]), "ACTIVE");
    let shown = json(&env, &["cert", "show", &replacements[0], "--json"]);
    assert_eq!(shown["revocationReason"], "superseded", "{shown}");
    let live: Vec<serde_json::Value> =
        json(&env, &["cert", "list", "--thing", "rot-0001", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["status"] == "ACTIVE")
            .collect();
    assert_eq!(
        live.len(),
        2,
        "the old certificate and one replacement: {live:?}"
    );

    // The replacement renews: its predecessor retires at once.
    let newest = env.path("r3.pem");
    let newest_client = client(&newest, &env.path("r3.key"));
    let again = csr(&env, "r4", "rot-0001");
    let (code, body) = est_post(
        &root,
        &format!("{est}/simplereenroll"),
        &again,
        &strs(&newest_client),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(status_of(&env, &old_id), "INACTIVE");
}

#[test]
fn reenroll_keeps_one_pending_rotation_sqlite() {
    reenroll_keeps_one_pending_rotation(sqlite_env());
}

#[test]
fn reenroll_keeps_one_pending_rotation_postgres() {
    if let Some(env) = postgres_env("trust_rotation") {
        reenroll_keeps_one_pending_rotation(env);
    }
}

/// Hole 3, upgrade: a registry whose things carry `role` attributes gets
/// them converted into grants once, with a warning; afterwards attributes
/// confer nothing.
#[test]
fn role_attributes_are_converted_into_grants_once() {
    let env = Env::new();
    env.ok(&["init", "--org", "Trust Co"]);
    let (_, _, ops_id) = identity(&env, "ops-console");
    env.ok(&[
        "thing",
        "update",
        "ops-console",
        "--attribute",
        "role=operator",
    ]);
    // As a registry from before grants: the conversion has not run.
    let db = env.data().join("registry.db");
    let (ok, text) = run(Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM conversions"));
    assert!(ok, "{text}");
    let out = env
        .idmint(&["grant", "list", "--json"])
        .output()
        .expect("idmint");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no longer confers access") && stderr.contains("ops-console"),
        "{stderr}"
    );
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {stderr:?}"
    );
    let grants: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(grants[0]["principal"], format!("cert:{ops_id}"), "{grants}");
    assert_eq!(grants[0]["role"], "operator");
    let audit = env.ok(&["audit", "verify"]);
    assert!(audit.contains("intact"), "{audit}");

    // Once: a role attribute set now does nothing and warns nothing.
    let (_, _, _) = identity(&env, "late");
    env.ok(&["thing", "update", "late", "--attribute", "role=admin"]);
    let out = env
        .idmint(&["grant", "list", "--json"])
        .output()
        .expect("idmint");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("no longer confers"));
    let grants: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(grants.as_array().map(Vec::len), Some(1), "{grants}");
}
