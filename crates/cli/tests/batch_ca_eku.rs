//! A factory holding an offline batch CA key cannot mint TLS server
//! certificates that devices trusting the root would accept: the batch CA
//! made by `idmint batch authorize` carries an extended key usage of
//! clientAuth only. Checked with openssl: `x509 -text` shows the EKU, a
//! serverAuth leaf signed with the (decrypted) batch CA key fails
//! `verify -purpose sslserver` against the root, while a clientAuth leaf
//! and the device certificate an offline station issues still verify as
//! clients, and the maker's reconcile accepts the factory's log.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::{devsim, openssl, Env};

fn s(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

/// Signs a fresh P-256 key's certificate for `cn` with the batch CA, with
/// `eku` (an openssl extendedKeyUsage value); returns the leaf's path.
fn sign_leaf(env: &Env, ca: &Path, ca_key: &Path, cn: &str, eku: &str) -> PathBuf {
    let (key, csr, leaf, ext) = (
        env.path(&format!("{cn}.key")),
        env.path(&format!("{cn}.csr")),
        env.path(&format!("{cn}.pem")),
        env.path(&format!("{cn}.ext")),
    );
    let (ok, text) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={cn}"),
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    assert!(ok, "openssl req: {text}");
    std::fs::write(
        &ext,
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\nsubjectAltName=DNS:{cn}\n"
        ),
    )
    .unwrap();
    let (ok, text) = openssl(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(ca),
        "-CAkey",
        &s(ca_key),
        "-set_serial",
        "4242",
        "-days",
        "7",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&leaf),
    ]);
    assert!(ok, "openssl x509 -req: {text}");
    leaf
}

fn verify(root: &Path, untrusted: &Path, leaf: &Path, purpose: &str) -> (bool, String) {
    let (ok, text) = openssl(&[
        "verify",
        "-purpose",
        purpose,
        "-CAfile",
        &s(root),
        "-untrusted",
        &s(untrusted),
        &s(leaf),
    ]);
    (ok && text.contains(": OK"), text)
}

#[test]
fn batch_ca_is_client_auth_only() {
    let env = Env::init(&[]);
    let identity = age::x25519::Identity::generate();
    let identity_file = env.path("acme.agekey");
    std::fs::write(
        &identity_file,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .unwrap();
    let recipient = identity.to_public().to_string();
    let auth = env.path("auth.json");
    let report = env.json(&[
        "batch",
        "authorize",
        "--json",
        "--out",
        &s(&auth),
        "--factory",
        "acme",
        "--product",
        "widget",
        "--count",
        "2",
        "--encrypt-to",
        &recipient,
    ]);
    let batch = report["batch"].as_str().expect("batch id").to_string();
    let bundle: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&auth).unwrap()).unwrap();

    // The batch CA says what it is for.
    let batch_ca = env.path("batch-ca.pem");
    std::fs::write(&batch_ca, bundle["batchCa"].as_str().expect("batchCa")).unwrap();
    let (ok, text) = openssl(&["x509", "-in", &s(&batch_ca), "-noout", "-text"]);
    assert!(ok, "{text}");
    let eku = text
        .lines()
        .skip_while(|l| !l.contains("X509v3 Extended Key Usage"))
        .nth(1)
        .unwrap_or_else(|| panic!("the batch CA has no extended key usage:\n{text}"));
    assert_eq!(eku.trim(), "TLS Web Client Authentication", "{text}");

    // The factory's view: the batch CA key, decrypted with its identity.
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(bundle["key"]["ciphertext"].as_str().expect("age key"))
        .expect("base64");
    let der = age::decrypt(&identity, &ciphertext).expect("age decrypt");
    let (key_der, ca_key) = (env.path("batch-ca.der"), env.path("batch-ca.key"));
    std::fs::write(&key_der, der).unwrap();
    let (ok, text) = openssl(&[
        "pkey",
        "-inform",
        "DER",
        "-in",
        &s(&key_der),
        "-out",
        &s(&ca_key),
    ]);
    assert!(ok, "openssl pkey: {text}");

    // What devices trust: the root; the chain: batch CA -> offline maker CA.
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).unwrap();
    let chain = env.path("untrusted.pem");
    std::fs::write(
        &chain,
        format!(
            "{}{}",
            std::fs::read_to_string(&batch_ca).unwrap(),
            env.ok(&["ca", "show", "offline", "--pem"])
        ),
    )
    .unwrap();

    let server = sign_leaf(&env, &batch_ca, &ca_key, "iot.example.com", "serverAuth");
    let (ok, text) = verify(&root, &chain, &server, "sslserver");
    assert!(
        !ok,
        "a server certificate minted with the batch CA key verifies for TLS servers: {text}"
    );
    let client = sign_leaf(&env, &batch_ca, &ca_key, "device-1", "clientAuth");
    let (ok, text) = verify(&root, &chain, &client, "sslclient");
    assert!(ok, "a client certificate of the batch CA: {text}");

    // The offline station at the factory issues a device certificate with
    // the batch CA; it verifies as a client and reconciles at the maker.
    let device = devsim(&env, "dev", &[]);
    let log = env.path("issuance.log");
    let out = Command::new(env!("CARGO_BIN_EXE_idmint"))
        .env("IDMINT_DATA", env.path("no-maker-data-here"))
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_STORE")
        .env_remove("IDMINT_PKCS11_MODULE")
        .current_dir(env.dir.path())
        .args(["station", "run", "--json", "--timeout-ms", "3000"])
        .arg("--authorization")
        .arg(&auth)
        .arg("--identity")
        .arg(&identity_file)
        .arg("--log")
        .arg(&log)
        .args(["--device", &device.addr])
        .output()
        .expect("offline station");
    assert!(
        out.status.success(),
        "offline station: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = device.state.join("cert.pem");
    let (ok, text) = verify(&root, &cert, &cert, "sslclient");
    assert!(ok, "the device's certificate: {text}");
    let (ok, _) = verify(&root, &cert, &cert, "sslserver");
    assert!(!ok, "the device's certificate verifies as a TLS server");
    let reconciled = env.run(&["batch", "reconcile", &s(&log), "--json"]);
    assert!(
        reconciled.status.success(),
        "reconcile: {}",
        String::from_utf8_lossy(&reconciled.stderr)
    );
    let shown = env.json(&["batch", "show", &batch, "--json"]);
    assert_eq!(shown["issued"].as_i64(), Some(1), "{shown}");
}
