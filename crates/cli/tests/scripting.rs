//! Day-one scripting, through the real binary: `--json` on the commands
//! that make or change things, RFC 3339 timestamps in every JSON output,
//! ids as a unique prefix (an ambiguous one refused with its matches),
//! counts in the singular, `slot show` on the images `batch mint` makes,
//! completions and man pages, and the remote station's hint for a server
//! certificate it does not trust.

mod common;

use std::path::Path;
use std::process::Command;

use common::{openssl, openssl_csr, Env};
use idmint_slot::empty_slot_header;

const P256: &[&str] = &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"];

/// Whether `text` is an RFC 3339 UTC timestamp as idmint writes them.
fn is_rfc3339(text: &serde_json::Value) -> bool {
    let Some(t) = text.as_str() else {
        return false;
    };
    t.len() >= 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' && t.ends_with('Z')
}

#[test]
fn certificate_ids_by_unique_prefix_and_revoke_json() {
    let env = Env::init(&[]);
    let issued = env.json(&["cert", "new", "--thing", "dev-1", "--json"]);
    assert_eq!(issued["status"], "ACTIVE", "{issued}");
    assert!(is_rfc3339(&issued["notAfter"]), "{issued}");
    let id = issued["id"].as_str().expect("id").to_string();

    // A unique prefix names the certificate, in any case.
    let shown = env.json(&["cert", "show", &id[..8], "--json"]);
    assert_eq!(shown["id"], id.as_str());
    assert!(is_rfc3339(&shown["notAfter"]), "{shown}");
    let upper = id[..10].to_ascii_uppercase();
    assert_eq!(
        env.json(&["cert", "show", &upper, "--json"])["id"],
        id.as_str()
    );

    // Too short, or matching nothing: not found, with the list command.
    for text in [&id[..3], "ffffffffffffffff0000"] {
        let err = env.fails(&["cert", "show", text]);
        assert!(err.contains("not found"), "{err}");
        assert!(err.contains("idmint cert list"), "{err}");
    }

    // revoke, deactivate and activate by prefix, with --json.
    let other = env.json(&["cert", "new", "--thing", "dev-2", "--json"]);
    let other_id = other["id"].as_str().expect("id");
    let off = env.json(&["cert", "deactivate", &other_id[..6], "--json"]);
    assert_eq!(off["status"], "INACTIVE");
    let on = env.json(&["cert", "activate", &other_id[..6], "--json"]);
    assert_eq!(on["status"], "ACTIVE");
    let revoked = env.json(&[
        "cert",
        "revoke",
        &id[..12],
        "--reason",
        "keyCompromise",
        "--json",
    ]);
    assert_eq!(revoked["id"], id.as_str());
    assert_eq!(revoked["status"], "REVOKED");
    assert!(is_rfc3339(&revoked["revokedAt"]), "{revoked}");
    assert!(revoked["certificatePem"]
        .as_str()
        .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----")));
}

#[test]
fn batch_ids_by_unique_prefix_and_an_ambiguous_one_is_refused() {
    let env = Env::init(&[]);
    let a = env.ok(&["batch", "create", "--product", "widget", "--count", "5"]);
    let b = env.ok(&["batch", "create", "--product", "widget", "--count", "5"]);
    let (a, b) = (a.trim(), b.trim());
    assert_ne!(a, b);
    // Both start with "widget-": ambiguous, and both are listed.
    let err = env.fails(&["batch", "show", "widget-"]);
    assert!(err.contains("ambiguous"), "{err}");
    assert!(err.contains(a) && err.contains(b), "{err}");
    // The whole id, and a prefix long enough to be unique, work.
    assert_eq!(env.json(&["batch", "show", a, "--json"])["id"], a);
    let unique = a.len() - 2;
    if !b.starts_with(&a[..unique]) {
        assert_eq!(
            env.json(&["batch", "show", &a[..unique], "--json"])["id"],
            a
        );
    }
}

#[test]
fn cert_issue_json_has_the_status_and_refuses_an_existing_out() {
    let env = Env::init(&[]);
    let csr = openssl_csr(env.dir.path(), "dev-9", P256);
    let out = env.path("dev-9.pem");
    let issued = env.json(&[
        "cert",
        "issue",
        "--csr",
        &csr.to_string_lossy(),
        "--status",
        "PENDING_ACTIVATION",
        "--out",
        &out.to_string_lossy(),
        "--json",
    ]);
    assert_eq!(issued["status"], "PENDING_ACTIVATION", "{issued}");
    assert!(is_rfc3339(&issued["notBefore"]) && is_rfc3339(&issued["notAfter"]));
    let before = env.counts();
    let first = std::fs::read_to_string(&out).expect("written");
    let err = env.fails(&[
        "cert",
        "issue",
        "--csr",
        &csr.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&out).expect("kept"), first);
    assert_eq!(env.counts(), before, "a certificate was issued");
}

#[test]
fn token_create_json() {
    let env = Env::init(&[]);
    let batch = env.ok(&["batch", "create", "--product", "w", "--count", "1"]);
    let token = env.json(&[
        "token",
        "create",
        "--name",
        "line-1",
        "--role",
        "enroll",
        "--batch",
        batch.trim(),
        "--json",
    ]);
    assert_eq!(token["name"], "line-1");
    assert_eq!(token["role"], "enroll");
    assert!(token["token"].as_str().is_some_and(|t| t.len() > 20));
}

/// A raw golden image: code bytes around one empty 4 KiB slot.
fn golden_bin() -> Vec<u8> {
    let mut img: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    img[2048..2048 + 32].copy_from_slice(&empty_slot_header(4096));
    img[2048 + 32..2048 + 4096].fill(0);
    img
}

fn mint_json(env: &Env, golden: &Path, format: &str, out: &str) -> serde_json::Value {
    env.json(&[
        "batch",
        "mint",
        "--golden",
        &golden.to_string_lossy(),
        "--format",
        format,
        "--count",
        "2",
        "--product",
        "widget",
        "--endpoint",
        "mqtts://iot.example.com:8883",
        "--out",
        out,
        "--json",
    ])
}

/// `slot show` of one image agrees with the registry, and its `--pem`
/// verifies with openssl.
fn check_slot_show(env: &Env, image: &Path, format: &str) {
    let image_s = image.to_string_lossy().to_string();
    let view = env.json(&["slot", "show", &image_s, "--json"]);
    assert_eq!(view["format"], format, "{view}");
    let thing = view["thingName"].as_str().expect("thing name");
    assert_eq!(view["deviceId"], thing);
    assert_eq!(view["endpoint"], "mqtts://iot.example.com:8883");
    let cert = &view["certificate"];
    let registered = env.json(&["cert", "show", cert["id"].as_str().expect("id"), "--json"]);
    assert_eq!(registered["thing"], thing);
    assert_eq!(cert["serial"], registered["serial"]);
    assert_eq!(cert["notAfter"], registered["notAfter"]);
    assert!(is_rfc3339(&cert["notBefore"]));
    assert!(cert["subject"].as_str().is_some_and(|s| s.contains(thing)));
    assert!(view["privateKeyBytes"].as_u64().is_some_and(|n| n > 32));
    assert!(!view["chain"].as_array().expect("chain").is_empty());
    let names: Vec<&str> = view["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for n in ["device id", "leaf certificate", "private key", "thing name"] {
        assert!(names.contains(&n), "{n} missing in {names:?}");
    }

    let text = env.ok(&["slot", "show", &image_s]);
    assert!(text.contains(thing) && text.contains("serial:"), "{text}");
    assert!(!text.contains("PRIVATE KEY"), "{text}");

    let pem = env.path("slot-show.pem");
    std::fs::write(&pem, env.ok(&["slot", "show", &image_s, "--pem"])).expect("pem");
    let (root, _) = env.ca_files();
    let (ok, out) = openssl(&[
        "verify",
        "-CAfile",
        &root.to_string_lossy(),
        "-untrusted",
        &pem.to_string_lossy(),
        &pem.to_string_lossy(),
    ]);
    assert!(ok, "openssl verify: {out}");
}

#[test]
fn batch_mint_json_and_slot_show_of_every_format() {
    let env = Env::init(&[]);
    let golden = env.path("golden.bin");
    std::fs::write(&golden, golden_bin()).expect("golden");
    let report = mint_json(&env, &golden, "bin", "out-bin");
    assert_eq!(report["minted"], 2, "{report}");
    assert_eq!(report["count"], 2);
    assert!(report["perSecond"].is_number() && report["seconds"].is_number());
    let batch = report["batch"].as_str().expect("batch").to_string();
    let images = |dir: &str| -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(env.path(dir).join("images"))
            .expect("images")
            .map(|e| e.expect("entry").path())
            .collect();
        v.sort();
        v
    };
    check_slot_show(&env, &images("out-bin")[0], "bin");

    // resume of a finished batch: nothing to do, said in JSON; by prefix.
    let resumed = env.json(&["batch", "resume", &batch, "--json"]);
    assert_eq!(resumed["batch"], batch.as_str());
    assert_eq!(resumed["minted"], 0, "{resumed}");

    // Intel HEX, through objcopy as a firmware build makes it.
    let hex = env.path("golden.hex");
    let status = Command::new("objcopy")
        .args(["-I", "binary", "-O", "ihex"])
        .arg(&golden)
        .arg(&hex)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    mint_json(&env, &hex, "hex", "out-hex");
    check_slot_show(&env, &images("out-hex")[0], "hex");

    // A blob (only the slot bytes, `.cred`): read as bin.
    mint_json(&env, &golden, "blob", "out-blob");
    let blob = &images("out-blob")[0];
    assert_eq!(blob.extension().and_then(|e| e.to_str()), Some("cred"));
    check_slot_show(&env, blob, "bin");
    let as_blob = env.json(&[
        "slot",
        "show",
        &blob.to_string_lossy(),
        "--format",
        "blob",
        "--json",
    ]);
    assert_eq!(as_blob["format"], "blob");
    assert_eq!(as_blob["location"], 0);

    // ELF from gcc: the slot in its `.idmint_cred` section.
    let src = env.path("fw.c");
    std::fs::write(
        &src,
        "__attribute__((section(\".idmint_cred\"), used, aligned(4)))\n\
         const unsigned char idmint_cred_slot[4096] = {\n\
         'I','D','M','I','N','T','-','C','R','E','D','-','S','L','O','T',\n\
         0x00, 0x10, 0x00, 0x00 };\n\
         int main(void) { return idmint_cred_slot[20]; }\n",
    )
    .expect("source");
    let elf = env.path("fw.elf");
    let status = Command::new("gcc")
        .arg(&src)
        .arg("-o")
        .arg(&elf)
        .status()
        .expect("gcc");
    assert!(status.success());
    mint_json(&env, &elf, "elf", "out-elf");
    check_slot_show(&env, &images("out-elf")[0], "elf");

    // The golden image itself: its slot is empty, said in one line.
    let err = env.fails(&["slot", "show", &golden.to_string_lossy()]);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn slot_show_reads_esp_secure_cert_and_nvs_partitions() {
    use idmint_slot::{PartitionFormat, PemCredentials};
    let env = Env::init(&[]);
    env.ok(&["cert", "new", "--thing", "esp-1"]);
    let cert = std::fs::read_to_string(env.path("esp-1.cert.pem")).expect("cert");
    let key = std::fs::read_to_string(env.path("esp-1.key.pem")).expect("key");
    let (root, issuing) = env.ca_files();
    let issuing_pem = std::fs::read_to_string(&issuing).expect("issuing");
    let credentials = PemCredentials {
        device_cert: format!("{cert}{issuing_pem}"),
        private_key: idmint_slot::Zeroizing::new(key),
        ca_cert: std::fs::read_to_string(&root).expect("root"),
    };
    for (format, shown, namespace) in [
        (
            PartitionFormat::EspSecureCert { size: 0x2000 },
            "esp-secure-cert",
            None,
        ),
        (
            PartitionFormat::EspNvs {
                size: 0x6000,
                namespace: "factory_creds".into(),
            },
            "esp-nvs",
            Some("factory_creds/dev_cert"),
        ),
    ] {
        let partition = format.encode_pem(&credentials).expect("partition");
        let image = env.path(&format!("{shown}.bin"));
        std::fs::write(&image, &*partition).expect("write");
        let view = env.json(&["slot", "show", &image.to_string_lossy(), "--json"]);
        assert_eq!(view["format"], shown, "{view}");
        assert!(view["certificate"]["subject"]
            .as_str()
            .is_some_and(|s| s.contains("esp-1")));
        assert_eq!(view["chain"].as_array().map(Vec::len), Some(1), "{view}");
        assert_eq!(view["trustAnchors"].as_array().map(Vec::len), Some(1));
        assert!(view["privateKeyBytes"].as_u64().is_some_and(|n| n > 100));
        if let Some(key) = namespace {
            let names: Vec<&str> = view["records"]
                .as_array()
                .expect("records")
                .iter()
                .filter_map(|r| r["name"].as_str())
                .collect();
            assert!(names.contains(&key), "{names:?}");
        }
        let text = env.ok(&["slot", "show", &image.to_string_lossy()]);
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        // --pem prints the device certificate and its chain, which
        // openssl reads.
        let pem = env.path(&format!("{shown}.pem"));
        std::fs::write(
            &pem,
            env.ok(&["slot", "show", &image.to_string_lossy(), "--pem"]),
        )
        .expect("pem");
        let subject = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(&pem)
            .output()
            .expect("openssl");
        assert!(
            String::from_utf8_lossy(&subject.stdout).contains("esp-1"),
            "{shown}: {}",
            String::from_utf8_lossy(&subject.stderr)
        );
    }
}

#[test]
fn offline_json_times_are_rfc3339_and_counts_are_singular() {
    let env = Env::init(&[]);
    let identity = age::x25519::Identity::generate();
    let key = env.path("factory.agekey");
    std::fs::write(
        &key,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .expect("age key");
    let bundle = env.path("acme.auth");
    let report = env.json(&[
        "batch",
        "authorize",
        "--factory",
        "acme",
        "--count",
        "1",
        "--encrypt-to",
        &identity.to_public().to_string(),
        "--out",
        &bundle.to_string_lossy(),
        "--json",
    ]);
    assert!(is_rfc3339(&report["notAfter"]), "{report}");
    let batch = report["batch"].as_str().expect("batch");
    let shown = env.json(&["batch", "show", batch, "--json"]);
    assert!(is_rfc3339(&shown["params"]["notAfter"]), "{shown}");
    let log = env.path("acme.log");
    let out = Command::new(env!("CARGO_BIN_EXE_idmint"))
        .env("IDMINT_DATA", env.path("no-maker-data-here"))
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env_remove("IDMINT_STORE")
        .current_dir(env.dir.path())
        .args(["station", "run", "--authorization"])
        .arg(&bundle)
        .arg("--identity")
        .arg(&key)
        .arg("--log")
        .arg(&log)
        .arg("--device")
        .arg(format!(
            "exec:{} devsim --listen stdio --state {}",
            env!("CARGO_BIN_EXE_idmint"),
            env.path("board").display()
        ))
        .output()
        .expect("station");
    assert!(
        out.status.success(),
        "station: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = env.ok(&["batch", "reconcile", &log.to_string_lossy()]);
    assert!(text.contains("registered 1 certificate\n"), "{text}");
    assert!(!text.contains("1 certificates"), "{text}");
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let env = Env::new();
    for (shell, needle) in [
        ("bash", "_idmint()"),
        ("zsh", "#compdef idmint"),
        ("fish", "complete -c idmint"),
    ] {
        let script = env.ok(&["completions", shell]);
        assert!(script.contains(needle), "{shell}: {script:.200}");
        assert!(script.contains("slot"), "{shell} lacks the slot command");
    }
    let dir = env.path("man");
    env.ok(&["man", "--out-dir", &dir.to_string_lossy()]);
    for page in [
        "idmint.1",
        "idmint-cert-issue.1",
        "idmint-batch-mint.1",
        "idmint-slot-show.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|_| panic!("{page}"));
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    // --help shows an example on the main commands.
    for cmd in [
        &["batch", "mint", "--help"][..],
        &["cert", "issue", "--help"],
        &["station", "run", "--help"],
        &["serve", "--help"],
        &["manifest", "import", "--help"],
    ] {
        let help = env.ok(cmd);
        assert!(help.contains("Example"), "{cmd:?}: {help}");
    }
}

#[test]
fn a_remote_station_that_does_not_trust_the_server_is_told_what_to_do() {
    let env = Env::init(&[]);
    let batch = env.ok(&["batch", "create", "--product", "w", "--count", "1"]);
    let batch = batch.trim();
    let token = env.json(&[
        "token", "create", "--name", "st", "--role", "station", "--batch", batch, "--json",
    ]);
    let token_file = env.path("station.token");
    std::fs::write(&token_file, token["token"].as_str().expect("token")).expect("token file");
    let mut serve = env.cmd();
    serve.args(["serve", "--listen", "127.0.0.1:0", "--mqtt-listen", "off"]);
    let (mut child, listening) = common::spawn_serve(&mut serve, false, None);
    let out = Command::new(env!("CARGO_BIN_EXE_idmint"))
        .env_remove("IDMINT_CA_PASSPHRASE")
        .env("IDMINT_DATA", env.path("no-data"))
        .current_dir(env.dir.path())
        .args(["station", "run", "--batch", batch, "--server"])
        .arg(format!("https://localhost:{}", listening.https))
        .arg("--token-file")
        .arg(&token_file)
        .args(["--device", "tcp://127.0.0.1:9"])
        .output()
        .expect("station");
    let _ = child.kill();
    let _ = child.wait();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--ca-cert"), "{err}");
    assert!(err.contains("idmint ca show root --pem"), "{err}");
}

/// The prefix lookups on PostgreSQL (LIKE is case-sensitive there: hex
/// prefixes are lowercased first).
#[test]
fn id_prefixes_on_postgresql() {
    let Ok(url) = std::env::var("IDMINT_TEST_POSTGRES") else {
        assert!(
            std::env::var_os("IDMINT_REQUIRE_ALL").is_none(),
            "IDMINT_TEST_POSTGRES is not set, and IDMINT_REQUIRE_ALL (scripts/test.sh) forbids skipping"
        );
        eprintln!("skipped: IDMINT_TEST_POSTGRES is not set");
        return;
    };
    // A database of its own, so the test can run again on the same server.
    let name = format!(
        "idmint_prefix_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let created = Command::new("psql")
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
    let issued = env.json(&["cert", "new", "--thing", "pg-1", "--json"]);
    let id = issued["id"].as_str().expect("id");
    let upper = id[..8].to_ascii_uppercase();
    assert_eq!(env.json(&["cert", "show", &upper, "--json"])["id"], id);
    let revoked = env.json(&["cert", "revoke", &id[..6], "--json"]);
    assert_eq!(revoked["status"], "REVOKED");
    env.ok(&["batch", "create", "--product", "widget", "--count", "1"]);
    env.ok(&["batch", "create", "--product", "widget", "--count", "1"]);
    let err = env.fails(&["batch", "show", "widget-"]);
    assert!(err.contains("ambiguous"), "{err}");
}
