//! `idmint station run --partition esp-secure-cert|esp-nvs --programmer
//! CMD` end to end through the real binaries: `idmint devsim` devices
//! identified over the agent protocol, a programmer that is a small shell
//! script copying each partition file to a directory, and every written
//! partition read back with Espressif's own tools and checked with openssl,
//! as `batch_mint.rs` does for `batch mint`.

mod common;

use std::path::{Path, PathBuf};

use common::esp32::{espressif_tools, openssl_checks, parse_esp_secure_cert, regenerate_nvs, R};
use common::{devsim, free_port, Env};

fn create_batch(env: &Env, count: &str, extra: &[&str]) -> String {
    let mut args = vec!["batch", "create", "--product", "esp", "--count", count];
    args.extend_from_slice(extra);
    env.ok(&args).trim().to_string()
}

/// Runs the station; returns (success, per-device JSON lines, stderr).
fn station(env: &Env, args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    common::station_json(env, "3000", args)
}

/// A programmer: a shell script that checks the partition file is mode
/// 0600, notes its path in `OUT/files` and copies it to
/// `OUT/<hw_id>@<offset>.bin`. Returns (the --programmer command, OUT).
fn copying_programmer(env: &Env) -> (String, PathBuf) {
    let out = env.path("flashed");
    std::fs::create_dir_all(&out).expect("out dir");
    let script = env.path("program.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         # program.sh OFFSET FILE HW_ID OUT\n\
         set -e\n\
         mode=$(stat -c %a \"$2\")\n\
         [ \"$mode\" = 600 ] || { echo \"partition file has mode $mode\" >&2; exit 3; }\n\
         echo \"$2\" >> \"$4/files\"\n\
         cp \"$2\" \"$4/$3@$1.bin\"\n",
    )
    .expect("script");
    let command = format!(
        "sh {} {{offset}} {{file}} {{hw_id}} {}",
        script.display(),
        out.display()
    );
    (command, out)
}

fn statuses(env: &Env, batch: &str) -> Vec<String> {
    env.json(&["cert", "list", "--json"])
        .as_array()
        .expect("array")
        .iter()
        .filter(|c| c["batch"] == batch)
        .map(|c| c["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// The temporary partition files the programmer was given are gone.
fn temp_files_deleted(out: &Path) {
    let files = std::fs::read_to_string(out.join("files")).expect("files");
    for f in files.lines() {
        assert!(!Path::new(f).exists(), "{f} was left behind");
    }
}

#[test]
fn esp_secure_cert_from_the_station() -> R {
    let env = Env::init(&[]);
    let b = create_batch(&env, "3", &["--allow-inject"]);
    let d1 = devsim(&env, "e1", &[]);
    let d2 = devsim(&env, "e2", &["--no-keygen"]);
    let (programmer, out) = copying_programmer(&env);
    let (ok, lines, err) = station(
        &env,
        &[
            "--batch",
            &b,
            "--device",
            &d1.addr,
            "--device",
            &d2.addr,
            "--partition",
            "esp-secure-cert",
            "--programmer",
            &programmer,
        ],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines.len(), 2);
    temp_files_deleted(&out);
    let format = idmint_slot::PartitionFormat::EspSecureCert { size: 0x2000 };
    let certs = env.json(&["cert", "list", "--json"]);
    for (line, hw) in [("e1", "HW-e1"), ("e2", "HW-e2")].iter().map(|(n, hw)| {
        let l = lines
            .iter()
            .find(|l| l["hwId"] == *hw)
            .unwrap_or_else(|| panic!("no line for {n}: {lines:?}"));
        (l, *hw)
    }) {
        assert_eq!(line["ok"], true, "{line}");
        assert_eq!(line["injected"], true, "{line}");
        let p = &line["partition"];
        assert_eq!(p["format"], "esp-secure-cert");
        assert_eq!(p["flashOffset"], "0xD000", "the default offset");
        assert_eq!(p["size"], 0x2000);
        let file = out.join(format!("{hw}@0xD000.bin"));
        let bytes = std::fs::read(&file)?;
        assert_eq!(
            p["sha256"].as_str(),
            Some(idmint_flows::pki::sha256_hex(&bytes).as_str())
        );
        // The certificate in the partition is the one the registry holds.
        let pem = format.decode(&bytes)?;
        let id = line["certificateId"].as_str().ok_or("certificateId")?;
        let cert = certs
            .as_array()
            .ok_or("certs")?
            .iter()
            .find(|c| c["id"] == id)
            .ok_or("certificate not in the registry")?;
        assert_eq!(cert["status"], "ACTIVE");
        let (info, _) = idmint_flows::pki::CertificateInfo::from_pem(pem.device_cert.as_bytes())?;
        assert_eq!(info.id.to_string(), id);
        if espressif_tools() {
            let work = tempfile::tempdir()?;
            let contents = parse_esp_secure_cert(&file, work.path())?;
            openssl_checks(&contents)?;
        }
    }
    // Nothing was installed over the agent protocol.
    assert!(!d1.state.join("key.pem").exists());
    assert_eq!(statuses(&env, &b), vec!["ACTIVE", "ACTIVE"]);
    let things = env.json(&["thing", "list", "--json"]).to_string();
    assert!(
        things.contains("HW-e1") && things.contains("HW-e2"),
        "{things}"
    );
    env.ok(&["audit", "verify"]);

    // A clone is refused before anything is issued or programmed.
    let (ok, lines, _) = station(
        &env,
        &[
            "--batch",
            &b,
            "--device",
            &d1.addr,
            "--partition",
            "esp-secure-cert",
            "--programmer",
            &programmer,
        ],
    );
    assert!(!ok);
    assert!(
        lines[0]["error"].as_str().unwrap_or("").contains("clone"),
        "{lines:?}"
    );
    assert_eq!(std::fs::read_dir(&out)?.count(), 3, "programmed a clone");
    let shown = env.json(&["batch", "show", &b, "--json"]);
    assert_eq!(
        (shown["issued"].as_i64(), shown["spoiled"].as_i64()),
        (Some(2), Some(0))
    );
    Ok(())
}

#[test]
fn esp_nvs_from_the_station_matches_espressif_generator() -> R {
    let env = Env::init(&[]);
    let b = create_batch(&env, "1", &["--allow-inject"]);
    let d = devsim(&env, "n1", &[]);
    let (programmer, out) = copying_programmer(&env);
    let (ok, lines, err) = station(
        &env,
        &[
            "--batch",
            &b,
            "--device",
            &d.addr,
            "--partition",
            "esp-nvs",
            "--flash-offset",
            "0x9000",
            "--nvs-namespace",
            "creds",
            "--programmer",
            &programmer,
        ],
    );
    assert!(ok, "{err} {lines:?}");
    assert_eq!(lines[0]["partition"]["format"], "esp-nvs");
    temp_files_deleted(&out);
    let bytes = std::fs::read(out.join("HW-n1@0x9000.bin"))?;
    assert_eq!(bytes.len(), 0x6000);
    assert_eq!(statuses(&env, &b), vec!["ACTIVE"]);
    if espressif_tools() {
        let work = tempfile::tempdir()?;
        let contents = regenerate_nvs(&bytes, "creds", "0x6000", work.path())?;
        openssl_checks(&contents)?;
    }
    Ok(())
}

#[test]
fn failing_programmer_spoils_the_certificate() -> R {
    let env = Env::init(&[]);
    let b = create_batch(&env, "2", &["--allow-inject"]);
    let d = devsim(&env, "f1", &[]);
    let (ok, lines, _) = station(
        &env,
        &[
            "--batch",
            &b,
            "--device",
            &d.addr,
            "--partition",
            "esp-secure-cert",
            "--programmer",
            "echo 'A fatal error occurred: Failed to connect to ESP32' >&2; exit 1",
        ],
    );
    assert!(!ok, "a failed device must make the station exit non-zero");
    let line = &lines[0];
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["stage"], "program", "{line}");
    assert_eq!(line["spoiled"], true, "{line}");
    assert!(
        line["error"]
            .as_str()
            .unwrap_or("")
            .contains("Failed to connect to ESP32"),
        "{line}"
    );
    assert_eq!(statuses(&env, &b), vec!["REVOKED"]);
    let shown = env.json(&["batch", "show", &b, "--json"]);
    assert_eq!(
        (shown["issued"].as_i64(), shown["spoiled"].as_i64()),
        (Some(1), Some(1))
    );
    env.ok(&["audit", "verify"]);
    Ok(())
}

/// A programmer that hangs (here a shell whose child sleeps, as esptool
/// waiting on a board that never answers) is killed, child and all, at
/// `--programmer-timeout-secs`; the device fails at `program` and its
/// certificate is spoiled.
#[test]
fn a_hung_programmer_is_killed_at_its_timeout() -> R {
    let env = Env::init(&[]);
    let b = create_batch(&env, "2", &["--allow-inject"]);
    let d = devsim(&env, "h1", &[]);
    let started = std::time::Instant::now();
    let (ok, lines, _) = station(
        &env,
        &[
            "--batch",
            &b,
            "--device",
            &d.addr,
            "--partition",
            "esp-secure-cert",
            "--programmer-timeout-secs",
            "2",
            "--programmer",
            "echo 'Connecting....' >&2; sleep 60; true",
        ],
    );
    let took = started.elapsed();
    assert!(!ok, "a failed device must make the station exit non-zero");
    assert!(
        took < std::time::Duration::from_secs(30),
        "the station waited {took:?} for a programmer with a 2 s timeout"
    );
    let line = &lines[0];
    assert_eq!(line["stage"], "program", "{line}");
    assert_eq!(line["spoiled"], true, "{line}");
    let error = line["error"].as_str().unwrap_or("");
    assert!(
        error.contains("did not finish within 2 s") && error.contains("Connecting"),
        "{line}"
    );
    assert_eq!(statuses(&env, &b), vec!["REVOKED"]);
    Ok(())
}

#[test]
fn refused_before_any_device_is_touched() -> R {
    let env = Env::init(&[]);
    let no_inject = create_batch(&env, "2", &[]);
    // Nothing listens there: a station that reached for the device would
    // report a connect failure, not the refusal.
    let nowhere = format!("tcp://127.0.0.1:{}", free_port());
    let err = env.fails(&[
        "station",
        "run",
        "--batch",
        &no_inject,
        "--device",
        &nowhere,
        "--partition",
        "esp-secure-cert",
        "--programmer",
        "true",
    ]);
    assert!(err.contains("does not allow key injection"), "{err}");
    assert!(err.contains("--allow-inject"), "{err}");
    let shown = env.json(&["batch", "show", &no_inject, "--json"]);
    assert_eq!(shown["issued"].as_i64(), Some(0));

    let b = create_batch(&env, "2", &["--allow-inject"]);
    for (extra, needle) in [
        (vec!["--partition", "esp-nvs"], "needs --flash-offset"),
        (
            vec!["--partition", "esp-secure-cert", "--nvs-namespace", "x"],
            "--nvs-namespace is for",
        ),
        (
            vec![
                "--partition",
                "esp-secure-cert",
                "--partition-size",
                "0x800",
            ],
            "multiple of 4096",
        ),
    ] {
        let mut args = vec![
            "station",
            "run",
            "--batch",
            &b,
            "--device",
            &nowhere,
            "--programmer",
            "true",
        ];
        args.extend_from_slice(&extra);
        let err = env.fails(&args);
        assert!(err.contains(needle), "{extra:?}: {err}");
    }
    // --partition needs a programmer, and --lock is not for it.
    for extra in [
        vec!["--partition", "esp-secure-cert"],
        vec![
            "--partition",
            "esp-secure-cert",
            "--programmer",
            "true",
            "--lock",
        ],
    ] {
        let mut args = vec!["station", "run", "--batch", &b, "--device", &nowhere];
        args.extend_from_slice(&extra);
        assert!(!env.run(&args).status.success(), "{extra:?} was accepted");
    }
    let shown = env.json(&["batch", "show", &b, "--json"]);
    assert_eq!(shown["issued"].as_i64(), Some(0));
    Ok(())
}
