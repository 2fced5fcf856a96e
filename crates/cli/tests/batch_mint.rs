//! Scenario 1 end to end through the real binary: `idmint batch mint` in all
//! four formats, the C reader and openssl on the images, bad golden images
//! refused before anything is registered, kill -9 and `batch resume`, and
//! `--encrypt-to` archives opened with the recipient's key.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use idmint_slot::{empty_slot_header, find_slot, Credentials};

mod common;

use common::esp32::{
    espressif_tools, openssl_checks, parse_esp_secure_cert, regenerate_nvs, sh, R,
};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Result<Env, Box<dyn std::error::Error>> {
        let env = Env {
            dir: tempfile::tempdir()?,
        };
        let out = env.run(&["init", "--org", "Batch Test Co"])?;
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(env)
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_idmint"));
        c.args(args)
            .env("IDMINT_DATA", self.path("data"))
            .env("IDMINT_CA_PASSPHRASE", "batch-test-passphrase")
            .env_remove("IDMINT_STORE");
        c
    }
    fn run(&self, args: &[&str]) -> std::io::Result<Output> {
        self.cmd(args).output()
    }
    fn ok(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let out = self.run(args)?;
        if !out.status.success() {
            return Err(format!("{args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
    fn json(&self, args: &[&str]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_str(&self.ok(args)?)?)
    }
    fn counts(&self) -> Result<(usize, usize), Box<dyn std::error::Error>> {
        let certs = self.json(&["cert", "list", "--json"])?;
        let batches = self.json(&["batch", "list", "--json"])?;
        Ok((arr_len(&certs), arr_len(&batches)))
    }
    fn ca_pem(&self) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let mut pem = String::new();
        for name in ["root", "issuing"] {
            pem.push_str(&self.ok(&["ca", "show", name, "--pem"])?);
        }
        let p = self.path("cas.pem");
        std::fs::write(&p, pem)?;
        Ok(p)
    }
}

fn arr_len(v: &serde_json::Value) -> usize {
    v.as_array().map(Vec::len).unwrap_or(0)
}

/// A raw golden image: code bytes around one empty slot of `cap` bytes.
fn golden_bin(cap: u32) -> Vec<u8> {
    let mut img: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    let at = 4096;
    img[at..at + 32].copy_from_slice(&empty_slot_header(cap));
    for b in &mut img[at + 32..at + cap as usize] {
        *b = 0;
    }
    img
}

fn manifest(out: &Path) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(out.join("manifest.jsonl"))?;
    Ok(text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// Checks one image's credentials: key matches certificate, chain verifies,
/// manifest certificate id matches.
fn check_creds(env: &Env, creds: &Credentials, cas: &Path, tag: &str) -> R {
    let cert = env.path(&format!("{tag}.crt"));
    std::fs::write(
        &cert,
        idmint_flows::pki::to_pem("CERTIFICATE", &creds.certificate),
    )?;
    sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(cas)
        .arg(&cert))?;
    let key = env.path(&format!("{tag}.key"));
    std::fs::write(&key, &*creds.private_key)?;
    let a = sh(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert))?;
    let b = sh(Command::new("openssl")
        .args(["pkey", "-inform", "DER", "-pubout", "-in"])
        .arg(&key))?;
    assert_eq!(a, b, "key does not match certificate");
    assert!(!creds.chain.is_empty());
    assert_eq!(creds.device_id, creds.thing_name);
    Ok(())
}

fn mint_ok(
    env: &Env,
    golden: &Path,
    format: &str,
    n: usize,
    out: &Path,
) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let count = n.to_string();
    let stdout = env.ok(&[
        "batch",
        "mint",
        "--golden",
        golden.to_str().ok_or("path")?,
        "--count",
        &count,
        "--product",
        "widget",
        "--format",
        format,
        "--endpoint",
        "mqtts://iot.example.com:8883",
        "--out",
        out.to_str().ok_or("path")?,
    ])?;
    assert!(stdout.contains("identities/s"), "{stdout}");
    let mut imgs: Vec<PathBuf> = std::fs::read_dir(out.join("images"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    imgs.sort();
    assert_eq!(imgs.len(), n);
    let man = manifest(out)?;
    assert_eq!(man.len(), n);
    let ids: BTreeSet<String> = man
        .iter()
        .map(|m| m["certificateId"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids.len(), n);
    for m in &man {
        for f in [
            "deviceId",
            "thingName",
            "certificateId",
            "certificatePem",
            "imageSha256",
        ] {
            assert!(m[f].is_string(), "manifest lacks {f}");
        }
    }
    Ok(imgs)
}

#[test]
fn bin_and_blob_with_c_reader_and_openssl() -> R {
    let env = Env::new()?;
    let cas = env.ca_pem()?;
    let golden = golden_bin(4096);
    let gpath = env.path("golden.bin");
    std::fs::write(&gpath, &golden)?;
    let imgs = mint_ok(&env, &gpath, "bin", 12, &env.path("out"))?;
    for (i, p) in imgs.iter().enumerate() {
        let img = std::fs::read(p)?;
        assert_eq!(img.len(), golden.len());
        assert_eq!(img[..4096], golden[..4096]);
        assert_eq!(img[8192 - 100..], golden[8192 - 100..]);
        let (off, slot) = find_slot(&img)?;
        assert_eq!(off, 4096);
        let creds = Credentials::from_slot(&slot)?;
        assert_eq!(
            creds.endpoint.as_deref(),
            Some("mqtts://iot.example.com:8883")
        );
        assert_eq!(creds.trust_anchors.len(), 1);
        if i < 2 {
            check_creds(&env, &creds, &cas, &format!("bin{i}"))?;
        }
    }
    // The C reader, compiled with gcc, reads the key and certificate back.
    let fw = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware");
    let prog = env.path("dump.c");
    std::fs::write(&prog, C_DUMP)?;
    let exe = env.path("dump");
    sh(Command::new("gcc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(&fw)
        .arg(&prog)
        .arg(fw.join("idmint_cred.c"))
        .arg("-o")
        .arg(&exe))?;
    let cert = env.path("c.der");
    let key = env.path("c.key");
    sh(Command::new(&exe).arg(&imgs[0]).arg(&cert).arg(&key))?;
    let a = sh(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-pubkey", "-in"])
        .arg(&cert))?;
    let b = sh(Command::new("openssl")
        .args(["pkey", "-inform", "DER", "-pubout", "-in"])
        .arg(&key))?;
    assert_eq!(a, b);
    sh(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(&cert)
        .arg("-out")
        .arg(env.path("c.pem")))?;
    sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&cas)
        .arg(env.path("c.pem")))?;

    // Blob: only the slot.
    let blobs = mint_ok(&env, &gpath, "blob", 5, &env.path("blob"))?;
    for p in &blobs {
        assert!(p.to_string_lossy().ends_with(".cred"));
        let b = std::fs::read(p)?;
        assert_eq!(b.len(), 4096);
        let (_, slot) = find_slot(&b)?;
        check_creds(&env, &Credentials::from_slot(&slot)?, &cas, "blob")?;
    }
    // Device ids unique across batches; list/show.
    let batches = env.json(&["batch", "list", "--json"])?;
    assert_eq!(arr_len(&batches), 2);
    // Both batches may be created within one second: list order is then
    // by (random) id, so pick the 12-device batch by its count.
    let id = batches
        .as_array()
        .ok_or("batches")?
        .iter()
        .find(|b| b["count"] == 12)
        .and_then(|b| b["id"].as_str())
        .ok_or("id")?;
    let show = env.json(&["batch", "show", id, "--json"])?;
    assert_eq!(show["issued"], 12);
    assert_eq!(show["spoiled"], 0);
    assert_eq!(show["remaining"], 0);
    let things = env.json(&["thing", "list", "--json"])?;
    assert_eq!(arr_len(&things), 17);
    Ok(())
}

const C_DUMP: &str = r#"
#include <stdio.h>
#include "idmint_cred.h"
static unsigned char image[1 << 22];
int main(int argc, char **argv) {
    idmint_cred_iter it; uint16_t type; const uint8_t *v; uint32_t len; size_t n; FILE *f; int got = 0;
    if (argc != 4 || !(f = fopen(argv[1], "rb"))) return 2;
    n = fread(image, 1, sizeof image, f); fclose(f);
    if (idmint_cred_open(&it, image, n) != IDMINT_CRED_OK) return 3;
    while (idmint_cred_next(&it, &type, &v, &len) == IDMINT_CRED_OK) {
        const char *out = type == IDMINT_CRED_CERTIFICATE ? argv[2] : type == IDMINT_CRED_PRIVATE_KEY ? argv[3] : NULL;
        if (out) { FILE *o = fopen(out, "wb"); if (!o) return 4; fwrite(v, 1, len, o); fclose(o); got++; }
    }
    return got == 2 ? 0 : 5;
}
"#;

/// Intel HEX of `data` at address 0x08000000, 16 bytes a record.
fn to_hex(data: &[u8]) -> String {
    let mut s = String::from(":020000040800F2\n");
    for (i, chunk) in data.chunks(16).enumerate() {
        let addr = (i * 16) as u16;
        let mut rec = vec![chunk.len() as u8, (addr >> 8) as u8, addr as u8, 0];
        rec.extend_from_slice(chunk);
        let sum = rec.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        rec.push(sum.wrapping_neg());
        s.push(':');
        for b in rec {
            s.push_str(&format!("{b:02X}"));
        }
        s.push('\n');
    }
    s.push_str(":00000001FF\n");
    s
}

#[test]
fn hex_round_trips() -> R {
    let env = Env::new()?;
    let cas = env.ca_pem()?;
    let golden = golden_bin(4096);
    let text = to_hex(&golden);
    let gpath = env.path("golden.hex");
    std::fs::write(&gpath, &text)?;
    let imgs = mint_ok(&env, &gpath, "hex", 4, &env.path("out"))?;
    for p in &imgs {
        let out = std::fs::read_to_string(p)?;
        // Lines outside the slot are byte-identical, and every record checks.
        let mut bytes = vec![0u8; golden.len()];
        for rec in ihex::Reader::new(&out) {
            if let ihex::Record::Data { offset, value } = rec? {
                bytes[offset as usize..offset as usize + value.len()].copy_from_slice(&value);
            }
        }
        assert_eq!(bytes[..4096], golden[..4096]);
        assert_eq!(bytes[8192..], golden[8192..]);
        let (_, slot) = find_slot(&bytes)?;
        check_creds(&env, &Credentials::from_slot(&slot)?, &cas, "hex")?;
    }
    // A corrupt checksum is refused, nothing registered.
    let before = env.counts()?;
    let bad = text.replacen(":10", ":11", 3);
    std::fs::write(env.path("bad.hex"), bad)?;
    refused(&env, "bad.hex", "hex", "line")?;
    assert_eq!(env.counts()?, before);
    Ok(())
}

fn refused(env: &Env, golden: &str, format: &str, needle: &str) -> R {
    let g = env.path(golden);
    let out = env.run(&[
        "batch",
        "mint",
        "--golden",
        g.to_str().ok_or("p")?,
        "--format",
        format,
        "--count",
        "3",
        "--product",
        "bad",
        "--out",
        env.path("bad-out").to_str().ok_or("p")?,
    ])?;
    assert!(!out.status.success(), "{golden} accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.to_lowercase().contains(needle),
        "{golden}: {err} lacks {needle}"
    );
    assert!(!env.path("bad-out").join("images").exists());
    Ok(())
}

#[test]
fn elf_from_gcc_and_bad_inputs() -> R {
    let env = Env::new()?;
    let cas = env.ca_pem()?;
    let src = env.path("fw.c");
    std::fs::write(&src, ELF_SRC)?;
    let elf = env.path("fw.elf");
    sh(Command::new("gcc").arg("-O1").arg(&src).arg("-o").arg(&elf))?;
    let golden = std::fs::read(&elf)?;
    let imgs = mint_ok(&env, &elf, "elf", 3, &env.path("out"))?;
    for p in &imgs {
        let img = std::fs::read(p)?;
        assert_eq!(img.len(), golden.len());
        sh(Command::new("readelf").args(["-S", "-h"]).arg(p))?;
        let (off, slot) = find_slot(&img)?;
        assert_eq!(img[..off], golden[..off]);
        assert_eq!(img[off + 4096..], golden[off + 4096..]);
        check_creds(&env, &Credentials::from_slot(&slot)?, &cas, "elf")?;
    }
    let before = env.counts()?;
    // ELF without the section.
    std::fs::write(env.path("nosec.c"), "int main(void){return 0;}\n")?;
    sh(Command::new("gcc")
        .arg(env.path("nosec.c"))
        .arg("-o")
        .arg(env.path("nosec.elf")))?;
    refused(&env, "nosec.elf", "elf", ".idmint_cred")?;
    // No slot, two slots, too small, already written.
    std::fs::write(env.path("none.bin"), vec![0u8; 8192])?;
    refused(&env, "none.bin", "bin", "slot")?;
    let mut two = golden_bin(4096);
    two.extend_from_slice(&golden_bin(4096));
    std::fs::write(env.path("two.bin"), two)?;
    refused(&env, "two.bin", "bin", "slot")?;
    std::fs::write(env.path("small.bin"), golden_bin(512))?;
    refused(&env, "small.bin", "bin", "too small")?;
    let written = std::fs::read(&imgs[0])?;
    std::fs::write(env.path("written.elf"), written)?;
    refused(&env, "written.elf", "elf", "credentials")?;
    assert_eq!(env.counts()?, before);
    Ok(())
}

const ELF_SRC: &str = r#"
__attribute__((section(".idmint_cred"), used, aligned(4)))
const unsigned char idmint_cred_slot[4096] = {
    'I','D','M','I','N','T','-','C','R','E','D','-','S','L','O','T',
    0x00, 0x10, 0x00, 0x00, 0,0,0,0, 0,0,0,0, 0,0,0,0 };
int main(void) { return idmint_cred_slot[20]; }
"#;

/// Reads one output file: its certificate id and device id.
type ReadBack = dyn Fn(&Path, &[u8]) -> Result<(String, String), Box<dyn std::error::Error>>;

/// Starts `batch mint` with `args` for `count` devices, kills it (SIGKILL)
/// once most files exist, resumes, and checks that the registry, the files
/// and the manifest agree exactly.
fn kill_then_resume(env: &Env, args: &[&str], count: usize, read: &ReadBack) -> R {
    let out = env.path("out");
    let count_s = count.to_string();
    let mut all: Vec<&str> = vec!["batch", "mint", "--count", &count_s, "--product", "kill"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", out.to_str().ok_or("p")?]);
    let mut child = env
        .cmd(&all)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    // Kill once some images exist and some devices are registered.
    let started = Instant::now();
    loop {
        let n = std::fs::read_dir(out.join("images"))
            .map(|d| d.count())
            .unwrap_or(0);
        if n >= count * 5 / 8 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let batches = env.json(&["batch", "list", "--json"])?;
    let id = batches[0]["id"].as_str().ok_or("id")?.to_string();
    assert_ne!(
        batches[0]["state"], "COMPLETE",
        "the mint finished before the kill: raise the count"
    );
    let resumed = env.ok(&["batch", "resume", &id])?;
    assert!(resumed.contains("identities/s"), "{resumed}");
    // Registry and output agree exactly.
    let show = env.json(&["batch", "show", &id, "--json"])?;
    assert_eq!(show["state"], "COMPLETE");
    assert_eq!(show["good"], count);
    let man = manifest(&out)?;
    assert_eq!(man.len(), count);
    let certs = env.json(&["cert", "list", "--batch", &id, "--json"])?;
    let active: BTreeSet<String> = certs
        .as_array()
        .ok_or("certs")?
        .iter()
        .filter(|c| c["status"] != "REVOKED")
        .map(|c| c["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(active.len(), count);
    let mut images = BTreeSet::new();
    let mut devices = BTreeSet::new();
    for e in std::fs::read_dir(out.join("images"))? {
        let p = e?.path();
        let b = std::fs::read(&p)?;
        let (cert, device) = read(&p, &b)?;
        images.insert(cert);
        assert!(devices.insert(device), "device id twice");
    }
    assert_eq!(images, active, "images and registered certificates differ");
    let from_manifest: BTreeSet<String> = man
        .iter()
        .map(|m| m["certificateId"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(from_manifest, active);
    let audit = env.ok(&["audit", "verify"])?;
    assert!(!audit.to_lowercase().contains("broken"), "{audit}");
    Ok(())
}

#[test]
fn kill_and_resume() -> R {
    let env = Env::new()?;
    let gpath = env.path("golden.bin");
    std::fs::write(&gpath, golden_bin(4096))?;
    let golden = gpath.to_str().ok_or("p")?;
    kill_then_resume(
        &env,
        &["--golden", golden, "--format", "blob"],
        4000,
        &|_, b| {
            let (_, slot) = find_slot(b)?;
            let creds = Credentials::from_slot(&slot)?;
            Ok((
                idmint_flows::pki::certificate_id(&creds.certificate).into_string(),
                creds.device_id,
            ))
        },
    )
}

#[test]
fn encrypt_to_age_recipient() -> R {
    use std::io::Read;
    use std::str::FromStr;
    let env = Env::new()?;
    let gpath = env.path("golden.bin");
    std::fs::write(&gpath, golden_bin(4096))?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let out = env.path("out");
    env.ok(&[
        "batch",
        "mint",
        "--golden",
        gpath.to_str().ok_or("p")?,
        "--count",
        "6",
        "--product",
        "enc",
        "--encrypt-to",
        &recipient,
        "--out",
        out.to_str().ok_or("p")?,
    ])?;
    assert!(
        !out.join("images").read_dir()?.any(|_| true),
        "plaintext images on disk"
    );
    assert!(!out.join("manifest.jsonl").exists());
    let archive: Vec<PathBuf> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tar.age"))
        .collect();
    assert_eq!(archive.len(), 1);
    let decryptor = age::Decryptor::new(std::fs::File::open(&archive[0])?)?;
    let mut tar_bytes = Vec::new();
    decryptor
        .decrypt(std::iter::once(&identity as &dyn age::Identity))?
        .read_to_end(&mut tar_bytes)?;
    let mut names = Vec::new();
    let mut tar = tar::Archive::new(&tar_bytes[..]);
    for e in tar.entries()? {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b)?;
        if name.starts_with("images/") {
            let (_, slot) = find_slot(&b)?;
            Credentials::from_slot(&slot)?;
        }
        names.push(name);
    }
    assert_eq!(names.iter().filter(|n| n.starts_with("images/")).count(), 6);
    assert!(names.contains(&"manifest.jsonl".to_string()));
    // The standard age tool opens it too, when installed.
    if Command::new("age").arg("--version").output().is_ok() {
        let key = env.path("age.key");
        std::fs::write(
            &key,
            format!(
                "{}\n",
                age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
            ),
        )?;
        let plain = sh(Command::new("sh").arg("-c").arg(format!(
            "age -d -i {} {} | tar -tf -",
            key.display(),
            archive[0].display()
        )))?;
        assert!(plain.contains("manifest.jsonl"));
    } else {
        idmint_testkit::skip("the age CLI", "apt-get install age");
    }
    let _ = age::x25519::Recipient::from_str(&recipient)?;
    // Garbage recipient refused before anything is registered.
    let before = env.counts()?;
    let bad = env.run(&[
        "batch",
        "mint",
        "--golden",
        gpath.to_str().ok_or("p")?,
        "--count",
        "2",
        "--product",
        "enc",
        "--encrypt-to",
        "nope",
        "--out",
        env.path("o2").to_str().ok_or("p")?,
    ])?;
    assert!(!bad.status.success());
    assert_eq!(env.counts()?, before);
    Ok(())
}

/// Mints `n` partitions with `args` (no golden image) and checks the files
/// against the manifest: one per device, the SHA-256, the partition fields.
fn mint_partitions(
    env: &Env,
    args: &[&str],
    n: usize,
    out: &Path,
) -> Result<Vec<serde_json::Value>, Box<dyn std::error::Error>> {
    let count = n.to_string();
    let mut all = vec![
        "batch",
        "mint",
        "--count",
        &count,
        "--product",
        "esp",
        "--out",
        out.to_str().ok_or("path")?,
    ];
    all.extend_from_slice(args);
    let stdout = env.ok(&all)?;
    assert!(stdout.contains("identities/s"), "{stdout}");
    let man = manifest(out)?;
    assert_eq!(man.len(), n);
    assert_eq!(std::fs::read_dir(out.join("images"))?.count(), n);
    for m in &man {
        let file = m["image"].as_str().ok_or("image")?;
        let device = m["deviceId"].as_str().ok_or("deviceId")?;
        assert_eq!(file, format!("images/{device}.bin"));
        let bytes = std::fs::read(out.join(file))?;
        assert_eq!(
            m["imageSha256"].as_str(),
            Some(idmint_flows::pki::sha256_hex(&bytes).as_str())
        );
        assert_eq!(m["partition"]["size"].as_u64(), Some(bytes.len() as u64));
    }
    Ok(man)
}

#[test]
fn esp_secure_cert_batch_read_by_espressif_parser() -> R {
    let env = Env::new()?;
    let out = env.path("out");
    let man = mint_partitions(&env, &["--format", "esp-secure-cert"], 4, &out)?;
    let format = idmint_slot::PartitionFormat::EspSecureCert { size: 0x2000 };
    for m in &man {
        let p = &m["partition"];
        assert_eq!(p["format"], "esp-secure-cert");
        assert_eq!(p["flashOffset"], "0xD000", "the default offset");
        assert_eq!(p["keyProtection"], "none");
        let file = m["image"].as_str().ok_or("image")?;
        assert_eq!(
            p["esptool"].as_str(),
            Some(format!("esptool.py --chip esp32 write_flash 0xD000 {file}").as_str())
        );
        // Our reader: the leaf first, the manifest's certificate.
        let pem = format.decode(&std::fs::read(out.join(file))?)?;
        let leaf = m["certificatePem"].as_str().ok_or("pem")?;
        assert!(pem.device_cert.starts_with(leaf));
    }
    if !espressif_tools() {
        return Ok(());
    }
    for m in man.iter().take(2) {
        let work = tempfile::tempdir()?;
        let file = out.join(m["image"].as_str().ok_or("image")?);
        let contents = parse_esp_secure_cert(&file, work.path())?;
        let dev = std::fs::read_to_string(contents.join("devcert_1_0.pem"))?;
        assert!(dev.starts_with(m["certificatePem"].as_str().ok_or("pem")?));
        openssl_checks(&contents)?;
    }
    Ok(())
}

#[test]
fn esp_nvs_batch_matches_espressif_generator() -> R {
    let env = Env::new()?;
    let out = env.path("out");
    let man = mint_partitions(
        &env,
        &[
            "--format",
            "esp-nvs",
            "--nvs-namespace",
            "creds",
            "--flash-offset",
            "0x9000",
            "--chip",
            "esp32s3",
            "--key-protection",
            "ds",
            "--efuse-key-id",
            "2",
        ],
        3,
        &out,
    )?;
    let format = idmint_slot::PartitionFormat::EspNvs {
        size: 0x6000,
        namespace: "creds".into(),
    };
    for m in &man {
        let p = &m["partition"];
        assert_eq!(p["format"], "esp-nvs");
        assert_eq!(p["nvsNamespace"], "creds");
        assert_eq!(p["keyProtection"], "ds");
        assert_eq!(p["efuseKeyId"], 2);
        let file = m["image"].as_str().ok_or("image")?;
        assert_eq!(
            p["esptool"].as_str(),
            Some(format!("esptool.py --chip esp32s3 write_flash 0x9000 {file}").as_str())
        );
    }
    if !espressif_tools() {
        return Ok(());
    }
    // Espressif's generator, given the same PEM files, writes the same bytes.
    let m = &man[0];
    let bytes = std::fs::read(out.join(m["image"].as_str().ok_or("image")?))?;
    assert!(format.decode(&bytes).is_ok());
    let work = tempfile::tempdir()?;
    // And the credentials verify.
    let contents = regenerate_nvs(&bytes, "creds", "0x6000", work.path())?;
    openssl_checks(&contents)
}

#[test]
fn esp32_bad_inputs_write_nothing() -> R {
    let env = Env::new()?;
    let before = env.counts()?;
    for (args, needle) in [
        (
            vec![
                "--format",
                "esp-nvs",
                "--nvs-namespace",
                "a_namespace_too_long",
            ],
            "NVS name",
        ),
        (
            vec!["--format", "esp-secure-cert", "--partition-size", "0x800"],
            "multiple of 4096",
        ),
        (
            vec!["--format", "esp-nvs", "--partition-size", "0x2000"],
            "at least 0x3000",
        ),
        (
            vec!["--format", "esp-secure-cert", "--nvs-namespace", "x"],
            "--nvs-namespace is for",
        ),
        (vec!["--format", "bin"], "--golden is required"),
        (vec!["--format", "esp32"], "unknown format"),
    ] {
        let out = env.path("refused");
        let mut all = vec![
            "batch",
            "mint",
            "--count",
            "2",
            "--product",
            "esp",
            "--out",
            out.to_str().ok_or("p")?,
        ];
        all.extend_from_slice(&args);
        let o = env.run(&all)?;
        assert!(!o.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!out.join("images").exists(), "{args:?} wrote files");
    }
    assert_eq!(env.counts()?, before, "a refused mint registered something");
    Ok(())
}

#[test]
fn esp_secure_cert_kill_and_resume() -> R {
    let env = Env::new()?;
    let format = idmint_slot::PartitionFormat::EspSecureCert { size: 0x2000 };
    kill_then_resume(
        &env,
        &["--format", "esp-secure-cert"],
        4000,
        &move |p, b| {
            let pem = format.decode(b)?;
            let (info, _) =
                idmint_flows::pki::CertificateInfo::from_pem(pem.device_cert.as_bytes())?;
            let device = p
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or("file name")?
                .to_string();
            Ok((info.id.into_string(), device))
        },
    )
}

#[test]
fn esp_nvs_encrypt_to_age_recipient() -> R {
    use std::io::Read;
    let env = Env::new()?;
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let out = env.path("out");
    env.ok(&[
        "batch",
        "mint",
        "--format",
        "esp-nvs",
        "--flash-offset",
        "0x9000",
        "--count",
        "3",
        "--product",
        "enc",
        "--encrypt-to",
        &recipient,
        "--out",
        out.to_str().ok_or("p")?,
    ])?;
    assert!(
        !out.join("images").read_dir()?.any(|_| true),
        "plaintext partitions on disk"
    );
    assert!(!out.join("manifest.jsonl").exists());
    let archive = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.age"))
        .ok_or("no archive")?;
    let mut tar_bytes = Vec::new();
    age::Decryptor::new(std::fs::File::open(&archive)?)?
        .decrypt(std::iter::once(&identity as &dyn age::Identity))?
        .read_to_end(&mut tar_bytes)?;
    let format = idmint_slot::PartitionFormat::EspNvs {
        size: 0x6000,
        namespace: "esp_secure_cert".into(),
    };
    let mut partitions = 0;
    let mut manifest_text = String::new();
    for e in tar::Archive::new(&tar_bytes[..]).entries()? {
        let mut e = e?;
        let name = e.path()?.to_string_lossy().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b)?;
        if name.starts_with("images/") {
            assert!(name.ends_with(".bin"));
            format.decode(&b)?;
            partitions += 1;
        } else if name == "manifest.jsonl" {
            manifest_text = String::from_utf8(b)?;
        }
    }
    assert_eq!(partitions, 3);
    assert_eq!(manifest_text.lines().count(), 3);
    assert!(manifest_text.contains("esptool.py --chip esp32 write_flash 0x9000 images/"));
    Ok(())
}
