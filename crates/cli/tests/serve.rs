//! End-to-end tests of `idmint serve` with real clients: curl and openssl
//! for EST (enroll, re-enroll), OCSP before and after revocation, the CRL,
//! and the REST API with each role, refusals and bad inputs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::http::{batch, cert_id, csr, curl, ocsp, p7_to_pem, postgres_env, run, token, Env};

#[test]
fn est_ocsp_crl_and_rest_api() {
    let env = Env::new();
    env.ok(&["init", "--org", "Serve Test Co"]);
    let b = batch(&env, "3");
    let enroll = token(&env, "enroller", "enroll", Some(&b));
    let admin = token(&env, "admin1", "admin", None);
    let reader = token(&env, "reader1", "reader", None);
    let station = token(&env, "station1", "station", Some(&b));
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let server = env.serve(&["--rate-limit", "0", "--rotation-overlap", "1"]);
    let base = format!("https://localhost:{}", server.port);
    let est = format!("{base}/.well-known/est");

    // cacerts: the chain, as PKCS#7.
    let (code, body) = curl(&root, &format!("{est}/cacerts"), &[]);
    assert_eq!(code, 200);
    let chain = p7_to_pem(&env, &body, "cacerts");
    let issuer = env.path("issuer.pem");
    std::fs::write(&issuer, env.ok(&["ca", "show", "issuing", "--pem"])).expect("issuer");

    // simpleenroll with the batch's enrollment token.
    let d1 = csr(&env, "d1", "serve-dev-1");
    let auth = format!("enroller:{enroll}");
    let post = |url: &str, file: &Path, extra: &[&str]| {
        let data = format!("@{}", file.display());
        let mut args = vec![
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            data.as_str(),
        ];
        args.extend_from_slice(extra);
        curl(&root, url, &args)
    };
    let (code, body) = post(&format!("{est}/simpleenroll"), &d1, &["-u", &auth]);
    assert_eq!(code, 200, "{body}");
    let dev = p7_to_pem(&env, &body, "dev1");
    let (ok, text) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&dev));
    assert!(ok, "chain: {text}");

    // Refusals and bad input: nothing issued.
    assert_eq!(
        post(
            &format!("{est}/simpleenroll"),
            &d1,
            &["-u", "enroller:wrong"]
        )
        .0,
        401
    );
    assert_eq!(post(&format!("{est}/simpleenroll"), &d1, &[]).0, 401);
    assert_eq!(
        post(
            &format!("{est}/simpleenroll"),
            &d1,
            &["-u", &format!("reader1:{reader}")]
        )
        .0,
        403
    );
    let junk = env.path("junk.b64");
    std::fs::write(&junk, "bm90IGEgY3NyIGF0IGFsbA==\n").expect("junk");
    assert_eq!(
        post(&format!("{est}/simpleenroll"), &junk, &["-u", &auth]).0,
        400
    );
    let notb64 = env.path("notb64");
    std::fs::write(&notb64, "%%%% not base64 %%%%").expect("junk");
    assert_eq!(
        post(&format!("{est}/simpleenroll"), &notb64, &["-u", &auth]).0,
        400
    );
    // A PEM body is the common mistake: the answer says what EST wants.
    let pem = env.path("pem-body");
    std::fs::write(
        &pem,
        "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n",
    )
    .expect("pem");
    let (code, body) = post(&format!("{est}/simpleenroll"), &pem, &["-u", &auth]);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("base64 DER"), "{body}");
    let data = format!("@{}", d1.display());
    let (code, _) = curl(
        &root,
        &format!("{est}/simpleenroll"),
        &[
            "-u",
            &auth,
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            &data,
        ],
    );
    assert_eq!(code, 415);
    let big = env.path("big");
    std::fs::write(&big, vec![b'A'; 200_000]).expect("big");
    assert_eq!(
        post(
            &format!("{est}/simpleenroll"),
            &big,
            &["-u", &auth, "--http1.1", "-H", "Expect: 100-continue"]
        )
        .0,
        413
    );
    let (code, body) = curl(
        &root,
        &format!("{base}/api/v1/batches/{b}"),
        &["-H", &format!("Authorization: Bearer {admin}")],
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["issued"], 1, "{v}");

    // Re-enrollment with the current certificate: a new one, the old one retired after the overlap.
    let d1b = csr(&env, "d1b", "serve-dev-1");
    let key = env.path("d1.key");
    let (code, body) = post(
        &format!("{est}/simplereenroll"),
        &d1b,
        &[
            "--cert",
            dev.to_str().unwrap_or(""),
            "--key",
            key.to_str().unwrap_or(""),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let dev2 = p7_to_pem(&env, &body, "dev1b");
    let (ok, text) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&dev2));
    assert!(ok, "chain: {text}");
    // A CSR for someone else is refused.
    let other = csr(&env, "other", "someone-else");
    let (code, _) = post(
        &format!("{est}/simplereenroll"),
        &other,
        &[
            "--cert",
            dev.to_str().unwrap_or(""),
            "--key",
            key.to_str().unwrap_or(""),
        ],
    );
    assert_eq!(code, 403);

    // OCSP: good, then revoked.
    let trust = env.path("trust.pem");
    std::fs::write(
        &trust,
        format!(
            "{}{}",
            std::fs::read_to_string(&root).unwrap_or_default(),
            std::fs::read_to_string(&chain).unwrap_or_default()
        ),
    )
    .expect("trust");
    let text = ocsp(&env, server.port, &issuer, &dev2, &trust);
    assert!(text.contains(": good"), "{text}");
    let id2 = cert_id(&dev2);
    // Reader may read but not revoke; operator-level admin may revoke.
    let (code, _) = curl(
        &root,
        &format!("{base}/api/v1/certificates/{id2}/revoke"),
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {reader}"),
        ],
    );
    assert_eq!(code, 403);
    let (code, _) = curl(
        &root,
        &format!("{base}/api/v1/certificates/{id2}"),
        &["-H", &format!("Authorization: Bearer {reader}")],
    );
    assert_eq!(code, 200);
    let (code, _) = curl(&root, &format!("{base}/api/v1/certificates"), &[]);
    assert_eq!(code, 401);
    let (code, _) = curl(
        &root,
        &format!("{base}/api/v1/certificates"),
        &["-H", "Authorization: Bearer idm_nope"],
    );
    assert_eq!(code, 401);
    let (code, body) = curl(
        &root,
        &format!("{base}/api/v1/certificates/{id2}/revoke"),
        &[
            "-X",
            "POST",
            "-H",
            &format!("Authorization: Bearer {admin}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"reason\":\"keyCompromise\"}",
        ],
    );
    assert_eq!(code, 200, "{body}");
    let text = ocsp(&env, server.port, &issuer, &dev2, &trust);
    assert!(text.contains(": revoked"), "{text}");

    // The CRL lists it.
    let crl = env.path("issuing.crl");
    let (ok, text) = run(Command::new("curl")
        .args(["-sf", "--cacert"])
        .arg(&root)
        .arg("-o")
        .arg(&crl)
        .arg(format!("{base}/crl/issuing.crl")));
    assert!(ok, "{text}");
    let (ok, text) = run(Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-text", "-in"])
        .arg(&crl));
    assert!(ok, "{text}");
    let serial = run(Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(&dev2))
    .1;
    let serial = serial
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_uppercase();
    assert!(
        text.to_ascii_uppercase().replace(':', "").contains(&serial),
        "{serial} not in {text}"
    );

    // The old certificate is retired after the overlap.
    let id1 = cert_id(&dev);
    let start = Instant::now();
    loop {
        let (_, body) = curl(
            &root,
            &format!("{base}/api/v1/certificates/{id1}"),
            &["-H", &format!("Authorization: Bearer {reader}")],
        );
        if body.contains("INACTIVE") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "old certificate not retired: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Remote station: CSR against the batch; quota enforced.
    // One key (and thing) per issuance: this part is about roles and the
    // quota, and a key certified twice is a clone.
    let csr_body = |n: u32| {
        let pem_csr = env.path(&format!("st{n}.csr"));
        run(Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
            ])
            .arg(env.path(&format!("st{n}.key")))
            .args(["-subj", &format!("/CN=station-dev-{n}"), "-out"])
            .arg(&pem_csr));
        serde_json::json!({"csr": std::fs::read_to_string(&pem_csr).unwrap_or_default()})
            .to_string()
    };
    let issue = |tok: &str, body: &str| {
        curl(
            &root,
            &format!("{base}/api/v1/batches/{b}/certificates"),
            &[
                "-H",
                &format!("Authorization: Bearer {tok}"),
                "-H",
                "Content-Type: application/json",
                "-d",
                body,
            ],
        )
    };
    assert_eq!(issue(&reader, &csr_body(1)).0, 403);
    assert_eq!(issue(&station, &csr_body(1)).0, 201);
    assert_eq!(issue(&station, &csr_body(2)).0, 201);
    assert_eq!(issue(&station, &csr_body(3)).0, 409, "quota of 3 exhausted");

    // Listings, OpenAPI, metrics, health.
    let (code, body) = curl(
        &root,
        &format!("{base}/api/v1/certificates?batch={b}&limit=2"),
        &["-H", &format!("Authorization: Bearer {reader}")],
    );
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(2));
    assert!(v["nextCursor"].is_string());
    assert_eq!(
        curl(
            &root,
            &format!("{base}/api/v1/certificates?limit=0"),
            &["-H", &format!("Authorization: Bearer {reader}")]
        )
        .0,
        400
    );
    for path in [
        "/api/v1/things",
        "/api/v1/cas",
        "/api/v1/cas/issuing",
        "/api/v1/batches",
        "/api/v1/audit/verify",
        "/api/v1/things/serve-dev-1",
    ] {
        assert_eq!(
            curl(
                &root,
                &format!("{base}{path}"),
                &["-H", &format!("Authorization: Bearer {reader}")]
            )
            .0,
            200,
            "{path}"
        );
    }
    let (code, body) = curl(&root, &format!("{base}/api/v1/openapi.json"), &[]);
    assert_eq!(code, 200);
    assert!(body.contains("/.well-known/est/simpleenroll"));
    assert!(curl(&root, &format!("{base}/metrics"), &[])
        .1
        .contains("idmint_certificates_issued_total"));
    assert_eq!(curl(&root, &format!("{base}/healthz"), &[]).0, 200);
    let (code, body) = curl(&root, &format!("{base}/nope"), &[]);
    assert_eq!(code, 404);
    assert!(body.contains("\"error\""));
    let list = env.ok(&["token", "list", "--json"]);
    assert!(list.contains("enroller") && !list.contains(&enroll));
    env.ok(&["token", "revoke", "enroller"]);
    assert_eq!(
        post(&format!("{est}/simpleenroll"), &d1, &["-u", &auth]).0,
        401
    );
}

#[test]
fn rate_limit_answers_429_with_retry_after() {
    let env = Env::new();
    env.ok(&["init", "--org", "Rate Co"]);
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let server = env.serve(&["--rate-limit", "2"]);
    let url = format!("https://localhost:{}/.well-known/est/cacerts", server.port);
    let mut limited = false;
    for _ in 0..20 {
        let out = Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(&root)
            .arg(&url)
            .output()
            .expect("curl");
        let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        if head.contains(" 429") {
            assert!(head.contains("retry-after:"), "{head}");
            limited = true;
            break;
        }
    }
    assert!(limited, "no 429 after 20 quick requests at 2/s");
}

#[test]
fn two_servers_share_one_postgres() {
    let Some(env) = postgres_env("two_servers") else {
        return;
    };
    env.ok(&["init", "--org", "Two Servers Co"]);
    let b = batch(&env, "4");
    let station = token(&env, "station-pg", "station", Some(&b));
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).expect("root");
    let s1 = env.serve(&["--rate-limit", "0"]);
    let s2 = env.serve(&["--rate-limit", "0"]);
    // One key (and thing) per request: the test is about the quota, and a
    // key certified twice is a clone.
    let bodies: Vec<String> = (0..8)
        .map(|i| {
            let pem_csr = env.path(&format!("pg{i}.csr"));
            run(Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                    "-nodes",
                    "-keyout",
                ])
                .arg(env.path(&format!("pg{i}.key")))
                .args(["-subj", &format!("/CN=pg-dev-{i}"), "-out"])
                .arg(&pem_csr));
            serde_json::json!({"csr": std::fs::read_to_string(&pem_csr).unwrap_or_default()})
                .to_string()
        })
        .collect();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let (root, body, station, b) =
                (root.clone(), bodies[i].clone(), station.clone(), b.clone());
            let port = if i % 2 == 0 { s1.port } else { s2.port };
            std::thread::spawn(move || {
                curl(
                    &root,
                    &format!("https://localhost:{port}/api/v1/batches/{b}/certificates"),
                    &[
                        "-H",
                        &format!("Authorization: Bearer {station}"),
                        "-H",
                        "Content-Type: application/json",
                        "-d",
                        &body,
                    ],
                )
                .0
            })
        })
        .collect();
    let codes: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 4, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 4, "{codes:?}");
}
