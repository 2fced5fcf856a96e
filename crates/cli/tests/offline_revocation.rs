//! Revocation of certificates a factory issued offline, as relying parties
//! meet it: `idmint batch authorize` has the batch CA sign a delegated OCSP
//! responder and a CRL signer for the maker before its key leaves; a
//! factory station (no maker data, an age identity) issues offline; the
//! maker reconciles, revokes, and `idmint serve` answers `openssl ocsp`
//! (POST and GET) and serves a CRL that `openssl verify -crl_check
//! -extended_crl` (and `-crl_check_all`) applies; a revoked batch CA fails
//! `-crl_check_all` through its parent's CRL. On SQLite and PostgreSQL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{base64_url_path, cert_id, postgres_env, run, Env};

/// The maker's files relying parties use.
struct Chain {
    root: PathBuf,
    offline: PathBuf,
    batch_ca: PathBuf,
    crl_signer: PathBuf,
    /// Root and offline CA: what OCSP responses verify against.
    trust: PathBuf,
}

fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let path = env.path(name);
    std::fs::write(&path, text).expect("write");
    path
}

/// `batch authorize` for two devices to a fresh age identity; returns
/// (batch id, bundle, identity file).
fn authorize(env: &Env) -> (String, PathBuf, PathBuf) {
    let identity = age::x25519::Identity::generate();
    let identity_file = write(
        env,
        "factory.agekey",
        &format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    );
    let out = env.path("auth.json");
    let report: serde_json::Value = serde_json::from_str(&env.ok(&[
        "batch",
        "authorize",
        "--json",
        "--out",
        out.to_str().expect("path"),
        "--factory",
        "acme",
        "--product",
        "widget",
        "--count",
        "2",
        "--valid-days",
        "14",
        "--encrypt-to",
        &identity.to_public().to_string(),
    ]))
    .expect("JSON");
    let batch = report["batch"].as_str().expect("batch").to_string();
    (batch, out, identity_file)
}

/// The factory: two simulated devices provisioned by an offline station
/// that has no maker data directory; returns the devices' certificate files.
fn run_factory(auth: &Path, identity: &Path, log: &Path) -> (common::Env, Vec<PathBuf>) {
    let factory = common::Env::new();
    let d1 = common::devsim(&factory, "d1", &[]);
    let d2 = common::devsim(&factory, "d2", &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_idmint"))
        .env("IDMINT_DATA", factory.path("no-maker-data-here"))
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_STORE")
        .env_remove("IDMINT_PKCS11_MODULE")
        .args(["station", "run", "--json", "--timeout-ms", "1500"])
        .arg("--authorization")
        .arg(auth)
        .arg("--log")
        .arg(log)
        .arg("--identity")
        .arg(identity)
        .args(["--device", &d1.addr, "--device", &d2.addr])
        .output()
        .expect("station");
    assert!(
        out.status.success(),
        "station: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let certs = [&d1, &d2]
        .iter()
        .map(|d| d.state.join("cert.pem"))
        .collect();
    (factory, certs)
}

fn chain(env: &Env, batch_ca: &str) -> Chain {
    let root_pem = env.ok(&["ca", "show", "root", "--pem"]);
    let offline_pem = env.ok(&["ca", "show", "offline", "--pem"]);
    Chain {
        root: write(env, "root.pem", &root_pem),
        offline: write(env, "offline.pem", &offline_pem),
        batch_ca: write(
            env,
            "batch-ca.pem",
            &env.ok(&["ca", "show", batch_ca, "--pem"]),
        ),
        crl_signer: write(
            env,
            "crl-signer.pem",
            &env.ok(&["ca", "show", batch_ca, "--crl-signer"]),
        ),
        trust: write(env, "trust.pem", &format!("{root_pem}{offline_pem}")),
    }
}

/// `openssl verify` of `cert` with CRL checking `flag`, the given CRL
/// files, and the batch chain (CRL signer included) as untrusted.
fn verify(c: &Chain, flag: &str, crls: &[&Path], cert: &Path) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", flag, "-extended_crl", "-CAfile"])
        .arg(&c.root);
    for untrusted in [&c.offline, &c.batch_ca, &c.crl_signer] {
        cmd.arg("-untrusted").arg(untrusted);
    }
    for crl in crls {
        cmd.arg("-CRLfile").arg(crl);
    }
    run(cmd.arg(cert))
}

/// GET `url` with curl into `out` (DER); returns it as PEM, `<out>.pem`.
fn fetch_crl(root: &Path, url: &str, out: &Path) -> PathBuf {
    let (ok, text) = run(Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "--cacert"])
        .arg(root)
        .arg("-o")
        .arg(out)
        .arg(url));
    assert!(
        ok && text.trim() == "200",
        "GET {url}: {text} {}",
        String::from_utf8_lossy(&std::fs::read(out).unwrap_or_default())
    );
    let pem = PathBuf::from(format!("{}.pem", out.display()));
    let (ok, text) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-in"])
        .arg(out)
        .arg("-out")
        .arg(&pem));
    assert!(ok, "{text}");
    pem
}

fn crl_text(crl: &Path) -> String {
    let (ok, text) = run(Command::new("openssl")
        .args(["crl", "-noout", "-text", "-in"])
        .arg(crl));
    assert!(ok, "{text}");
    text
}

/// The certificate's serial as `openssl crl -text` prints it.
fn serial(cert: &Path) -> String {
    let (ok, text) = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(cert));
    assert!(ok, "{text}");
    text.trim()
        .trim_start_matches("serial=")
        .trim_start_matches("00")
        .to_string()
}

/// `openssl ocsp` POST for `cert` of the batch CA, verified against the
/// maker's chain; returns its output.
fn ocsp_post(c: &Chain, base: &str, cert: &Path) -> String {
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-resp_text", "-issuer"])
        .arg(&c.batch_ca)
        .arg("-cert")
        .arg(cert)
        .args(["-url", &format!("{base}/ocsp"), "-CAfile"])
        .arg(&c.trust)
        .arg("-verify_other")
        .arg(&c.batch_ca));
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

/// The same question over GET (RFC 5019 §5), the response verified by
/// `openssl ocsp -respin`.
fn ocsp_get(env: &Env, c: &Chain, base: &str, cert: &Path, name: &str) -> String {
    let request = env.path(&format!("{name}.req"));
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(&c.batch_ca)
        .arg("-cert")
        .arg(cert)
        .arg("-reqout")
        .arg(&request));
    assert!(ok, "{text}");
    let der = std::fs::read(&request).expect("request");
    let b64 = base64_url_path(&der);
    let response = env.path(&format!("{name}.resp"));
    let (ok, text) = run(Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&c.root)
        .arg("-o")
        .arg(&response)
        .arg(format!("{base}/ocsp/{b64}")));
    assert!(ok, "GET: {text}");
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-respin"])
        .arg(&response)
        .arg("-issuer")
        .arg(&c.batch_ca)
        .arg("-cert")
        .arg(cert)
        .arg("-CAfile")
        .arg(&c.trust)
        .arg("-verify_other")
        .arg(&c.batch_ca));
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

fn offline_certificates_are_revocable(env: Env) {
    env.ok(&["init", "--org", "Offline Revocation Co"]);
    let (batch, auth, identity) = authorize(&env);
    let batch_ca = format!("{batch}-ca");

    // Both certificates the batch CA signed for the maker are registered and
    // audited; the keys are not in the bundle the factory gets.
    let certs = env.ok(&["cert", "list", "--json"]);
    assert!(certs.contains("OCSP Responder"), "{certs}");
    let audit = env.ok(&["audit", "list", "--json"]);
    for action in [
        "ocsp.responder_issued",
        "crl.signer_issued",
        "offline.revocation_signers",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    let bundle = std::fs::read_to_string(&auth).expect("bundle");
    assert!(
        !bundle.contains("PRIVATE KEY"),
        "plaintext key in the bundle"
    );

    let log = env.path("issuance.log");
    let (_factory, devices) = run_factory(&auth, &identity, &log);
    let report = env.ok(&["batch", "reconcile", log.to_str().expect("path"), "--json"]);
    assert!(
        report.contains("\"accepted\": true") || report.contains("\"accepted\":true"),
        "{report}"
    );
    let (revoked, good) = (&devices[0], &devices[1]);
    env.ok(&[
        "cert",
        "revoke",
        &cert_id(revoked),
        "--reason",
        "keyCompromise",
    ]);

    let c = chain(&env, &batch_ca);
    let server = env.serve(&["--rate-limit", "0"]);
    let base = format!("https://localhost:{}", server.port);

    // OCSP, POST and GET: the stored delegated responder answers, and the
    // response verifies against root -> offline CA -> batch CA.
    let text = ocsp_post(&c, &base, revoked);
    assert!(text.contains(": revoked"), "{text}");
    assert!(text.contains("Reason: keyCompromise"), "{text}");
    assert!(text.contains("OCSP No Check"), "{text}");
    assert!(
        text.contains(&format!("Batch {batch} CA OCSP Responder")),
        "{text}"
    );
    let text = ocsp_post(&c, &base, good);
    assert!(text.contains(": good"), "{text}");
    let text = ocsp_get(&env, &c, &base, revoked, "revoked-get");
    assert!(text.contains(": revoked"), "{text}");
    let text = ocsp_get(&env, &c, &base, good, "good-get");
    assert!(text.contains(": good"), "{text}");

    // The batch CA's CRL, as served and as `idmint crl` gives it: signed by
    // the CRL signer in the batch CA's name, listing the revoked one.
    let served = fetch_crl(
        &c.root,
        &format!("{base}/crl/{batch_ca}.crl"),
        &env.path("batch.crl"),
    );
    let text = crl_text(&served);
    assert!(text.contains(&serial(revoked)), "{text}");
    assert!(!text.contains(&serial(good)), "{text}");
    assert!(text.contains(&format!("Batch {batch} CA")), "{text}");
    let cli_crl = env.path("batch-cli.crl.pem");
    env.ok(&[
        "crl",
        "--ca",
        &batch_ca,
        "--out",
        cli_crl.to_str().expect("path"),
    ]);
    assert!(crl_text(&cli_crl).contains(&serial(revoked)));

    let (ok, text) = verify(&c, "-crl_check", &[&served], revoked);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = verify(&c, "-crl_check", &[&served], good);
    assert!(ok, "{text}");
    // Without -extended_crl openssl does not look for the CRL signer.
    let (ok, _) = run(Command::new("openssl")
        .args(["verify", "-crl_check", "-CAfile"])
        .arg(&c.root)
        .arg("-untrusted")
        .arg(&c.offline)
        .arg("-untrusted")
        .arg(&c.batch_ca)
        .arg("-CRLfile")
        .arg(&served)
        .arg(good));
    assert!(!ok);

    // Every CRL of the chain (-crl_check_all): the root's, the offline
    // CA's, the batch CA's, and the one covering the CRL signer itself.
    let root_crl = fetch_crl(
        &c.root,
        &format!("{base}/crl/root.crl"),
        &env.path("root.crl"),
    );
    let offline_crl = fetch_crl(
        &c.root,
        &format!("{base}/crl/offline.crl"),
        &env.path("offline.crl"),
    );
    let signer_crl = fetch_crl(
        &c.root,
        &format!("{base}/crl/{batch_ca}-signer.crl"),
        &env.path("signer.crl"),
    );
    let cli_signer_crl = env.ok(&["crl", "--ca", &format!("{batch_ca}-signer")]);
    assert_eq!(
        cli_signer_crl,
        std::fs::read_to_string(&signer_crl).expect("signer CRL")
    );
    let all = [
        root_crl.as_path(),
        offline_crl.as_path(),
        served.as_path(),
        signer_crl.as_path(),
    ];
    let (ok, text) = verify(&c, "-crl_check_all", &all, good);
    assert!(ok, "{text}");
    let (ok, text) = verify(&c, "-crl_check_all", &all, revoked);
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    // The batch CA revoked: on the offline CA's CRL, and a certificate
    // under it fails -crl_check_all; OCSP on the offline CA says revoked.
    env.ok(&["ca", "revoke", &batch_ca, "--reason", "cACompromise"]);
    let offline_crl = fetch_crl(
        &c.root,
        &format!("{base}/crl/offline.crl"),
        &env.path("offline-after.crl"),
    );
    assert!(crl_text(&offline_crl).contains("CA Compromise"));
    let all = [
        root_crl.as_path(),
        offline_crl.as_path(),
        served.as_path(),
        signer_crl.as_path(),
    ];
    let (ok, text) = verify(&c, "-crl_check_all", &all, good);
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&c.offline)
        .arg("-cert")
        .arg(&c.batch_ca)
        .args(["-url", &format!("{base}/ocsp"), "-CAfile"])
        .arg(&c.trust));
    assert!(ok && text.contains(": revoked"), "{text}");
    env.ok(&["audit", "verify"]);
}

#[test]
fn offline_certificates_are_revocable_on_sqlite() {
    offline_certificates_are_revocable(Env::new());
}

#[test]
fn offline_certificates_are_revocable_on_postgres() {
    if let Some(env) = postgres_env("offline_revocation") {
        offline_certificates_are_revocable(env);
    }
}

/// A batch authorized before batch CAs signed revocation signers (its row
/// removed here, as such registries have none): OCSP answers
/// `unauthorized` (403) and its CRL a clear error, as before; nothing
/// crashes.
#[test]
fn a_batch_without_revocation_signers_keeps_the_old_answers() {
    let env = Env::new();
    env.ok(&["init", "--org", "Old Batch Co"]);
    let (batch, _auth, _identity) = authorize(&env);
    let batch_ca = format!("{batch}-ca");
    let db = env.data().join("registry.db");
    let (ok, text) = run(Command::new("sqlite3")
        .arg(&db)
        .arg("DELETE FROM offline_revocation_signers"));
    assert!(ok, "{text}");
    let out = env
        .idmint(&["crl", "--ca", &batch_ca])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("its key is at the factory"), "{err}");
    let out = env
        .idmint(&["ca", "show", &batch_ca, "--crl-signer"])
        .output()
        .expect("run");
    assert!(!out.status.success());

    let root = write(&env, "root.pem", &env.ok(&["ca", "show", "root", "--pem"]));
    let batch_pem = write(
        &env,
        "batch-ca.pem",
        &env.ok(&["ca", "show", &batch_ca, "--pem"]),
    );
    let server = env.serve(&["--rate-limit", "0"]);
    let base = format!("https://localhost:{}", server.port);
    let (ok, text) = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&root)
        .arg(format!("{base}/crl/{batch_ca}.crl")));
    assert!(ok && text.trim() == "400", "{text}");
    let request = env.path("old.req");
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(&batch_pem)
        .args(["-serial", "0x1234", "-reqout"])
        .arg(&request));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&root)
        .args([
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
        ])
        .arg(format!("@{}", request.display()))
        .arg(format!("{base}/ocsp")));
    assert!(ok && text.trim() == "403", "{text}");
}

/// With `[server] public_url` at the maker, the certificates a factory
/// station issues offline point at the batch CA's CRL and the maker's OCSP
/// responder, as those issued online point at theirs: the URLs travel in
/// the signed limits of the authorization.
#[test]
fn offline_certificates_point_at_the_makers_crl_and_responder() {
    let env = Env::new();
    env.ok(&["init", "--org", "Offline URL Co"]);
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    std::fs::write(
        &config,
        text.replace(
            "[server]\n",
            "[server]\npublic_url = \"https://pki.example.com\"\n",
        ),
    )
    .expect("write");
    let (batch, auth, identity) = authorize(&env);
    let bundle = std::fs::read_to_string(&auth).expect("bundle");
    assert!(bundle.contains("crlUrl"), "the limits carry the URLs");
    let log = env.path("issuance.log");
    let (_factory, devices) = run_factory(&auth, &identity, &log);
    assert!(!devices.is_empty());
    for device in &devices {
        let (ok, text) = run(Command::new("openssl")
            .args(["x509", "-noout", "-text", "-in"])
            .arg(device));
        assert!(ok, "{text}");
        assert!(
            text.contains(&format!("URI:https://pki.example.com/crl/{batch}-ca.crl")),
            "{text}"
        );
        let (ok, uri) = run(Command::new("openssl")
            .args(["x509", "-noout", "-ocsp_uri", "-in"])
            .arg(device));
        assert!(ok, "{uri}");
        assert_eq!(uri.trim(), "https://pki.example.com/ocsp");
    }
    // The maker reconciles them as any offline certificates.
    let report = env.ok(&["batch", "reconcile", log.to_str().expect("path"), "--json"]);
    assert!(report.contains("\"accepted\""), "{report}");
}
