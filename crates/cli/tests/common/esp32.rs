//! Espressif's own tools on ESP32 credential partitions, shared by the
//! tests that write them (`batch mint --format esp-secure-cert|esp-nvs` and
//! `station run --partition`): esp-secure-cert-tool's TLV parser,
//! esp-idf-nvs-partition-gen's generator, and openssl on what they read.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The tests' result type.
pub type R = Result<(), Box<dyn std::error::Error>>;

/// Runs `cmd`; its stdout, or an error with everything it said.
pub fn sh(cmd: &mut Command) -> Result<String, Box<dyn std::error::Error>> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when Python has Espressif's tools (scripts/test.sh installs them);
/// otherwise SKIP, or fail under IDMINT_REQUIRE_ALL.
pub fn espressif_tools() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import esp_secure_cert.tlv_format_construct, esp_idf_nvs_partition_gen.nvs_partition_gen",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        idmint_testkit::skip(
            "Espressif's esp-secure-cert-tool and esp-idf-nvs-partition-gen for python3",
            "pip install esp-secure-cert-tool==2.6.1 esp-idf-nvs-partition-gen==0.3.0",
        );
    }
    ok
}

/// The PEMs read by Espressif's parser from one partition verify: the key
/// matches the certificate and the chain goes up to the CA certificate.
pub fn openssl_checks(contents: &Path) -> R {
    let dev = contents.join("devcert_1_0.pem");
    let verified = sh(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(contents.join("cacert_0_0.pem"))
        .arg("-untrusted")
        .arg(&dev)
        .arg(&dev))?;
    assert!(verified.contains(": OK"), "{verified}");
    let a = sh(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&dev))?;
    let b = sh(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(contents.join("privkey_2_0.pem")))?;
    assert_eq!(a, b, "key does not match certificate");
    Ok(())
}

/// Parses the `esp_secure_cert` partition `file` with Espressif's parser in
/// `work`, asserts it found four entries with valid CRCs, and returns the
/// directory of the PEM files it wrote (`cacert_0_0.pem`,
/// `devcert_1_0.pem`, `privkey_2_0.pem`).
pub fn parse_esp_secure_cert(
    file: &Path,
    work: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    std::fs::copy(file, work.join("p.bin"))?;
    sh(Command::new("python3").current_dir(work).args([
        "-c",
        "from esp_secure_cert.tlv_format_construct import EspSecureCert\nEspSecureCert.parse_esp_secure_cert_bin('p.bin')",
    ]))?;
    let parsed = work.join("esp_secure_cert_parsed_data");
    let report = std::fs::read_to_string(parsed.join("tlv_entries_raw.txt"))?;
    let crcs: Vec<&str> = report.lines().filter(|l| l.starts_with("CRC32:")).collect();
    assert_eq!(crcs.len(), 4, "{report}");
    assert!(
        crcs.iter()
            .all(|l| l.contains("VALID") && !l.contains("INVALID")),
        "{report}"
    );
    Ok(parsed.join("contents"))
}

/// Regenerates the NVS partition `bytes` (namespace `namespace`, `size`
/// bytes, e.g. `0x6000`) from the PEMs our reader finds in it with
/// Espressif's generator in `work`, asserts the files are identical, and
/// returns a directory with the PEMs under the parser's names (for
/// [`openssl_checks`]).
pub fn regenerate_nvs(
    bytes: &[u8],
    namespace: &str,
    size: &str,
    work: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let format = idmint_slot::PartitionFormat::EspNvs {
        size: bytes.len(),
        namespace: namespace.into(),
    };
    let pem = format.decode(bytes)?;
    std::fs::write(work.join("ca.pem"), &pem.ca_cert)?;
    std::fs::write(work.join("dev.pem"), &pem.device_cert)?;
    std::fs::write(work.join("key.pem"), &*pem.private_key)?;
    std::fs::write(
        work.join("creds.csv"),
        format!("key,type,encoding,value\n{namespace},namespace,,\nca_cert,file,string,ca.pem\ndev_cert,file,string,dev.pem\npriv_key,file,string,key.pem\n"),
    )?;
    sh(Command::new("python3").current_dir(work).args([
        "-m",
        "esp_idf_nvs_partition_gen",
        "generate",
        "creds.csv",
        "gen.bin",
        size,
    ]))?;
    assert!(
        std::fs::read(work.join("gen.bin"))? == bytes,
        "the partition differs from nvs_partition_gen's"
    );
    let contents = work.join("contents");
    std::fs::create_dir(&contents)?;
    std::fs::write(contents.join("cacert_0_0.pem"), &pem.ca_cert)?;
    std::fs::write(contents.join("devcert_1_0.pem"), &pem.device_cert)?;
    std::fs::write(contents.join("privkey_2_0.pem"), &*pem.private_key)?;
    Ok(contents)
}
