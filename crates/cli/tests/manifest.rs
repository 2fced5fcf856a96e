//! End-to-end tests of scenario 3 (secure elements pre-provisioned by the
//! HSM vendor) through the real binary: vendor CA registration, import of
//! every manifest format with the registry checked afterwards, every
//! tampered case rejected with the right reason, idempotent re-import, and
//! export then import into a second, fresh data directory (one that trusts
//! only the vendor root too: exports carry the vendor's intermediate).

mod common;

use std::path::{Path, PathBuf};

use common::{openssl, Env};

/// An initialised data dir with the vendor's test set generated and its
/// CAs registered (`vendor`: the root with the log signer; `vendor-signer`:
/// the device signer CA under it).
fn vendor_env(count: u64) -> (Env, PathBuf) {
    let env = Env::init(&[]);
    let set = env.path("set");
    env.ok(&[
        "manifest",
        "generate-test",
        "--test-set",
        "--count",
        &count.to_string(),
        "--out",
        set.to_str().unwrap(),
    ]);
    register(&env, &set);
    (env, set)
}

fn register(env: &Env, set: &Path) {
    let p = |n: &str| set.join(n).to_str().unwrap().to_string();
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor",
        "--cert",
        &p("vendor-root.pem"),
        "--signer",
        &p("log-signer.pem"),
    ]);
    env.ok(&[
        "ca",
        "register",
        "--name",
        "vendor-signer",
        "--cert",
        &p("signer-ca.pem"),
    ]);
}

fn import(
    env: &Env,
    file: &Path,
    ca: &str,
    extra: &[&str],
) -> (i32, serde_json::Value, Vec<serde_json::Value>) {
    let report = env.path("report.jsonl");
    let _ = std::fs::remove_file(&report);
    let mut args = vec![
        "manifest",
        "import",
        file.to_str().unwrap(),
        "--ca",
        ca,
        "--json",
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = env.run(&args);
    let code = out.status.code().unwrap_or(-1);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON summary: {}", String::from_utf8_lossy(&out.stderr)));
    let lines = std::fs::read_to_string(&report)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (code, summary, lines)
}

fn things(env: &Env) -> Vec<serde_json::Value> {
    env.json(&["thing", "list", "--json"])
        .as_array()
        .unwrap()
        .clone()
}

fn thing<'a>(all: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    all.iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no thing {name}"))
}

#[test]
fn signed_manifest_imports_idempotently_and_registers_everything() {
    let (env, set) = vendor_env(6);
    let cas = env.ok(&["ca", "list"]);
    assert!(cas.contains("registered outside CAs"), "{cas}");
    let listed = env.json(&["ca", "list", "--json"]);
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "vendor" && c["kind"] == "external"));

    let (code, s, report) = import(
        &env,
        &set.join("good.json"),
        "vendor",
        &["--status", "PENDING_ACTIVATION"],
    );
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        (
            s["entries"].as_u64(),
            s["registered"].as_u64(),
            s["rejected"].as_u64()
        ),
        (Some(6), Some(6), Some(0))
    );
    assert!(report.is_empty());
    let batch = s["batch"].as_str().unwrap().to_string();

    // Registry: things with device id = unique id and the payload's attributes,
    // certificates under the vendor CA in the import batch.
    let all = things(&env);
    let t = thing(&all, "0123000000000000ee");
    assert_eq!(t["deviceId"], "0123000000000000ee");
    assert_eq!(t["attributes"]["model"], "ATECC608B");
    assert_eq!(t["attributes"]["partNumber"], "ATECC608B-TNGTLSU-G");
    assert_eq!(t["batch"], batch.as_str());
    let certs = env.json(&["cert", "list", "--json", "--batch", &batch]);
    let certs = certs.as_array().unwrap();
    assert_eq!(certs.len(), 6);
    assert!(certs
        .iter()
        .all(|c| c["ca"] == "vendor" && c["status"] == "PENDING_ACTIVATION"));
    let b = env.json(&["batch", "show", &batch, "--json"]);
    assert_eq!(b["kind"], "import");
    assert_eq!(b["issued"], 6);

    // Re-import: nothing new, nothing rejected, exit 0, and says so.
    let (code, s, report) = import(&env, &set.join("good.json"), "vendor", &[]);
    assert_eq!(code, 0);
    assert_eq!(
        (
            s["registered"].as_u64(),
            s["alreadyRegistered"].as_u64(),
            s["rejected"].as_u64()
        ),
        (Some(0), Some(6), Some(0))
    );
    assert!(report.is_empty());
    assert!(s["batch"].is_null());
    let out = env.run(&[
        "manifest",
        "import",
        set.join("good.json").to_str().unwrap(),
        "--ca",
        "vendor",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 new, 6 already registered"));
    assert_eq!(
        env.json(&["cert", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        6
    );

    // The same manifest against a CA with no log signer is refused outright.
    let err = env.fails(&[
        "manifest",
        "import",
        set.join("good.json").to_str().unwrap(),
        "--ca",
        "vendor-signer",
    ]);
    assert!(err.contains("log signer"), "{err}");
    assert!(
        env.ok(&["audit", "verify"]).contains("intact")
            || env.run(&["audit", "verify"]).status.success()
    );
}

#[test]
fn every_tampered_case_is_rejected_with_its_reason() {
    let (env, set) = vendor_env(1);
    for (file, reason, index) in [
        ("tampered-payload-edited.json", "bad-signature", 1),
        ("tampered-other-ca.json", "untrusted-issuer", 1),
        ("tampered-jwk-mismatch.json", "jwk-mismatch", 1),
        ("tampered-expired.json", "expired", 1),
        ("tampered-wrong-alg.json", "unsupported-algorithm", 1),
        (
            "tampered-duplicate-unique-id.json",
            "duplicate-unique-id",
            1,
        ),
        ("tampered-truncated.json", "malformed-manifest", 1),
    ] {
        let before = env
            .json(&["cert", "list", "--json"])
            .as_array()
            .unwrap()
            .len();
        let (code, s, report) = import(&env, &set.join(file), "vendor", &[]);
        assert_ne!(code, 0, "{file}: rejections must fail the command");
        assert_eq!(report.len(), 1, "{file}: {report:?}");
        assert_eq!(report[0]["reason"], reason, "{file}: {report:?}");
        assert_eq!(report[0]["index"], index, "{file}");
        assert!(report[0]["message"].as_str().is_some_and(|m| !m.is_empty()));
        // The good entries around the bad one are registered.
        let after = env
            .json(&["cert", "list", "--json"])
            .as_array()
            .unwrap()
            .len();
        assert_eq!(
            after - before,
            s["registered"].as_u64().unwrap() as usize,
            "{file}"
        );
        assert!(s["registered"].as_u64().unwrap() >= 1, "{file}");
    }
    // --allow-partial: same rejection, exit 0.
    let (code, s, _) = import(
        &env,
        &set.join("tampered-expired.json"),
        "vendor",
        &["--allow-partial"],
    );
    assert_eq!(code, 0);
    assert_eq!(s["rejected"], 1);
    assert_eq!(s["alreadyRegistered"], 2);
    // Certificates of the signed manifest do not chain to another CA.
    let (_, _, report) = import(&env, &set.join("pem"), "vendor", &[]);
    assert!(report.iter().all(|r| r["reason"] == "untrusted-issuer"));
}

#[test]
fn jsonl_csv_and_pem_formats_import() {
    let (env, set) = vendor_env(3);
    let (code, s, _) = import(&env, &set.join("good.jsonl"), "vendor-signer", &[]);
    assert_eq!(
        (code, s["format"].as_str(), s["registered"].as_u64()),
        (0, Some("jsonl"), Some(3))
    );
    let (code, s, _) = import(&env, &set.join("good.csv"), "vendor-signer", &[]);
    assert_eq!(
        (code, s["format"].as_str(), s["registered"].as_u64()),
        (0, Some("csv"), Some(3))
    );
    let (code, s, _) = import(
        &env,
        &set.join("pem"),
        "vendor-signer",
        &["--thing-name-from", "cn"],
    );
    assert_eq!(
        (code, s["format"].as_str(), s["registered"].as_u64()),
        (0, Some("pem"), Some(3))
    );
    let all = things(&env);
    let t = thing(&all, "jsonl-0");
    assert_eq!(t["deviceId"], "0500000000000000");
    assert_eq!(t["attributes"]["model"], "ATECC608B");
    let t = thing(&all, "csv-0");
    assert_eq!(t["deviceId"], "0600000000000000");
    assert_eq!(t["attributes"]["color"], "red");
    assert!(thing(&all, "csv-1")["attributes"].get("color").is_none());
    let t = thing(&all, "sn0700000000000000");
    assert_eq!(t["deviceId"], "0700000000000000");

    // A unique id already registered with another certificate is reported.
    let dup = env.path("dup.csv");
    let cert = std::fs::read_dir(set.join("pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let other = set.join("certs").join("0600000000000001.pem");
    // Certificate paths are relative to the CSV's folder (the data dir's
    // parent here, which holds set/).
    let rel = |p: &Path| {
        p.strip_prefix(env.dir.path())
            .unwrap()
            .display()
            .to_string()
    };
    std::fs::write(
        &dup,
        format!(
            "unique_id,certificate\n0500000000000001,{}\nnew-id,{}\n",
            rel(&other),
            rel(&cert)
        ),
    )
    .unwrap();
    let (code, _, report) = import(&env, &dup, "vendor-signer", &["--format", "csv"]);
    assert_ne!(code, 0);
    let reasons: Vec<&str> = report
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["duplicate-certificate", "duplicate-certificate"],
        "{report:?}"
    );
}

#[test]
fn export_then_import_into_a_fresh_data_dir() {
    let (env, set) = vendor_env(4);
    let (_, s, _) = import(&env, &set.join("good.json"), "vendor", &[]);
    let batch = s["batch"].as_str().unwrap().to_string();
    let (_, s2, _) = import(&env, &set.join("good.csv"), "vendor-signer", &[]);
    let batch2 = s2["batch"].as_str().unwrap().to_string();
    let fresh = Env::init(&[]);
    register(&fresh, &set);
    let fresh_tar = Env::init(&[]);
    register(&fresh_tar, &set);
    let exports = [
        // Anchored at the signer CA, the receiving side verifies the device
        // certificates directly (the intermediate in the bundles is not
        // needed; see the root-only test below).
        (
            "jsonl",
            ["--batch", batch.as_str()],
            "vendor-signer",
            &fresh,
        ),
        ("csv", ["--ca", "vendor-signer"], "vendor-signer", &fresh),
        (
            "pem-tar",
            ["--batch", batch2.as_str()],
            "vendor-signer",
            &fresh_tar,
        ),
    ];
    for (format, selector, ca, target) in exports {
        let out = env.path(&format!("export.{format}"));
        let mut args = vec![
            "manifest",
            "export",
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(selector);
        env.ok(&args);
        let (code, s, report) = import(target, &out, ca, &[]);
        assert_eq!(code, 0, "{format}: {report:?}");
        assert_eq!(s["registered"], 4, "{format}: {s}");
    }
    let a = things(&env);
    let b = things(&fresh);
    for name in ["0123000000000000ee", "csv-2"] {
        assert_eq!(thing(&a, name)["deviceId"], thing(&b, name)["deviceId"]);
        assert_eq!(thing(&a, name)["attributes"], thing(&b, name)["attributes"]);
    }
    assert_eq!(
        thing(&things(&fresh_tar), "0600000000000002")["deviceId"],
        "0600000000000002"
    );
    // Importing an export again: already registered, not rejected.
    let (code, s, _) = import(
        &fresh_tar,
        &env.path("export.pem-tar"),
        "vendor-signer",
        &[],
    );
    assert_eq!((code, s["alreadyRegistered"].as_u64()), (0, Some(4)));
}

#[test]
fn register_refuses_bad_input() {
    let env = Env::init(&[]);
    let junk = env.path("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    env.fails(&[
        "ca",
        "register",
        "--name",
        "v",
        "--cert",
        junk.to_str().unwrap(),
    ]);
    let (root, _) = env.ca_files();
    let err = env.fails(&[
        "ca",
        "register",
        "--name",
        "root",
        "--cert",
        root.to_str().unwrap(),
    ]);
    assert!(err.contains("root"), "{err}");
    let leaf_set = env.path("set");
    env.ok(&[
        "manifest",
        "generate-test",
        "--test-set",
        "--count",
        "1",
        "--out",
        leaf_set.to_str().unwrap(),
    ]);
    let leaf = std::fs::read_dir(leaf_set.join("pem"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let err = env.fails(&[
        "ca",
        "register",
        "--name",
        "v",
        "--cert",
        leaf.to_str().unwrap(),
    ]);
    assert!(err.contains("not a CA"), "{err}");
    let garbage = env.path("garbage.json");
    std::fs::write(&garbage, "[{\"payload\": 1}, 7, ").unwrap();
    env.ok(&[
        "ca",
        "register",
        "--name",
        "v",
        "--cert",
        leaf_set.join("vendor-root.pem").to_str().unwrap(),
        "--signer",
        leaf_set.join("log-signer.pem").to_str().unwrap(),
    ]);
    let (code, _, report) = import(&env, &garbage, "v", &[]);
    assert_ne!(code, 0);
    let reasons: Vec<&str> = report
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["malformed-entry", "malformed-manifest"]);
}

#[test]
fn signed_manifest_imports_on_postgresql() {
    let Ok(url) = std::env::var("IDMINT_TEST_POSTGRES") else {
        idmint_testkit::skip(
            "PostgreSQL (IDMINT_TEST_POSTGRES)",
            "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
        );
        return;
    };
    // A database of its own, so the test can run again on the same server.
    let name = format!(
        "idmint_manifest_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let created = std::process::Command::new("psql")
        .args([url.as_str(), "-c", &format!("CREATE DATABASE {name}")])
        .output()
        .expect("psql");
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let base = url.rsplit_once('/').map(|(b, _)| b).expect("database URL");
    let store = format!("{base}/{name}");
    let env = Env::new();
    env.ok(&["--store", &store, "init", "--org", "PG Co"]);
    let config = std::fs::read_to_string(env.data().join("idmint.toml")).expect("config");
    assert!(config.contains("postgres://"), "{config}");
    let set = env.path("set");
    env.ok(&[
        "manifest",
        "generate-test",
        "--test-set",
        "--count",
        "40",
        "--out",
        set.to_str().unwrap(),
    ]);
    register(&env, &set);
    let (code, s, report) = import(&env, &set.join("good.json"), "vendor", &[]);
    assert_eq!(code, 0, "{s}");
    assert_eq!(
        (s["registered"].as_u64(), s["rejected"].as_u64()),
        (Some(40), Some(0)),
        "{s}"
    );
    assert!(report.is_empty());
    // Idempotent on PostgreSQL too.
    let (code, s, _) = import(&env, &set.join("good.json"), "vendor", &[]);
    assert_eq!(
        (
            code,
            s["registered"].as_u64(),
            s["alreadyRegistered"].as_u64()
        ),
        (0, Some(0), Some(40))
    );
    assert_eq!(things(&env).len(), 40);
    assert!(env.ok(&["audit", "verify"]).contains("intact"));
}

/// The certificates (DER) of each entry of an export, leaf first, sorted
/// by leaf.
fn exported_bundles(format: &str, path: &Path) -> Vec<Vec<Vec<u8>>> {
    let ders = |text: &[u8]| -> Vec<Vec<u8>> {
        pem::parse_many(text)
            .unwrap()
            .into_iter()
            .map(|p| p.into_contents())
            .collect()
    };
    let mut bundles: Vec<Vec<Vec<u8>>> = match format {
        "jsonl" => std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                ders(v["certificatePem"].as_str().unwrap().as_bytes())
            })
            .collect(),
        // Every row's certificate_pem is one bundle of two certificates.
        "csv" => ders(&std::fs::read(path).unwrap())
            .chunks(2)
            .map(<[Vec<u8>]>::to_vec)
            .collect(),
        "pem-tar" => {
            let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
            archive
                .entries()
                .unwrap()
                .map(|e| {
                    let mut text = Vec::new();
                    std::io::Read::read_to_end(&mut e.unwrap(), &mut text).unwrap();
                    ders(&text)
                })
                .collect()
        }
        other => panic!("no format {other}"),
    };
    bundles.sort();
    bundles
}

#[test]
fn exports_carry_the_intermediate_to_a_registry_that_trusts_only_the_root() {
    let (env, set) = vendor_env(3);
    let (code, s, _) = import(&env, &set.join("good.json"), "vendor", &[]);
    assert_eq!((code, s["registered"].as_u64()), (0, Some(3)), "{s}");
    let batch = s["batch"].as_str().unwrap().to_string();
    let root = set.join("vendor-root.pem");
    let signer_ca = pem::parse(std::fs::read(set.join("signer-ca.pem")).unwrap())
        .unwrap()
        .into_contents();

    for format in ["jsonl", "csv", "pem-tar"] {
        let out = env.path(&format!("chain-export.{format}"));
        env.ok(&[
            "manifest",
            "export",
            "--batch",
            &batch,
            "--format",
            format,
            "--out",
            out.to_str().unwrap(),
        ]);

        // Each entry: the device certificate, then the vendor's signer CA;
        // openssl verifies the bundle against the root alone, and only
        // with the bundle's intermediate.
        let bundles = exported_bundles(format, &out);
        assert_eq!(bundles.len(), 3, "{format}");
        for (n, bundle) in bundles.iter().enumerate() {
            assert_eq!(bundle.len(), 2, "{format}");
            assert_eq!(bundle[1], signer_ca, "{format}");
            let file = env.path(&format!("bundle-{format}-{n}.pem"));
            let text: String = bundle
                .iter()
                .map(|der| idmint_pki::to_pem("CERTIFICATE", der))
                .collect();
            std::fs::write(&file, text).unwrap();
            let (root, file) = (root.to_str().unwrap(), file.to_str().unwrap());
            let (ok, text) = openssl(&["verify", "-CAfile", root, "-untrusted", file, file]);
            assert!(ok && text.contains(": OK"), "{format}: {text}");
            let (ok, _) = openssl(&["verify", "-CAfile", root, file]);
            assert!(!ok, "{format}: verifies without its intermediate");
        }

        // A fresh registry that trusts only the vendor root registers every
        // entry, keeps the chain, and hands it on in its own export.
        let fresh = Env::init(&[]);
        fresh.ok(&[
            "ca",
            "register",
            "--name",
            "vendor",
            "--cert",
            root.to_str().unwrap(),
        ]);
        let (code, s, report) = import(&fresh, &out, "vendor", &[]);
        assert_eq!(code, 0, "{format}: {report:?}");
        assert_eq!(
            (s["registered"].as_u64(), s["rejected"].as_u64()),
            (Some(3), Some(0)),
            "{format}: {s}"
        );
        assert_eq!(
            thing(&things(&fresh), "0123000000000000ee")["deviceId"],
            "0123000000000000ee",
            "{format}"
        );
        let again = fresh.path(&format!("again.{format}"));
        fresh.ok(&[
            "manifest",
            "export",
            "--ca",
            "vendor",
            "--format",
            format,
            "--out",
            again.to_str().unwrap(),
        ]);
        assert_eq!(exported_bundles(format, &again), bundles, "{format}");
        assert!(fresh.ok(&["audit", "verify"]).contains("intact"));
    }
}

/// A signed Trust&GO manifest made by another implementation (python's
/// `cryptography`, `tests/vectors/make.sh`: a vendor root, its signer CA
/// and manifest log signer, three secure elements) imports through the
/// root with its log signer; openssl agrees each registered certificate
/// chains to the vendor; a signature that no longer matches its element is
/// refused, and nothing of that element is registered.
#[test]
fn a_trust_and_go_manifest_signed_by_another_implementation_imports() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/manifest/trustandgo-signed");
    let p = |n: &str| vectors.join(n).to_str().unwrap().to_string();
    let registered = || {
        let env = Env::init(&[]);
        env.ok(&[
            "ca",
            "register",
            "--name",
            "microchip",
            "--cert",
            &p("root.pem"),
            "--signer",
            &p("log-signer.pem"),
        ]);
        env
    };
    let env = registered();
    let (code, summary, _) = import(&env, &vectors.join("manifest.json"), "microchip", &[]);
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["registered"], 3, "{summary}");
    assert_eq!(summary["rejected"], 0, "{summary}");
    let all = things(&env);
    for uid in [
        "0123a1b2c3d4e5f601",
        "0123a1b2c3d4e5f602",
        "0123a1b2c3d4e5f603",
    ] {
        thing(&all, uid);
        let certs = env.json(&["cert", "list", "--json", "--thing", uid]);
        let id = certs[0]["id"].as_str().expect("certificate id");
        let pem = env.path(&format!("{uid}.pem"));
        std::fs::write(&pem, env.ok(&["cert", "show", id, "--pem"])).unwrap();
        let (ok, out) = openssl(&[
            "verify",
            "-CAfile",
            &p("root.pem"),
            "-untrusted",
            &p("signer-ca.pem"),
            pem.to_str().unwrap(),
        ]);
        assert!(ok, "{uid}: {out}");
    }

    // Another registry; the second element's signature swapped for the
    // first's: refused for its signature, the others registered.
    let env = registered();
    let mut elements: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(vectors.join("manifest.json")).unwrap())
            .unwrap();
    elements[1]["signature"] = elements[0]["signature"].clone();
    let forged = env.path("forged.json");
    std::fs::write(&forged, serde_json::to_vec(&elements).unwrap()).unwrap();
    let (code, summary, report) = import(&env, &forged, "microchip", &[]);
    assert_ne!(code, 0, "a rejection fails the command");
    assert_eq!(summary["registered"], 2, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["reason"], "bad-signature", "{report:?}");
    assert!(!things(&env)
        .iter()
        .any(|t| t["name"] == "0123a1b2c3d4e5f602"));
}
