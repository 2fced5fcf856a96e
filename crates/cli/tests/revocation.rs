//! Revocation as relying parties meet it, checked with openssl and curl: the
//! OCSP responder (responses signed by a delegated responder certificate
//! with OCSPSigning and ocsp-nocheck that openssl verifies against the CA,
//! GET with RFC 5019 caching headers, one signature per status change,
//! `unknown` for serials and issuers it does not know, typed failures for
//! garbage), CRLs with cRLNumber and ETag revalidation, and the CRL and
//! OCSP URLs that `[server] public_url` puts in certificates, base and delta
//! CRLs past `[server] delta_crl_after`. The registry-backed checks run on
//! SQLite and on PostgreSQL (`on_postgres`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::http::{base64_url_path, cert_id, curl, run, Env};

struct Fixture {
    env: Env,
    root: PathBuf,
    issuer: PathBuf,
    trust: PathBuf,
    device: PathBuf,
    base: String,
    _server: common::http::Server,
}

fn fixture_on(env: Env) -> Fixture {
    env.ok(&["init", "--org", "OCSP Test Co"]);
    let (root, issuer, trust) = (
        env.path("root.pem"),
        env.path("issuer.pem"),
        env.path("trust.pem"),
    );
    let root_pem = env.ok(&["ca", "show", "root", "--pem"]);
    let issuer_pem = env.ok(&["ca", "show", "issuing", "--pem"]);
    std::fs::write(&root, &root_pem).expect("root");
    std::fs::write(&issuer, &issuer_pem).expect("issuer");
    std::fs::write(&trust, format!("{root_pem}{issuer_pem}")).expect("trust");
    let device = env.path("dev.pem");
    env.ok(&[
        "cert",
        "new",
        "--thing",
        "ocsp-dev-1",
        "--out",
        device.to_str().unwrap(),
        "--out-key",
        env.path("dev.key").to_str().unwrap(),
    ]);
    let server = env.serve(&["--rate-limit", "0"]);
    let base = format!("https://localhost:{}", server.port);
    Fixture {
        env,
        root,
        issuer,
        trust,
        device,
        base,
        _server: server,
    }
}

impl Fixture {
    /// A DER OCSP request made by openssl for `what` (`-cert FILE` or
    /// `-serial N`, repeatable).
    fn request(&self, name: &str, what: &[&str]) -> PathBuf {
        let out = self.env.path(name);
        let (ok, text) = run(Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-issuer"])
            .arg(&self.issuer)
            .args(what)
            .arg("-reqout")
            .arg(&out));
        assert!(ok, "{text}");
        out
    }

    /// POSTs a request file, which must be answered 200; returns the
    /// response file.
    fn post(&self, request: &Path, name: &str) -> PathBuf {
        let (code, _) = self.post_status(request, name);
        assert_eq!(code, 200, "{}", request.display());
        self.env.path(name)
    }

    /// POSTs a request file without failing on an HTTP error: (HTTP
    /// status, response body).
    fn post_status(&self, request: &Path, name: &str) -> (u16, Vec<u8>) {
        let out = self.env.path(name);
        let (ok, code) = run(Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&self.root)
            .args([
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
            ])
            .arg(format!("@{}", request.display()))
            .arg("-o")
            .arg(&out)
            .args(["-w", "%{http_code}"])
            .arg(format!("{}/ocsp", self.base)));
        assert!(ok, "{code}");
        (
            code.trim().parse().unwrap_or(0),
            std::fs::read(&out).unwrap_or_default(),
        )
    }

    /// GETs a request (base64 in the path); returns (headers, response file).
    fn get(&self, request: &Path, name: &str) -> (String, PathBuf) {
        let der = std::fs::read(request).expect("request");
        let b64 = base64_url_path(&der);
        let (out, headers) = (self.env.path(name), self.env.path(&format!("{name}.h")));
        let (ok, text) = run(Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(&self.root)
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&out)
            .arg(format!("{}/ocsp/{b64}", self.base)));
        assert!(ok, "{text}");
        (std::fs::read_to_string(&headers).expect("headers"), out)
    }

    /// openssl's reading of a response: verified against the CA chain, with
    /// its text and the status of each certificate.
    fn read(&self, request: &Path, response: &Path) -> String {
        let (ok, text) = run(Command::new("openssl")
            .args(["ocsp", "-no_nonce", "-resp_text", "-reqin"])
            .arg(request)
            .arg("-respin")
            .arg(response)
            .arg("-CAfile")
            .arg(&self.trust)
            .arg("-issuer")
            .arg(&self.issuer));
        assert!(ok, "{text}");
        text
    }
}

fn header<'h>(headers: &'h str, name: &str) -> Option<&'h str> {
    headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn a_delegated_responder_answers_and_openssl_verifies_it() {
    a_delegated_responder_answers_and_openssl_verifies_it_on(Env::new());
}

fn a_delegated_responder_answers_and_openssl_verifies_it_on(env: Env) {
    let f = fixture_on(env);
    // openssl's own client, POST, with its default nonce: verified against
    // the CA chain through the responder certificate in the response.
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-resp_text", "-issuer"])
        .arg(&f.issuer)
        .arg("-cert")
        .arg(&f.device)
        .args(["-url", &format!("{}/ocsp", f.base), "-CAfile"])
        .arg(&f.trust));
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");
    assert!(text.contains("OCSP Signing"), "{text}");
    assert!(text.contains("OCSP No Check"), "{text}");
    assert!(text.contains("OCSP Responder"), "{text}");

    // The responder certificate is an issuance like any other: registered
    // and audited, and the audit chain is intact.
    let certs = f.env.ok(&["cert", "list", "--json"]);
    assert!(certs.contains("OCSP Responder"), "{certs}");
    let audit = f.env.ok(&["audit", "list", "--json"]);
    assert!(audit.contains("ocsp.responder_issued"), "{audit}");
    f.env.ok(&["audit", "verify"]);
}

#[test]
fn get_is_cacheable_and_a_response_is_signed_once_per_status_change() {
    get_is_cacheable_and_a_response_is_signed_once_per_status_change_on(Env::new());
}

fn get_is_cacheable_and_a_response_is_signed_once_per_status_change_on(env: Env) {
    let f = fixture_on(env);
    let request = f.request("dev.req", &["-cert", f.device.to_str().unwrap()]);
    let (headers, first) = f.get(&request, "first.resp");
    let text = f.read(&request, &first);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");
    assert!(
        header(&headers, "content-type") == Some("application/ocsp-response"),
        "{headers}"
    );
    let cache = header(&headers, "cache-control").unwrap_or_default();
    let max_age: i64 = cache
        .split(',')
        .find_map(|p| p.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    assert!((3000..=3600).contains(&max_age), "{headers}");
    assert!(
        cache.contains("public") && cache.contains("no-transform"),
        "{headers}"
    );
    for name in ["etag", "last-modified", "expires"] {
        assert!(header(&headers, name).is_some(), "no {name}: {headers}");
    }

    // Asked again (GET or POST): the very same signed bytes.
    let (again_headers, again) = f.get(&request, "again.resp");
    assert_eq!(std::fs::read(&first).ok(), std::fs::read(&again).ok());
    assert_eq!(header(&headers, "etag"), header(&again_headers, "etag"));
    let posted = f.post(&request, "posted.resp");
    assert_eq!(std::fs::read(&first).ok(), std::fs::read(&posted).ok());

    // A status change is answered at once with a new signature.
    f.env.ok(&[
        "cert",
        "revoke",
        &cert_id(&f.device),
        "--reason",
        "keyCompromise",
    ]);
    let (_, revoked) = f.get(&request, "revoked.resp");
    assert_ne!(std::fs::read(&first).ok(), std::fs::read(&revoked).ok());
    let text = f.read(&request, &revoked);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": revoked"), "{text}");
    assert!(text.contains("Revocation Reason: keyCompromise"), "{text}");
}

#[test]
fn unknown_serials_and_issuers_get_unknown_and_garbage_a_typed_failure() {
    let f = fixture_on(Env::new());
    // Our certificate and a serial we never issued, in one request: each
    // is answered.
    let request = f.request(
        "two.req",
        &[
            "-cert",
            f.device.to_str().unwrap(),
            "-serial",
            "0x0badc0ffee",
        ],
    );
    let response = f.post(&request, "two.resp");
    let text = f.read(&request, &response);
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": good"), "{text}");
    assert!(text.contains(": unknown"), "{text}");

    // A request naming only another CA's certificate: unauthorized
    // (RFC 5019 §2.2.3), not an error page.
    let other = f.env.path("other");
    std::fs::create_dir_all(&other).expect("dir");
    let (ok, text) = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=Someone Else CA", "-days", "2", "-keyout"])
        .arg(other.join("ca.key"))
        .arg("-out")
        .arg(other.join("ca.pem")));
    assert!(ok, "{text}");
    let out = f.env.path("foreign.req");
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(other.join("ca.pem"))
        .args(["-serial", "0x01", "-reqout"])
        .arg(&out));
    assert!(ok, "{text}");
    let (code, response) = f.post_status(&out, "foreign.resp");
    assert_eq!(code, 403);
    assert_eq!(response, [0x30, 0x03, 0x0a, 0x01, 0x06], "unauthorized");

    // Garbage, a truncated request and an oversized one, by POST and GET:
    // 4xx with the OCSP status saying why, never cached.
    let garbage = f.env.path("garbage.req");
    std::fs::write(&garbage, b"\x30\x82\xff\xffnot an OCSP request").expect("garbage");
    let truncated = f.env.path("truncated.req");
    let whole = std::fs::read(&request).expect("request");
    std::fs::write(&truncated, &whole[..whole.len() - 3]).expect("truncated");
    for bad in [&garbage, &truncated] {
        let (code, response) = f.post_status(bad, "bad.resp");
        assert_eq!(code, 400, "{}", bad.display());
        assert_eq!(response, [0x30, 0x03, 0x0a, 0x01, 0x01], "malformedRequest");
    }
    let oversized = f.env.path("oversized.req");
    std::fs::write(&oversized, vec![0x30; 100 * 1024]).expect("oversized");
    // Refused from its declared length, before it is read: 413, or (when
    // the server's close overtakes curl's upload) a connection closed
    // mid-upload; never an answer.
    for _ in 0..5 {
        let (_, code) = run(Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&f.root)
            .args([
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
            ])
            .arg(format!("@{}", oversized.display()))
            .args(["-o", "/dev/null", "-w", "%{http_code} %{exitcode}"])
            .arg(format!("{}/ocsp", f.base)));
        let code = code.trim();
        assert!(
            code == "413 0" || code == "000 55" || code == "000 56" || code == "000 92",
            "{code}"
        );
    }
    let (code, _) = curl(&f.root, &format!("{}/ocsp/%%%not-base64", f.base), &[]);
    assert!((400..500).contains(&code), "{code}");
    let headers = f.env.path("garbage-get.h");
    let (ok, code) = run(Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&f.root)
        .arg("-D")
        .arg(&headers)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "{}/ocsp/{}",
            f.base,
            base64_url_path(&std::fs::read(&garbage).expect("garbage"))
        )));
    assert!(ok, "{code}");
    assert_eq!(code.trim(), "400");
    let headers = std::fs::read_to_string(&headers).expect("headers");
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-store"),
        "{headers}"
    );
}

#[test]
fn with_a_public_url_certificates_point_at_the_crl_and_the_responder() {
    let env = Env::new();
    env.ok(&["init", "--org", "OCSP Test Co"]);
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    let with_url =
        |url: &str| text.replace("[server]\n", &format!("[server]\npublic_url = \"{url}\"\n"));

    // A URL relying parties could not use is refused, saying what to give.
    std::fs::write(&config, with_url("pki.example.com")).expect("write");
    let out = env.idmint(&["cert", "list"]).output().expect("run idmint");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("public_url") && err.contains("https://"),
        "{err}"
    );

    std::fs::write(&config, with_url("https://pki.example.com/")).expect("write");
    let device = env.path("dev.pem");
    env.ok(&[
        "cert",
        "new",
        "--thing",
        "ocsp-dev-2",
        "--out",
        device.to_str().unwrap(),
        "--out-key",
        env.path("dev.key").to_str().unwrap(),
    ]);
    let (ok, text) = run(Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&device));
    assert!(ok, "{text}");
    assert!(text.contains("X509v3 CRL Distribution Points"), "{text}");
    assert!(
        text.contains("URI:https://pki.example.com/crl/issuing.crl"),
        "{text}"
    );
    let (ok, uri) = run(Command::new("openssl")
        .args(["x509", "-noout", "-ocsp_uri", "-in"])
        .arg(&device));
    assert!(ok, "{uri}");
    assert_eq!(uri.trim(), "https://pki.example.com/ocsp");
}

/// GET of a CRL with curl: (HTTP status, headers, body file).
fn get_crl(f: &Fixture, name: &str, extra: &[&str]) -> (u16, String, PathBuf) {
    let (out, headers) = (f.env.path(name), f.env.path(&format!("{name}.h")));
    let (ok, code) = run(Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(&f.root)
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&out)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(format!("{}/crl/issuing.crl", f.base)));
    assert!(ok, "{code}");
    let headers = std::fs::read_to_string(&headers).unwrap_or_default();
    (code.trim().parse().unwrap_or(0), headers, out)
}

fn crl_text(f: &Fixture, crl: &Path) -> String {
    let (ok, text) = run(Command::new("openssl")
        .args([
            "crl", "-inform", "DER", "-noout", "-text", "-verify", "-CAfile",
        ])
        .arg(&f.trust)
        .arg("-in")
        .arg(crl));
    assert!(ok, "{text}");
    assert!(text.contains("verify OK"), "{text}");
    text
}

fn crl_number(text: &str) -> u64 {
    let after = text.split("X509v3 CRL Number:").nth(1).unwrap_or_default();
    after
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn crls_carry_a_number_and_revalidate_by_etag() {
    crls_carry_a_number_and_revalidate_by_etag_on(Env::new());
}

fn crls_carry_a_number_and_revalidate_by_etag_on(env: Env) {
    let f = fixture_on(env);
    let (code, headers, first) = get_crl(&f, "first.crl", &[]);
    assert_eq!(code, 200, "{headers}");
    let etag = header(&headers, "etag").expect("etag").to_string();
    assert!(header(&headers, "last-modified").is_some(), "{headers}");
    let text = crl_text(&f, &first);
    let number = crl_number(&text);
    assert!(number >= 1, "{text}");

    // Unchanged: 304 for its ETag, the same CRL for a plain GET.
    let (code, _, _) = get_crl(&f, "cond.crl", &["-H", &format!("If-None-Match: {etag}")]);
    assert_eq!(code, 304);
    let (_, again_headers, again) = get_crl(&f, "again.crl", &[]);
    assert_eq!(header(&again_headers, "etag"), Some(etag.as_str()));
    assert_eq!(std::fs::read(&first).ok(), std::fs::read(&again).ok());

    // A revocation: a new CRL at once, with a higher number, listing it.
    f.env.ok(&[
        "cert",
        "revoke",
        &cert_id(&f.device),
        "--reason",
        "superseded",
    ]);
    let (code, headers, revoked) = get_crl(
        &f,
        "revoked.crl",
        &["-H", &format!("If-None-Match: {etag}")],
    );
    assert_eq!(code, 200, "{headers}");
    assert_ne!(header(&headers, "etag"), Some(etag.as_str()));
    let text = crl_text(&f, &revoked);
    assert!(crl_number(&text) > number, "{text}");
    assert!(text.contains("Superseded"), "{text}");

    // A CRL path naming no CA of ours is a clear 404, not a server error.
    for path in ["nope.crl", "issuing", "..%2Fissuing.crl"] {
        let (code, body) = curl(&f.root, &format!("{}/crl/{path}", f.base), &[]);
        assert_eq!(code, 404, "{path}: {body}");
    }
}

#[test]
fn a_revoked_ca_is_on_its_parents_crl_and_its_certificates_verify_as_revoked() {
    a_revoked_ca_is_on_its_parents_crl_and_its_certificates_verify_as_revoked_on(Env::new());
}

fn a_revoked_ca_is_on_its_parents_crl_and_its_certificates_verify_as_revoked_on(env: Env) {
    let f = fixture_on(env);
    let env = &f.env;
    env.ok(&["ca", "create-issuing", "--name", "line2"]);
    let line2 = env.path("line2.pem");
    std::fs::write(&line2, env.ok(&["ca", "show", "line2", "--pem"])).expect("line2");
    let device = env.path("line2-dev.pem");
    env.ok(&[
        "cert",
        "new",
        "--ca",
        "line2",
        "--thing",
        "line2-dev-1",
        "--out",
        device.to_str().unwrap(),
        "--out-key",
        env.path("line2-dev.key").to_str().unwrap(),
    ]);
    let crl_of = |ca: &str| {
        let path = env.path(&format!("{ca}.crl.pem"));
        let _ = std::fs::remove_file(&path);
        env.ok(&["crl", "--ca", ca, "--out", path.to_str().unwrap()]);
        path
    };
    let verify = |crls: &[PathBuf]| {
        let mut cmd = Command::new("openssl");
        cmd.args(["verify", "-crl_check_all", "-CAfile"])
            .arg(&f.root);
        for crl in crls {
            cmd.arg("-CRLfile").arg(crl);
        }
        cmd.arg("-untrusted").arg(&line2).arg(&device);
        run(&mut cmd)
    };
    let (ok, text) = verify(&[crl_of("root"), crl_of("line2")]);
    assert!(ok, "{text}");

    // A root is not revoked, only what it signed.
    let out = env.idmint(&["ca", "revoke", "root"]).output().expect("run");
    assert!(!out.status.success());
    env.ok(&["ca", "revoke", "line2", "--reason", "keyCompromise"]);
    let out = env
        .idmint(&["ca", "revoke", "line2"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "revoked twice");
    assert!(env.ok(&["ca", "show", "line2"]).contains("revoked:"));

    // The root's CRL lists it: the device certificate under it no longer
    // verifies (openssl, with every CRL of the chain).
    let (ok, text) = verify(&[crl_of("root"), crl_of("line2")]);
    assert!(!ok, "{text}");
    assert!(text.contains("revoked"), "{text}");

    // The server's cached root CRL changes too, and OCSP says revoked.
    let (ok, text) = run(Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&f.root)
        .arg("-o")
        .arg(env.path("served-root.crl"))
        .arg(format!("{}/crl/root.crl", f.base)));
    assert!(ok, "{text}");
    let (ok, served) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(env.path("served-root.crl")));
    assert!(ok, "{served}");
    assert!(served.contains("Key Compromise"), "{served}");
    let (ok, text) = run(Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&f.root)
        .arg("-cert")
        .arg(&line2)
        .args(["-url", &format!("{}/ocsp", f.base), "-CAfile"])
        .arg(&f.trust));
    assert!(ok, "{text}");
    assert!(text.contains("Response verify OK"), "{text}");
    assert!(text.contains(": revoked"), "{text}");

    // It issues nothing more.
    let out = env
        .idmint(&[
            "cert",
            "new",
            "--ca",
            "line2",
            "--thing",
            "line2-dev-2",
            "--out",
            env.path("line2-dev-2.pem").to_str().unwrap(),
            "--out-key",
            env.path("line2-dev-2.key").to_str().unwrap(),
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("revoked"), "{err}");
    assert!(!env.path("line2-dev-2.key").exists());
}

/// Past `[server] delta_crl_after` revoked entries, `/crl/<ca>.crl` is a
/// base CRL naming its delta (freshestCRL) and is not reissued on a change;
/// `/crl/<ca>-delta.crl` lists what was revoked since, with a critical
/// deltaCRLIndicator. openssl applies the two together (`-use_deltas`).
#[test]
fn past_the_delta_threshold_changes_go_to_a_delta_crl() {
    past_the_delta_threshold_changes_go_to_a_delta_crl_on(Env::new());
}

fn past_the_delta_threshold_changes_go_to_a_delta_crl_on(env: Env) {
    env.ok(&["init", "--org", "Delta Co"]);
    let config = env.data().join("idmint.toml");
    let text = std::fs::read_to_string(&config).expect("idmint.toml");
    std::fs::write(
        &config,
        text.replace("delta_crl_after = 10000", "delta_crl_after = 2")
            .replace(
                "[server]\n",
                "[server]\npublic_url = \"https://pki.example.com\"\n",
            ),
    )
    .expect("write");
    let root = env.path("root.pem");
    let issuer = env.path("issuer.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    std::fs::write(&issuer, env.ok(&["ca", "show", "issuing", "--pem"])).expect("issuer");
    let mut devices = Vec::new();
    for n in 1..=3 {
        let cert = env.path(&format!("d{n}.pem"));
        env.ok(&[
            "cert",
            "new",
            "--thing",
            &format!("delta-dev-{n}"),
            "--out",
            cert.to_str().unwrap(),
            "--out-key",
            env.path(&format!("d{n}.key")).to_str().unwrap(),
        ]);
        devices.push(cert);
    }
    for cert in &devices[..2] {
        env.ok(&[
            "cert",
            "revoke",
            &cert_id(cert),
            "--reason",
            "keyCompromise",
        ]);
    }
    let server = env.serve(&["--rate-limit", "0"]);
    let base_url = format!("https://localhost:{}", server.port);
    let fetch = |name: &str, out: &str| -> (u16, String, PathBuf) {
        let (file, headers) = (env.path(out), env.path(&format!("{out}.h")));
        let (ok, code) = run(Command::new("curl")
            .args(["-s", "--cacert"])
            .arg(&root)
            .arg("-D")
            .arg(&headers)
            .arg("-o")
            .arg(&file)
            .args(["-w", "%{http_code}"])
            .arg(format!("{base_url}/crl/{name}")));
        assert!(ok, "{code}");
        let headers = std::fs::read_to_string(&headers).unwrap_or_default();
        (code.trim().parse().unwrap_or(0), headers, file)
    };
    let text_of = |crl: &Path| {
        let (ok, text) = run(Command::new("openssl")
            .args([
                "crl", "-inform", "DER", "-noout", "-text", "-verify", "-CAfile",
            ])
            .arg(&issuer)
            .arg("-in")
            .arg(crl));
        assert!(ok && text.contains("verify OK"), "{text}");
        text
    };

    let (code, headers, base) = fetch("issuing.crl", "base.crl");
    assert_eq!(code, 200, "{headers}");
    let base_etag = header(&headers, "etag").expect("etag").to_string();
    let base_text = text_of(&base);
    assert!(base_text.contains("Freshest CRL"), "{base_text}");
    assert!(
        base_text.contains("URI:https://pki.example.com/crl/issuing-delta.crl"),
        "{base_text}"
    );
    let base_number = crl_number(&base_text);

    // A revocation after the base: the base stays, the delta lists it.
    env.ok(&[
        "cert",
        "revoke",
        &cert_id(&devices[2]),
        "--reason",
        "superseded",
    ]);
    let (_, headers, _) = fetch("issuing.crl", "base-again.crl");
    assert_eq!(header(&headers, "etag"), Some(base_etag.as_str()));
    let (code, headers, delta) = fetch("issuing-delta.crl", "delta.crl");
    assert_eq!(code, 200, "{headers}");
    let delta_text = text_of(&delta);
    assert!(
        delta_text.contains("Delta CRL Indicator: critical"),
        "{delta_text}"
    );
    let indicator = delta_text
        .split("Delta CRL Indicator: critical")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(indicator, Some(base_number), "{delta_text}");
    assert!(crl_number(&delta_text) > base_number, "{delta_text}");
    let (ok, serial) = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&devices[2]));
    assert!(ok, "{serial}");
    let serial = serial.trim().trim_start_matches("serial=").to_uppercase();
    assert!(delta_text.contains(&serial), "{serial}: {delta_text}");
    assert!(!base_text.contains(&serial), "{base_text}");

    // openssl: the base alone still accepts the newly revoked certificate;
    // base and delta together refuse it.
    let pem_of = |der: &Path, out: &str| {
        let pem = env.path(out);
        let (ok, text) = run(Command::new("openssl")
            .args(["crl", "-inform", "DER", "-in"])
            .arg(der)
            .arg("-out")
            .arg(&pem));
        assert!(ok, "{text}");
        std::fs::read_to_string(&pem).expect("pem")
    };
    let (base_pem, delta_pem) = (pem_of(&base, "base.pem"), pem_of(&delta, "delta.pem"));
    let verify = |crls: &str| {
        let file = env.path("crls.pem");
        std::fs::write(&file, crls).expect("crls");
        run(Command::new("openssl")
            .args(["verify", "-crl_check", "-use_deltas", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&issuer)
            .arg("-CRLfile")
            .arg(&file)
            .arg(&devices[2]))
    };
    let (ok, text) = verify(&base_pem);
    assert!(ok, "the base alone: {text}");
    let (ok, text) = verify(&format!("{base_pem}{delta_pem}"));
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    // A CA below the threshold publishes complete CRLs only.
    let (code, _, _) = fetch("root-delta.crl", "root-delta.crl");
    assert_eq!(code, 404);
}

/// The same checks on a PostgreSQL store (`IDMINT_TEST_POSTGRES`): the
/// revocation marks, CRL numbers and cached responses come from the
/// registry, whichever backend holds it.
mod on_postgres {
    use super::common::http::postgres_env;

    #[test]
    fn a_delegated_responder_answers_and_openssl_verifies_it() {
        if let Some(env) = postgres_env("rev_ocsp_responder") {
            super::a_delegated_responder_answers_and_openssl_verifies_it_on(env);
        }
    }

    #[test]
    fn get_is_cacheable_and_a_response_is_signed_once_per_status_change() {
        if let Some(env) = postgres_env("rev_ocsp_get") {
            super::get_is_cacheable_and_a_response_is_signed_once_per_status_change_on(env);
        }
    }

    #[test]
    fn crls_carry_a_number_and_revalidate_by_etag() {
        if let Some(env) = postgres_env("rev_crl_etag") {
            super::crls_carry_a_number_and_revalidate_by_etag_on(env);
        }
    }

    #[test]
    fn a_revoked_ca_is_on_its_parents_crl_and_its_certificates_verify_as_revoked() {
        if let Some(env) = postgres_env("rev_revoked_ca") {
            super::a_revoked_ca_is_on_its_parents_crl_and_its_certificates_verify_as_revoked_on(
                env,
            );
        }
    }

    #[test]
    fn past_the_delta_threshold_changes_go_to_a_delta_crl() {
        if let Some(env) = postgres_env("rev_delta_crl") {
            super::past_the_delta_threshold_changes_go_to_a_delta_crl_on(env);
        }
    }
}
