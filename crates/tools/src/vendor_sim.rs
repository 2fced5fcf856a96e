//! A stand-in HSM vendor for tests and benchmarks: a vendor root CA, a
//! device signer CA under it, a manifest log signer, device keys and
//! certificates, and signed manifests in the Trust&GO shape, honest or
//! tampered in a chosen way. It generates test data only: nothing here is
//! used by an import.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use base64::Engine as _;
use idmint_pki::DeviceKey;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use idmint_flows::FlowError;

/// How a generated entry is spoiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// An honest entry.
    None,
    /// The payload is edited after signing.
    PayloadEdited,
    /// The device certificate is signed by another CA.
    OtherCa,
    /// The JWK's x/y is not the certificate's key.
    JwkMismatch,
    /// The device certificate has expired.
    Expired,
    /// The protected header says `alg: HS256`.
    WrongAlg,
}

/// The simulated vendor.
pub struct VendorSim {
    root: CertifiedIssuer<'static, KeyPair>,
    signer_ca: CertifiedIssuer<'static, KeyPair>,
    rogue: CertifiedIssuer<'static, KeyPair>,
    log_signer_der: Vec<u8>,
    log_signer: DeviceKey,
    kid: Vec<u8>,
    x5t: Vec<u8>,
}

fn err(e: impl std::fmt::Display) -> FlowError {
    FlowError::Internal(format!("vendor simulator: {e}"))
}

fn ca_params(cn: &str) -> Result<CertificateParams, FlowError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Example Secure Elements Inc");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
    p.not_after = OffsetDateTime::now_utc() + Duration::days(3650 * 3);
    Ok(p)
}

fn key() -> Result<KeyPair, FlowError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)
}

impl VendorSim {
    /// A new vendor with fresh keys.
    pub fn new() -> Result<Self, FlowError> {
        let root =
            CertifiedIssuer::self_signed(ca_params("Example SE Root CA")?, key()?).map_err(err)?;
        let signer_ca =
            CertifiedIssuer::signed_by(ca_params("Example SE Signer 2C00")?, key()?, &root)
                .map_err(err)?;
        let rogue =
            CertifiedIssuer::self_signed(ca_params("Rogue Root CA")?, key()?).map_err(err)?;
        let log_key = key()?;
        let mut lp = ca_params("Example SE Manifest Log Signer")?;
        lp.is_ca = IsCa::NoCa;
        lp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let log_cert = lp.signed_by(&log_key, &root).map_err(err)?;
        let log_signer_der = log_cert.der().to_vec();
        let log_signer = DeviceKey::from_pkcs8_der(&log_key.serialize_der()).map_err(err)?;
        let (_, parsed) = X509Certificate::from_der(&log_signer_der).map_err(err)?;
        let kid = parsed
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        let x5t = idmint_pki::sha256(&log_signer_der).to_vec();
        Ok(VendorSim {
            root,
            signer_ca,
            rogue,
            log_signer_der,
            log_signer,
            kid,
            x5t,
        })
    }

    /// The vendor root certificate, PEM (what `ca register --cert` takes).
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// The manifest log signer certificate, PEM (`ca register --signer`).
    pub fn log_signer_pem(&self) -> String {
        idmint_pki::to_pem("CERTIFICATE", &self.log_signer_der)
    }

    /// A device certificate (DER) for a fresh key, and the key's EC point.
    pub fn device(&self, unique_id: &str, tamper: Tamper) -> Result<(Vec<u8>, Vec<u8>), FlowError> {
        let key = key()?;
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Example Secure Elements Inc");
        dn.push(DnType::CommonName, format!("sn{unique_id}"));
        p.distinguished_name = dn;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let mut serial = [0u8; 16];
        idmint_pki::random_fill(&mut serial).map_err(err)?;
        serial[0] &= 0x7f;
        p.serial_number = Some(SerialNumber::from_slice(&serial));
        p.use_authority_key_identifier_extension = true;
        if tamper == Tamper::Expired {
            p.not_before = OffsetDateTime::now_utc() - Duration::days(800);
            p.not_after = OffsetDateTime::now_utc() - Duration::days(30);
        } else {
            p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
            p.not_after = OffsetDateTime::now_utc() + Duration::days(3650 * 2);
        }
        let issuer = if tamper == Tamper::OtherCa {
            &self.rogue
        } else {
            &self.signer_ca
        };
        let cert = p.signed_by(&key, issuer).map_err(err)?;
        Ok((cert.der().to_vec(), key.public_key_raw().to_vec()))
    }

    /// One `SignedSecureElement` (JSON) for `unique_id`, spoiled by `tamper`.
    pub fn signed_element(
        &self,
        unique_id: &str,
        tamper: Tamper,
    ) -> Result<serde_json::Value, FlowError> {
        let (der, mut point) = self.device(unique_id, tamper)?;
        if tamper == Tamper::JwkMismatch {
            point = key()?.public_key_raw().to_vec();
        }
        let (x, y) = if point.len() == 65 {
            (&point[1..33], &point[33..])
        } else {
            (&point[..0], &point[..0])
        };
        let mut payload = serde_json::json!({
            "version": 1,
            "model": "ATECC608B",
            "partNumber": "ATECC608B-TNGTLSU-G",
            "manufacturer": {"organizationName": "Example Secure Elements Inc", "organizationalUnitName": "Secure Products Group"},
            "provisioner": {"organizationName": "Example Secure Elements Inc", "organizationalUnitName": "Secure Products Group"},
            "distributor": {"organizationName": "Example Distribution Ltd"},
            "provisioningTimestamp": "2024-05-01T12:00:00.000Z",
            "uniqueId": unique_id,
            "publicKeySet": {"keys": [{
                "kid": "0", "kty": "EC", "crv": "P-256",
                "x": B64URL.encode(x), "y": B64URL.encode(y),
                "x5c": [B64.encode(&der), B64.encode(self.signer_ca.der())],
            }]},
        });
        let alg = if tamper == Tamper::WrongAlg {
            "HS256"
        } else {
            "ES256"
        };
        let protected = serde_json::json!({"typ": "JWT", "alg": alg, "kid": B64URL.encode(&self.kid), "x5t#S256": B64URL.encode(&self.x5t)});
        let protected = B64URL.encode(protected.to_string());
        let signed_payload = B64URL.encode(payload.to_string());
        let signature = self
            .log_signer
            .sign_fixed(format!("{protected}.{signed_payload}").as_bytes())
            .map_err(err)?;
        let payload_field = if tamper == Tamper::PayloadEdited {
            payload["model"] = "ATECC608B-EDITED".into();
            B64URL.encode(payload.to_string())
        } else {
            signed_payload
        };
        Ok(serde_json::json!({
            "payload": payload_field,
            "protected": protected,
            "header": {"uniqueId": unique_id},
            "signature": B64URL.encode(&signature),
        }))
    }

    /// Writes `vendor-root.pem`, `log-signer.pem` and a signed manifest of
    /// `count` honest entries (`manifest.json`) into `dir`, generated on
    /// `jobs` threads and written as it goes.
    pub fn write_signed_manifest(
        &self,
        dir: &Path,
        count: u64,
        jobs: usize,
        prefix: &str,
    ) -> Result<(), FlowError> {
        std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
        self.write_anchors(dir)?;
        let path = dir.join("manifest.json");
        let mut out = BufWriter::new(File::create(&path).map_err(|e| FlowError::io(&path, e))?);
        let io = |e| FlowError::io(&path, e);
        out.write_all(b"[\n").map_err(io)?;
        let round = 512u64 * jobs.max(1) as u64;
        let mut first = true;
        let mut start = 0u64;
        while start < count {
            let end = (start + round).min(count);
            let per = (end - start).div_ceil(jobs.max(1) as u64);
            let parts: Vec<Result<Vec<String>, FlowError>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..jobs.max(1) as u64)
                    .map(|j| {
                        let (a, b) = ((start + j * per).min(end), (start + (j + 1) * per).min(end));
                        s.spawn(move || {
                            (a..b)
                                .map(|i| {
                                    self.signed_element(&format!("{prefix}{i:016x}"), Tamper::None)
                                        .map(|v| v.to_string())
                                })
                                .collect::<Result<Vec<_>, _>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|_| Err(err("generator thread panicked")))
                    })
                    .collect()
            });
            for part in parts {
                for element in part? {
                    if !first {
                        out.write_all(b",\n").map_err(io)?;
                    }
                    first = false;
                    out.write_all(element.as_bytes()).map_err(io)?;
                }
            }
            start = end;
        }
        out.write_all(b"\n]\n").map_err(io)?;
        out.flush().map_err(io)
    }

    /// Writes the vendor root (`vendor-root.pem`), the device signer CA
    /// under it (`signer-ca.pem`) and the log signer (`log-signer.pem`)
    /// into `dir`.
    pub fn write_anchors(&self, dir: &Path) -> Result<(), FlowError> {
        for (name, pem) in [
            ("vendor-root.pem", self.root_pem()),
            ("signer-ca.pem", self.signer_ca.pem()),
            ("log-signer.pem", self.log_signer_pem()),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, pem).map_err(|e| FlowError::io(&p, e))?;
        }
        Ok(())
    }

    /// Writes a test set into `dir`: the anchors; `good.json` (signed,
    /// `count` honest entries); one `tampered-<case>.json` per tamper case
    /// (two honest entries around one spoiled one) plus
    /// `tampered-duplicate-unique-id.json` and `tampered-truncated.json`;
    /// `good.jsonl` and `good.csv` (+ `certs/`) and `pem/` with `count`
    /// further honest devices each.
    pub fn write_test_set(&self, dir: &Path, count: u64) -> Result<(), FlowError> {
        std::fs::create_dir_all(dir).map_err(|e| FlowError::io(dir, e))?;
        self.write_anchors(dir)?;
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| FlowError::io(&p, e))
        };
        let array =
            |items: Vec<serde_json::Value>| serde_json::to_string_pretty(&items).map_err(err);
        let good: Vec<_> = (0..count)
            .map(|i| self.signed_element(&format!("01230000{i:08x}ee"), Tamper::None))
            .collect::<Result<_, _>>()?;
        write("good.json", array(good)?)?;
        let cases = [
            ("payload-edited", Tamper::PayloadEdited),
            ("other-ca", Tamper::OtherCa),
            ("jwk-mismatch", Tamper::JwkMismatch),
            ("expired", Tamper::Expired),
            ("wrong-alg", Tamper::WrongAlg),
        ];
        for (n, (name, tamper)) in cases.into_iter().enumerate() {
            let base = format!("02{n:02x}0000");
            let items = vec![
                self.signed_element(&format!("{base}00000001"), Tamper::None)?,
                self.signed_element(&format!("{base}00000002"), tamper)?,
                self.signed_element(&format!("{base}00000003"), Tamper::None)?,
            ];
            write(&format!("tampered-{name}.json"), array(items)?)?;
        }
        let dup = vec![
            self.signed_element("0300000000000001", Tamper::None)?,
            self.signed_element("0300000000000001", Tamper::None)?,
            self.signed_element("0300000000000002", Tamper::None)?,
        ];
        write("tampered-duplicate-unique-id.json", array(dup)?)?;
        let mut truncated = array(vec![
            self.signed_element("0400000000000001", Tamper::None)?,
            self.signed_element("0400000000000002", Tamper::None)?,
        ])?;
        truncated.truncate(truncated.len() - 200);
        write("tampered-truncated.json", truncated)?;

        let mut lines = String::new();
        let mut csv = String::from("unique_id,certificate,thing_name,model,color\n");
        let certs = dir.join("certs");
        let pem_dir = dir.join("pem");
        for d in [&certs, &pem_dir] {
            std::fs::create_dir_all(d).map_err(|e| FlowError::io(d, e))?;
        }
        for i in 0..count {
            let uid = format!("05{i:014x}");
            let (der, _) = self.device(&uid, Tamper::None)?;
            let mut params = BTreeMap::new();
            params.insert("ThingName", format!("jsonl-{i}"));
            params.insert("SerialNumber", uid.clone());
            params.insert("model", "ATECC608B".to_string());
            lines.push_str(&serde_json::json!({"certificatePem": idmint_pki::to_pem("CERTIFICATE", &der), "parameters": params}).to_string());
            lines.push('\n');

            let uid = format!("06{i:014x}");
            let (der, _) = self.device(&uid, Tamper::None)?;
            let file = format!("{uid}.pem");
            write(
                &format!("certs/{file}"),
                idmint_pki::to_pem("CERTIFICATE", &der),
            )?;
            csv.push_str(&format!(
                "{uid},certs/{file},csv-{i},ATECC608B,{}\n",
                if i % 2 == 0 { "red" } else { "" }
            ));

            let uid = format!("07{i:014x}");
            let (der, _) = self.device(&uid, Tamper::None)?;
            write(
                &format!("pem/{uid}.pem"),
                idmint_pki::to_pem("CERTIFICATE", &der),
            )?;
        }
        write("good.jsonl", lines)?;
        write("good.csv", csv)?;
        Ok(())
    }
}
