//! End-to-end tests of the core commands, driving the real binary the way a
//! user would, with openssl and rustls-webpki checking what it emits.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{assert_openssl_verifies, openssl, openssl_csr, softhsm_token, Env};

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    let text = std::fs::read(path).unwrap();
    pem::parse(text).unwrap().into_contents()
}

#[test]
fn init_issue_verify_with_openssl_and_webpki() {
    let env = Env::init(&[]);
    let cas = env.json(&["ca", "list", "--json"]);
    let names: Vec<&str> = cas
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["root", "issuing"]);
    let (root, issuing) = env.ca_files();

    let csr = openssl_csr(env.dir.path(), "dev-1", P256);
    let out = env.path("dev-1.pem");
    let issued = env.json(&[
        "cert",
        "issue",
        "--csr",
        csr.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(issued["thing"], "dev-1");
    assert_openssl_verifies(&root, &issuing, &out);

    // The certificate carries the CSR's key, the profile's subject and RFC 5280 extensions.
    let (_, pubkey) = openssl(&["x509", "-in", out.to_str().unwrap(), "-noout", "-pubkey"]);
    let (_, keypub) = openssl(&[
        "pkey",
        "-in",
        env.path("dev-1.key").to_str().unwrap(),
        "-pubout",
    ]);
    assert_eq!(pubkey, keypub);
    let (_, text) = openssl(&["x509", "-in", out.to_str().unwrap(), "-noout", "-text"]);
    for needle in [
        "Subject: CN = dev-1, O = Test Co",
        "X509v3 Key Usage: critical",
        "TLS Web Client Authentication",
        "CA:FALSE",
        "X509v3 Subject Key Identifier",
        "X509v3 Authority Key Identifier",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let (_, serial) = openssl(&["x509", "-in", out.to_str().unwrap(), "-noout", "-serial"]);
    let serial = serial.trim().trim_start_matches("serial=");
    assert_eq!(serial.len(), 32, "16-byte serial: {serial}");
    assert!(
        u8::from_str_radix(&serial[..2], 16).unwrap() < 0x80,
        "serial is positive"
    );

    // The id is the SHA-256 of the DER, and the registry agrees.
    let der = pem_der(&out);
    let id = idmint_pki::certificate_id(&der);
    assert_eq!(issued["id"], id.as_str());
    let listed = env.json(&["cert", "list", "--json", "--thing", "dev-1"]);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"], "ACTIVE");
    for field in ["serial", "ca", "notAfter", "notBefore", "thing"] {
        assert!(listed[0].get(field).is_some(), "field {field} missing");
    }

    // rustls-webpki agrees with openssl.
    idmint_pki::verify_chain(&der, &[&pem_der(&issuing)], &[&pem_der(&root)]).unwrap();
}

#[test]
fn every_ca_key_type_issues_verifiable_certificates() {
    for key_type in ["p384", "ed25519", "rsa2048"] {
        let env = Env::init(&["--key-type", key_type]);
        let (root, issuing) = env.ca_files();
        let csr = openssl_csr(env.dir.path(), "dev", P256);
        let out = env.path("dev.pem");
        env.ok(&[
            "cert",
            "issue",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_openssl_verifies(&root, &issuing, &out);
        idmint_pki::verify_chain(&pem_der(&out), &[&pem_der(&issuing)], &[&pem_der(&root)])
            .unwrap_or_else(|e| panic!("{key_type}: {e}"));
    }
}

#[test]
fn device_key_types_from_csrs() {
    let env = Env::init(&[]);
    let (root, issuing) = env.ca_files();
    for (name, opts) in [
        (
            "p384-dev",
            &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"][..],
        ),
        ("ed-dev", &["-newkey", "ed25519"][..]),
        ("rsa-dev", &["-newkey", "rsa:2048"][..]),
    ] {
        let csr = openssl_csr(env.dir.path(), name, opts);
        let out = env.path(&format!("{name}.pem"));
        env.ok(&[
            "cert",
            "issue",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_openssl_verifies(&root, &issuing, &out);
    }
}

#[test]
fn bad_inputs_fail_cleanly_and_write_nothing() {
    let env = Env::init(&[]);
    let good = openssl_csr(env.dir.path(), "good", P256);
    let before = env.counts();

    let junk = env.path("junk.csr");
    std::fs::write(
        &junk,
        (0..300u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let e = env.fails(&["cert", "issue", "--csr", junk.to_str().unwrap()]);
    assert!(
        e.contains("certificate signing request") || e.contains("PEM"),
        "{e}"
    );

    let text = std::fs::read_to_string(&good).unwrap();
    let truncated = env.path("truncated.csr");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    env.fails(&["cert", "issue", "--csr", truncated.to_str().unwrap()]);

    let (root, _) = env.ca_files();
    let e = env.fails(&["cert", "issue", "--csr", root.to_str().unwrap()]);
    assert!(e.contains("CERTIFICATE REQUEST"), "wrong-type PEM: {e}");

    // Flip one byte of the signature: proof of possession fails.
    let mut der = pem::parse(&text).unwrap().into_contents();
    let last = der.len() - 5;
    der[last] ^= 0x55;
    let forged = env.path("forged.csr");
    std::fs::write(&forged, der).unwrap();
    let e = env.fails(&["cert", "issue", "--csr", forged.to_str().unwrap()]);
    assert!(e.contains("signature"), "{e}");

    let k1 = openssl_csr(
        env.dir.path(),
        "k1",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    );
    let e = env.fails(&["cert", "issue", "--csr", k1.to_str().unwrap()]);
    assert!(e.contains("unsupported key type"), "{e}");

    let g = good.to_str().unwrap();
    let e = env.fails(&["cert", "issue", "--csr", g, "--profile", "nope"]);
    assert!(e.contains("unknown profile"), "{e}");
    let e = env.fails(&["cert", "issue", "--csr", g, "--ca", "nope"]);
    assert!(e.contains("not found"), "{e}");
    let e = env.fails(&[
        "cert",
        "issue",
        "--csr",
        g,
        "--ca",
        "root",
        "--thing",
        "bad\u{1b}[31mname",
    ]);
    // Refused by the one thing-name rule, and printed escaped, never raw.
    assert!(
        e.contains("not a valid thing name") && e.contains("u{1b}") && !e.contains('\u{1b}'),
        "{e}"
    );
    let e = env.fails(&[
        "cert",
        "issue",
        "--csr",
        env.path("missing.csr").to_str().unwrap(),
    ]);
    assert!(e.contains("missing.csr"), "{e}");

    assert_eq!(
        env.counts(),
        before,
        "a failed command changed the registry"
    );
}

#[test]
fn server_side_keys_single_and_bulk() {
    let env = Env::init(&[]);
    let (root, issuing) = env.ca_files();
    env.ok(&["cert", "new", "--thing", "lamp-1"]);
    let key = env.path("lamp-1.key.pem");
    let cert = env.path("lamp-1.cert.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_openssl_verifies(&root, &issuing, &cert);
    let (_, a) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    let (_, b) = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert_eq!(a, b);
    // The key is written once and never overwritten.
    let e = env.fails(&["cert", "new", "--thing", "lamp-1"]);
    assert!(e.contains("already exists"), "{e}");

    let out = env.path("bulk");
    env.ok(&[
        "cert",
        "new",
        "--count",
        "120",
        "--thing-prefix",
        "node-",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    let certs = env.json(&["cert", "list", "--json"]);
    assert_eq!(certs.as_array().unwrap().len(), 121);
    let things = env.json(&["thing", "list", "--json"]);
    assert_eq!(things.as_array().unwrap().len(), 121);
    for i in [1, 60, 120] {
        let c = out.join(format!("node-{i:06}.cert.pem"));
        let k = out.join(format!("node-{i:06}.key.pem"));
        assert_eq!(
            std::fs::metadata(&k).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (ok, text) = openssl(&[
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            out.join("ca-chain.pem").to_str().unwrap(),
            c.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 241);
    let audit = env.ok(&["audit", "verify"]);
    assert!(audit.contains("intact"), "{audit}");
}

#[test]
fn revoke_crl_and_status_changes() {
    let env = Env::init(&[]);
    let (root, issuing) = env.ca_files();
    let csr = openssl_csr(env.dir.path(), "dev-r", P256);
    let out = env.path("dev-r.pem");
    let issued = env.json(&[
        "cert",
        "issue",
        "--csr",
        csr.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let id = issued["id"].as_str().unwrap().to_string();

    env.ok(&["cert", "deactivate", &id]);
    assert_eq!(
        env.json(&["cert", "show", &id, "--json"])["status"],
        "INACTIVE"
    );
    env.ok(&["cert", "activate", &id]);
    env.ok(&["cert", "revoke", &id, "--reason", "keyCompromise"]);
    let shown = env.json(&["cert", "show", &id, "--json"]);
    assert_eq!(shown["status"], "REVOKED");
    assert_eq!(shown["revocationReason"], "keyCompromise");
    let e = env.fails(&["cert", "activate", &id]);
    assert!(e.contains("REVOKED"), "{e}");
    let bad_reason = env.run(&["cert", "revoke", &id, "--reason", "becauseISaidSo"]);
    assert!(!bad_reason.status.success());
    assert!(String::from_utf8_lossy(&bad_reason.stderr).contains("unknown revocation reason"));

    let crl = env.path("crl.pem");
    env.ok(&["crl", "--ca", "issuing", "--out", crl.to_str().unwrap()]);
    let both = env.path("both.pem");
    std::fs::write(
        &both,
        [
            std::fs::read(&root).unwrap(),
            std::fs::read(&issuing).unwrap(),
        ]
        .concat(),
    )
    .unwrap();
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        crl.to_str().unwrap(),
        "-CAfile",
        both.to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(ok && text.contains("verify OK"), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    let serial = issued["serial"].as_str().unwrap().to_uppercase();
    assert!(
        text.replace([':', ' '], "")
            .to_uppercase()
            .contains(&serial),
        "serial {serial} not in\n{text}"
    );
    // openssl refuses the revoked certificate when checking the CRL.
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        both.to_str().unwrap(),
        "-CRLfile",
        crl.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(!ok && text.contains("revoked"), "{text}");
    assert!(env.ok(&["crl"]).starts_with("-----BEGIN X509 CRL-----"));
}

#[test]
fn audit_verify_detects_a_deleted_row() {
    let env = Env::init(&[]);
    env.ok(&["cert", "new", "--thing", "a"]);
    env.ok(&["cert", "new", "--thing", "b"]);
    let db = env.data().join("registry.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM audit_log WHERE seq = 3")
        .output()
        .expect("sqlite3 installed");
    assert!(out.status.success());
    let bad = env.run(&["audit", "verify"]);
    assert!(!bad.status.success());
    let e = String::from_utf8_lossy(&bad.stderr);
    assert!(e.contains("record 4") || e.contains("record 3"), "{e}");
}

#[test]
fn additional_issuing_ca_and_second_init_refused() {
    let env = Env::init(&[]);
    env.ok(&[
        "ca",
        "create-issuing",
        "--name",
        "factory-a",
        "--valid-days",
        "365",
    ]);
    let shown = env.json(&["ca", "show", "factory-a", "--json"]);
    assert_eq!(shown["parent"], "root");
    let (root, _) = env.ca_files();
    let fa = env.path("fa.pem");
    std::fs::write(&fa, env.ok(&["ca", "show", "factory-a", "--pem"])).unwrap();
    env.ok(&["cert", "new", "--thing", "t1", "--ca", "factory-a"]);
    assert_openssl_verifies(&root, &fa, &env.path("t1.cert.pem"));
    let (_, text) = openssl(&["x509", "-in", fa.to_str().unwrap(), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE, pathlen:0"), "{text}");
    let e = env.fails(&["init"]);
    assert!(e.contains("already initialised"), "{e}");
    let e = env.fails(&["ca", "create-issuing", "--name", "factory-a"]);
    assert!(e.contains("already exists"), "{e}");
}

/// An issuing CA whose key is generated in, and never leaves, a PKCS#11
/// token (SoftHSM2): what it signs verifies with openssl; without the
/// token's module configured it cannot sign, and the error says what to set.
#[test]
fn issuing_ca_key_in_a_pkcs11_token() {
    let env = Env::init(&[]);
    let Some(vars) = softhsm_token(&env, "ca-token") else {
        return;
    };
    let with_token = |args: &[&str]| {
        let mut cmd = env.cmd();
        cmd.args(args);
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        cmd.output().expect("run idmint")
    };
    let e = env.fails(&[
        "ca",
        "create-issuing",
        "--name",
        "line-a",
        "--pkcs11-key",
        "pkcs11:token=ca-token;object=line-a",
    ]);
    assert!(e.contains("IDMINT_PKCS11_MODULE"), "{e}");
    let out = with_token(&[
        "ca",
        "create-issuing",
        "--name",
        "line-b",
        "--key-type",
        "rsa2048",
        "--pkcs11-key",
        "pkcs11:token=ca-token;object=line-b",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("P-256"));

    let out = with_token(&[
        "ca",
        "create-issuing",
        "--name",
        "line-a",
        "--pkcs11-key",
        "pkcs11:token=ca-token;object=line-a",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let ca: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(ca["name"], "line-a");
    assert_eq!(ca["keyType"], "p256", "{ca}");
    let out = with_token(&["cert", "new", "--thing", "hsm-1", "--ca", "line-a"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (root, _) = env.ca_files();
    let line_a = env.path("line-a.pem");
    std::fs::write(&line_a, env.ok(&["ca", "show", "line-a", "--pem"])).unwrap();
    assert_openssl_verifies(&root, &line_a, &env.path("hsm-1.cert.pem"));

    let e = env.fails(&["cert", "new", "--thing", "hsm-2", "--ca", "line-a"]);
    assert!(e.contains("IDMINT_PKCS11_MODULE"), "{e}");
    assert!(!env.path("hsm-2.key.pem").exists());
}

/// The CA keys are PKCS#8 PBES2/scrypt that openssl opens with the
/// passphrase (so a key can leave idmint for an HSM or another tool).
#[test]
fn ca_keys_are_encrypted_pkcs8_that_openssl_decrypts() {
    let env = Env::init(&[]);
    let db = env.data().join("registry.db");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT key_ref FROM cas WHERE name = 'issuing'")
        .output()
        .expect("sqlite3");
    let encrypted = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{encrypted}"
    );
    let enc = env.path("issuing.enc.pem");
    std::fs::write(&enc, &encrypted).unwrap();
    let key = env.path("issuing.key");
    let (ok, text) = openssl(&[
        "pkcs8",
        "-in",
        enc.to_str().unwrap(),
        "-passin",
        "pass:test-passphrase",
        "-out",
        key.to_str().unwrap(),
    ]);
    assert!(ok, "openssl pkcs8: {text}");
    let (_, issuing) = env.ca_files();
    let (_, from_key) = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    let (_, from_cert) = openssl(&[
        "x509",
        "-in",
        issuing.to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    assert_eq!(from_key, from_cert);
    let (ok, _) = openssl(&[
        "pkcs8",
        "-in",
        enc.to_str().unwrap(),
        "-passin",
        "pass:wrong",
        "-out",
        env.path("wrong.key").to_str().unwrap(),
    ]);
    assert!(!ok, "a wrong passphrase opened the key");
}

#[test]
fn generated_passphrase_file_is_private_and_used() {
    let env = Env::new();
    let out = env
        .cmd()
        .env_remove("IDMINT_CA_PASSPHRASE")
        .args(["init"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning"));
    let file = env.data().join("ca-passphrase");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let out = env
        .cmd()
        .env_remove("IDMINT_CA_PASSPHRASE")
        .args(["cert", "new", "--thing", "x"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong passphrase is a clear error, not a crash.
    let out = env
        .cmd()
        .env("IDMINT_CA_PASSPHRASE", "wrong")
        .args(["cert", "new", "--thing", "y"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("passphrase"));
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let env = Env::init(&[]);
    let dir = env.path("bulk");
    env.ok(&[
        "cert",
        "new",
        "--count",
        "300",
        "--thing-prefix",
        "pipe-",
        "--out-dir",
        dir.to_str().unwrap(),
    ]);
    let lists: [&[&str]; 3] = [
        &["cert", "list", "--json"],
        &["thing", "list", "--json"],
        &["cert", "list"],
    ];
    for args in lists {
        let mut child = env
            .cmd()
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut first = [0u8; 16];
        std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut first)
            .expect("read");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {stderr}");
    }
}
