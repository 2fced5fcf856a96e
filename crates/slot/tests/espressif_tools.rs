//! The ESP32 partitions against Espressif's own tools from PyPI
//! (`esp-secure-cert-tool` 2.6.1, `esp-idf-nvs-partition-gen` 0.3.0,
//! installed by `scripts/test.sh`), with certificates and keys made by
//! openssl:
//! - `esp_secure_cert`: the tool's parser (`configure_esp_secure_cert.py
//!   --parse_bin`) finds every entry's CRC valid and hands back the same PEM
//!   certificates and the same key (openssl: it matches the certificate, the
//!   chain verifies); the partition the tool writes from the same files is
//!   read by our reader and matches ours up to the key entry (the tool
//!   rewrites keys in the traditional format).
//! - NVS: the tool's own credentials CSV (`nvs_format.generate_csv_file_no_ds`)
//!   through `nvs_partition_gen` gives the same bytes as our writer, and so
//!   does a CSV that crosses pages with strings and multi-page blobs.
//!
//! Without the tools the tests print SKIP, unless IDMINT_REQUIRE_ALL is set
//! (`scripts/test.sh`), where they fail.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use idmint_slot::partition::esp_secure_cert::{EspSecureCert, TlvType};
use idmint_slot::partition::nvs::{NvsPartition, NvsValue, NvsWriter};
use idmint_slot::{PartitionFormat, PemCredentials, Zeroizing};

/// True when Python has both Espressif packages; otherwise SKIP (or fail
/// under IDMINT_REQUIRE_ALL).
fn tools_present() -> bool {
    let ok = Command::new("python3")
        .args([
            "-c",
            "import esp_secure_cert.tlv_parser, esp_secure_cert.nvs_format, esp_idf_nvs_partition_gen.nvs_partition_gen",
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

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn python(dir: &Path, code: &str) -> String {
    run(Command::new("python3").current_dir(dir).args(["-c", code]))
}

/// A root CA, an intermediate and a device key and certificate, by openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ossl = |args: &[&str]| run(Command::new("openssl").current_dir(d).args(args));
        for (name, subject) in [("root", "/CN=Test Root"), ("int", "/CN=Test Issuing")] {
            ossl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &format!("{name}.key"),
            ]);
            ossl(&[
                "req",
                "-new",
                "-key",
                &format!("{name}.key"),
                "-subj",
                subject,
                "-out",
                &format!("{name}.csr"),
            ]);
        }
        std::fs::write(
            d.join("ca.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n",
        )
        .unwrap();
        ossl(&[
            "x509", "-req", "-in", "root.csr", "-key", "root.key", "-days", "30", "-extfile",
            "ca.ext", "-out", "root.pem",
        ]);
        ossl(&[
            "x509", "-req", "-in", "int.csr", "-CA", "root.pem", "-CAkey", "root.key", "-days",
            "30", "-extfile", "ca.ext", "-out", "int.pem",
        ]);
        ossl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "dev.key",
        ]);
        ossl(&[
            "req",
            "-new",
            "-key",
            "dev.key",
            "-subj",
            "/CN=esp32-000001",
            "-out",
            "dev.csr",
        ]);
        ossl(&[
            "x509", "-req", "-in", "dev.csr", "-CA", "int.pem", "-CAkey", "int.key", "-days", "10",
            "-out", "leaf.pem",
        ]);
        let chain = format!("{}{}", read(d, "leaf.pem"), read(d, "int.pem"));
        std::fs::write(d.join("chain.pem"), chain).unwrap();
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The credentials as idmint writes them: leaf and intermediate in the
    /// device certificate, the root as CA certificate, a PKCS#8 key.
    fn creds(&self, device_cert: &str) -> PemCredentials {
        let d = self.dir.path();
        PemCredentials {
            device_cert: read(d, device_cert),
            private_key: Zeroizing::new(read(d, "dev.key")),
            ca_cert: read(d, "root.pem"),
        }
    }
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

fn pubkey_of_cert(cert: &Path) -> String {
    run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(cert))
}

fn pubkey_of_key(key: &Path) -> String {
    run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key))
}

#[test]
fn esp_secure_cert_read_by_espressif_parser() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let creds = pki.creds("chain.pem");
    let format = PartitionFormat::EspSecureCert { size: 0x2000 };
    let bytes = format.encode_pem(&creds).unwrap();
    let work = tempfile::tempdir().unwrap();
    let bin = work.path().join("ours.bin");
    std::fs::write(&bin, &bytes).unwrap();

    // The tool's own parser: writes the entries it found, and its TLV
    // report, under esp_secure_cert_parsed_data/ in the working directory.
    python(
        work.path(),
        "from esp_secure_cert.tlv_format_construct import EspSecureCert\n\
         EspSecureCert.parse_esp_secure_cert_bin('ours.bin')",
    );
    let parsed = work.path().join("esp_secure_cert_parsed_data");
    let report = std::fs::read_to_string(parsed.join("tlv_entries_raw.txt")).unwrap();
    let crc_lines: Vec<&str> = report.lines().filter(|l| l.starts_with("CRC32:")).collect();
    assert_eq!(crc_lines.len(), 4, "{report}");
    for l in &crc_lines {
        assert!(l.contains("VALID") && !l.contains("INVALID"), "{l}");
    }
    for name in [
        "ESP_SECURE_CERT_CA_CERT_TLV",
        "ESP_SECURE_CERT_DEV_CERT_TLV",
        "ESP_SECURE_CERT_PRIV_KEY_TLV",
        "ESP_SECURE_CERT_INTEGRITY_TLV",
    ] {
        assert!(report.contains(name), "{name} missing:\n{report}");
    }
    assert!(report.contains("Software-based (Plaintext)"), "{report}");

    let contents = parsed.join("contents");
    assert_eq!(
        read(&contents, "devcert_1_0.pem"),
        creds.device_cert,
        "device certificate (leaf and intermediate) differs"
    );
    assert_eq!(read(&contents, "cacert_0_0.pem"), creds.ca_cert);
    let key = contents.join("privkey_2_0.pem");
    assert_eq!(
        pubkey_of_key(&key),
        pubkey_of_cert(&pki.path("leaf.pem")),
        "the key the tool read does not match the certificate"
    );
    // The chain the tool read verifies to the CA certificate it read.
    let verified = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(contents.join("cacert_0_0.pem"))
        .arg("-untrusted")
        .arg(contents.join("devcert_1_0.pem"))
        .arg(contents.join("devcert_1_0.pem")));
    assert!(verified.contains(": OK"), "{verified}");

    // The other way round: the tool writes a partition from the same files
    // (leaf only, as it keeps only the first certificate of a file), our
    // reader reads it, and it is ours byte for byte up to the key entry.
    let (ca, leaf, key) = (
        pki.path("root.pem"),
        pki.path("leaf.pem"),
        pki.path("dev.key"),
    );
    python(
        work.path(),
        &format!(
            "import sys\n\
             sys.argv = ['configure_esp_secure_cert.py', '--skip_flash', '--target_chip', 'esp32', \
             '--ca-cert', {ca:?}, '--device-cert', {leaf:?}, '--private-key', {key:?}]\n\
             import runpy, shutil\n\
             runpy.run_path(shutil.which('configure_esp_secure_cert.py'), run_name='__main__')"
        ),
    );
    let theirs =
        std::fs::read(work.path().join("esp_secure_cert_data/esp_secure_cert.bin")).unwrap();
    let parsed = EspSecureCert::parse(&theirs).unwrap();
    let types: Vec<TlvType> = parsed.entries().iter().map(|e| e.tlv_type).collect();
    assert_eq!(
        types,
        [
            TlvType::CA_CERT,
            TlvType::DEV_CERT,
            TlvType::PRIV_KEY,
            TlvType::INTEGRITY
        ]
    );
    assert_eq!(parsed.used_len(), theirs.len());
    let their_creds = parsed.credentials().unwrap();
    assert_eq!(their_creds.device_cert, read(pki.dir.path(), "leaf.pem"));
    assert_eq!(their_creds.ca_cert, creds.ca_cert);
    let leaf_only = format.encode_pem(&pki.creds("leaf.pem")).unwrap();
    let key_at = parsed.find(TlvType::PRIV_KEY).unwrap().offset;
    assert_eq!(leaf_only[..key_at], theirs[..key_at]);
}

/// The tool's credentials CSV (`configure_esp_secure_cert.py
/// --secure_cert_type nvs`) through `nvs_partition_gen`: the same bytes as
/// our writer, for the tool's own size (0x3000) and the default (0x6000).
#[test]
fn nvs_credentials_match_espressif_generator() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let work = pki.dir.path();
    python(
        work,
        "from esp_secure_cert import nvs_format\n\
         nvs_format.generate_csv_file_no_ds('chain.pem', 'root.pem', 'dev.key', None, 'creds.csv')\n\
         nvs_format.generate_partition('creds.csv', 'tool.bin')",
    );
    let tool = std::fs::read(work.join("tool.bin")).unwrap();
    let creds = pki.creds("chain.pem");
    let ours = PartitionFormat::EspNvs {
        size: 0x3000,
        namespace: "esp_secure_cert".into(),
    }
    .encode_pem(&creds)
    .unwrap();
    assert_eq!(ours.len(), tool.len());
    assert!(
        ours[..] == tool[..],
        "NVS partition differs from the tool's"
    );

    run(Command::new("python3").current_dir(work).args([
        "-m",
        "esp_idf_nvs_partition_gen",
        "generate",
        "creds.csv",
        "gen6.bin",
        "0x6000",
    ]));
    let gen = std::fs::read(work.join("gen6.bin")).unwrap();
    let format = PartitionFormat::EspNvs {
        size: 0x6000,
        namespace: "esp_secure_cert".into(),
    };
    let ours = format.encode_pem(&creds).unwrap();
    assert!(ours[..] == gen[..], "0x6000 NVS partition differs");
    assert_eq!(format.decode(&gen).unwrap(), creds);
}

/// Strings that push each other onto new pages, blobs split across pages and
/// a second namespace: byte for byte as `nvs_partition_gen` writes the same
/// CSV. (Not a return to the first namespace: the generator then keeps
/// writing under the newest one, see `NvsWriter::namespace`.)
#[test]
fn nvs_pages_and_blobs_match_espressif_generator() {
    if !tools_present() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    let text = |n: usize, seed: u8| -> String {
        (0..n)
            .map(|i| char::from(b'!' + ((i * 7 + usize::from(seed)) % 90) as u8))
            .collect()
    };
    let bytes = |n: usize, seed: u32| -> Vec<u8> {
        (0..n as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
            .collect()
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let strings = [
        ("s1", text(3000, 1)),
        ("s2", text(100, 2)),
        ("s3", text(3967, 3)),
        ("s4", text(10, 4)),
        ("s5", text(31, 5)),
    ];
    for (k, v) in &strings {
        std::fs::write(d.join(format!("{k}.txt")), v).unwrap();
    }
    let b1 = bytes(9000, 1);
    let b2 = bytes(4000, 2);
    let b3 = bytes(64, 3);
    let mut csv = String::from("key,type,encoding,value\nfirst,namespace,,\n");
    csv += "s1,file,string,s1.txt\n";
    csv += &format!("b1,data,hex2bin,{}\n", hex(&b1));
    csv += "s2,file,string,s2.txt\n";
    csv += "second,namespace,,\n";
    csv += &format!("b2,data,hex2bin,{}\n", hex(&b2));
    csv += "s3,file,string,s3.txt\n";
    csv += "empty,data,hex2bin,\n";
    csv += "s4,file,string,s4.txt\n";
    csv += &format!("b3,data,hex2bin,{}\n", hex(&b3));
    csv += "s5,file,string,s5.txt\n";
    std::fs::write(d.join("stress.csv"), csv).unwrap();
    run(Command::new("python3").current_dir(d).args([
        "-m",
        "esp_idf_nvs_partition_gen",
        "generate",
        "stress.csv",
        "stress.bin",
        "0xA000",
    ]));
    let gen = std::fs::read(d.join("stress.bin")).unwrap();

    let mut w = NvsWriter::new(0xA000).unwrap();
    w.namespace("first").unwrap();
    w.string("s1", &strings[0].1).unwrap();
    w.blob("b1", &b1).unwrap();
    w.string("s2", &strings[1].1).unwrap();
    w.namespace("second").unwrap();
    w.blob("b2", &b2).unwrap();
    w.string("s3", &strings[2].1).unwrap();
    w.blob("empty", &[]).unwrap();
    w.string("s4", &strings[3].1).unwrap();
    w.blob("b3", &b3).unwrap();
    w.string("s5", &strings[4].1).unwrap();
    let ours = w.finish().unwrap();
    assert_eq!(ours.len(), gen.len());
    if let Some(at) = (0..ours.len()).find(|&i| ours[i] != gen[i]) {
        panic!(
            "first difference at {at:#x} (page {}, entry {})",
            at / 4096,
            (at % 4096).saturating_sub(64) / 32
        );
    }

    let p = NvsPartition::parse(&gen).unwrap();
    assert_eq!(p.string("first", "s1"), Some(strings[0].1.as_str()));
    assert_eq!(p.string("second", "s3"), Some(strings[2].1.as_str()));
    assert_eq!(p.string("second", "s5"), Some(strings[4].1.as_str()));
    assert_eq!(
        p.get("first", "b1"),
        Some(&NvsValue::Blob(Zeroizing::new(b1)))
    );
    assert_eq!(
        p.get("second", "b2"),
        Some(&NvsValue::Blob(Zeroizing::new(b2)))
    );
    assert_eq!(
        p.get("second", "empty"),
        Some(&NvsValue::Blob(Zeroizing::new(Vec::new())))
    );
    assert_eq!(p.entries().len(), 9);
}
