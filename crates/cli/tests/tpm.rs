//! TPM 2.0 device identities end to end (issue 16), with real software TPMs
//! (swtpm, manufactured by `swtpm_setup --create-ek-cert` with its own local
//! CA as the TPM vendor) driven by tpm2-tools on the device side, against the
//! real `idmint` binary and a real `idmint serve` over HTTPS.
//!
//! The device side does what a device would: an EK (whose certificate the
//! TPM vendor wrote into NV), an AK under it, an identity key under a storage
//! primary, a CSR signed by the TPM (`tpm2_sign` over the request info built
//! here), `tpm2_activatecredential` of idmint's credential, and
//! `TPM2_Certify` of the identity key by the AK over idmint's nonce (a raw
//! command through `tpm2_send`: tpm2-tools 5.4's `tpm2_certify` cannot pass
//! qualifying data). openssl checks the issued certificate's chain and that
//! its key is the TPM key. Each attack is refused with its reason and leaves
//! no certificate behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::http::{curl, run, token, Env};
use idmint_testkit::swtpm::{SoftTpm, SWTPM_PACKAGES};
use serde_json::{json, Value};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str().expect("a base64 string"))
        .expect("base64")
}

/// One device: a software TPM with its EK, AK and identity keys.
struct Device {
    tpm: SoftTpm,
}

impl Device {
    fn new(dir: &Path) -> Device {
        std::fs::create_dir_all(dir).unwrap();
        let tpm = SoftTpm::start(dir);
        tpm.tool(
            "tpm2_createek",
            &["-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub"],
        );
        tpm.tool(
            "tpm2_createak",
            &[
                "-C", "ek.ctx", "-c", "ak.ctx", "-G", "ecc", "-g", "sha256", "-s", "ecdsa", "-u",
                "ak.pub", "-n", "ak.name",
            ],
        );
        tpm.tool(
            "tpm2_createprimary",
            &["-C", "o", "-g", "sha256", "-G", "ecc", "-c", "primary.ctx"],
        );
        Device { tpm }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.tpm.dir().join(name)
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// A P-256 signing key under the storage primary, loaded as `NAME.ctx`,
    /// with the given attributes (tpm2-tools' default: fixedTPM and
    /// fixedParent).
    fn key(&self, name: &str, attributes: Option<&str>) {
        let (public, private, ctx) = (
            format!("{name}.pub"),
            format!("{name}.priv"),
            format!("{name}.ctx"),
        );
        let mut args = vec![
            "-C",
            "primary.ctx",
            "-G",
            "ecc256:ecdsa-sha256",
            "-u",
            &public,
            "-r",
            &private,
        ];
        if let Some(a) = attributes {
            args.extend_from_slice(&["-a", a]);
        }
        self.tpm.tool("tpm2_create", &args);
        self.tpm.tool(
            "tpm2_load",
            &[
                "-C",
                "primary.ctx",
                "-u",
                &public,
                "-r",
                &private,
                "-c",
                &ctx,
            ],
        );
        let pem = format!("{name}.pem");
        self.tpm
            .tool("tpm2_readpublic", &["-c", &ctx, "-f", "pem", "-o", &pem]);
    }

    /// A PKCS#10 request for the TPM key `name`, signed by the TPM.
    fn csr(&self, name: &str, cn: &str) -> Vec<u8> {
        let spki_file = self.file(&format!("{name}.spki.der"));
        let (ok, text) = run(Command::new("openssl")
            .args(["pkey", "-pubin", "-outform", "DER", "-in"])
            .arg(self.file(&format!("{name}.pem")))
            .arg("-out")
            .arg(&spki_file));
        assert!(ok, "{text}");
        let spki = std::fs::read(&spki_file).unwrap();
        // CertificationRequestInfo: version 0, subject CN, key, no attributes.
        let cn_attr = tlv(
            0x30,
            &[tlv(0x06, &[0x55, 0x04, 0x03]), tlv(0x0c, cn.as_bytes())].concat(),
        );
        let subject = tlv(0x30, &tlv(0x31, &cn_attr));
        let info = tlv(
            0x30,
            &[vec![0x02, 0x01, 0x00], subject, spki, vec![0xa0, 0x00]].concat(),
        );
        let tbs = format!("{name}.tbs");
        std::fs::write(self.file(&tbs), &info).unwrap();
        let sig = format!("{name}.csrsig");
        self.tpm.tool(
            "tpm2_sign",
            &[
                "-c",
                &format!("{name}.ctx"),
                "-g",
                "sha256",
                "-f",
                "plain",
                "-o",
                &sig,
                &tbs,
            ],
        );
        let ecdsa_with_sha256 = tlv(
            0x30,
            &tlv(0x06, &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
        );
        let signature = [vec![0u8], self.read(&sig)].concat();
        let csr = tlv(
            0x30,
            &[info, ecdsa_with_sha256, tlv(0x03, &signature)].concat(),
        );
        // openssl agrees the TPM's signature is the key's proof of possession.
        let file = self.file(&format!("{name}.csr.der"));
        std::fs::write(&file, &csr).unwrap();
        let (ok, text) = run(Command::new("openssl")
            .args(["req", "-verify", "-noout", "-inform", "DER", "-in"])
            .arg(&file));
        assert!(ok, "openssl req -verify: {text}");
        csr
    }

    /// The attestation request for identity key `key` (with `ak` as AK).
    fn attest_body(&self, batch: &str, ak: &str, key: &str, csr: &[u8]) -> Value {
        json!({
            "batch": batch,
            "ek_certificate": b64(&self.read("ekcerts/ek-rsa2048.crt")),
            "ak_public": b64(&self.read(&format!("{ak}.pub"))),
            "identity_public": b64(&self.read(&format!("{key}.pub"))),
            "csr": b64(csr),
        })
    }

    /// `TPM2_ActivateCredential` of idmint's answer with the EK and the AK.
    fn activate(&self, challenge: &Value) -> Vec<u8> {
        let mut file = vec![0xba, 0xdc, 0xc0, 0xde, 0, 0, 0, 1];
        file.extend(unb64(&challenge["credential_blob"]));
        file.extend(unb64(&challenge["encrypted_secret"]));
        std::fs::write(self.file("cred.in"), file).unwrap();
        let _ = std::fs::remove_file(self.file("cred.out"));
        self.tpm.tool(
            "tpm2_startauthsession",
            &["--policy-session", "-S", "session.ctx"],
        );
        self.tpm
            .tool("tpm2_policysecret", &["-S", "session.ctx", "-c", "e"]);
        let (ok, text) = self.tpm.try_tool(
            "tpm2_activatecredential",
            &[
                "-c",
                "ak.ctx",
                "-C",
                "ek.ctx",
                "-i",
                "cred.in",
                "-o",
                "cred.out",
                "-P",
                "session:session.ctx",
            ],
        );
        self.tpm.tool("tpm2_flushcontext", &["session.ctx"]);
        assert!(ok, "tpm2_activatecredential: {text}");
        self.read("cred.out")
    }

    /// `TPM2_Certify` of the loaded object `key` by the AK over `nonce`:
    /// (TPMS_ATTEST, TPMT_SIGNATURE).
    fn certify(&self, key: &str, nonce: &[u8]) -> (Vec<u8>, Vec<u8>) {
        self.tpm.tool("tpm2_flushcontext", &["-t"]);
        // Loaded in this order: the certified object is 0x80000000, the AK
        // 0x80000001.
        self.tpm
            .tool_keep("tpm2_readpublic", &["-c", &format!("{key}.ctx")], None);
        self.tpm
            .tool_keep("tpm2_readpublic", &["-c", "ak.ctx"], None);
        let handles = self
            .tpm
            .tool_keep("tpm2_getcap", &["handles-transient"], None);
        assert_eq!(
            String::from_utf8_lossy(&handles).trim(),
            "- 0x80000000\n- 0x80000001"
        );
        // Two password sessions (TPM_RS_PW, empty auth).
        let auth = [0x40, 0x00, 0x00, 0x09, 0, 0, 0, 0, 0];
        let mut body = Vec::new();
        body.extend_from_slice(&0x8000_0000u32.to_be_bytes());
        body.extend_from_slice(&0x8000_0001u32.to_be_bytes());
        body.extend_from_slice(&18u32.to_be_bytes());
        body.extend_from_slice(&auth);
        body.extend_from_slice(&auth);
        body.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
        body.extend_from_slice(nonce);
        body.extend_from_slice(&0x0010u16.to_be_bytes()); // the AK's own scheme
        let mut command = Vec::new();
        command.extend_from_slice(&0x8002u16.to_be_bytes());
        command.extend_from_slice(&(10 + body.len() as u32).to_be_bytes());
        command.extend_from_slice(&0x0000_0148u32.to_be_bytes()); // TPM2_Certify
        command.extend_from_slice(&body);
        std::fs::write(self.file("certify.cmd"), &command).unwrap();
        let response = self
            .tpm
            .tool_keep("tpm2_send", &[], Some(&self.file("certify.cmd")));
        self.tpm.tool("tpm2_flushcontext", &["-t"]);
        assert!(response.len() > 14, "short response {response:02x?}");
        assert_eq!(&response[6..10], &[0, 0, 0, 0], "TPM2_Certify failed");
        let params = &response[14..];
        let attest_len = usize::from(u16::from_be_bytes([params[0], params[1]]));
        let attest = params[2..2 + attest_len].to_vec();
        // TPMT_SIGNATURE (ECDSA): sigAlg, hash, r, s.
        let rest = &params[2 + attest_len..];
        let r_len = usize::from(u16::from_be_bytes([rest[4], rest[5]]));
        let s_at = 6 + r_len;
        let s_len = usize::from(u16::from_be_bytes([rest[s_at], rest[s_at + 1]]));
        let signature = rest[..s_at + 2 + s_len].to_vec();
        (attest, signature)
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// idmint serving, a batch, an enroll token for it, the swtpm vendor CA
/// registered.
struct Idmint {
    env: Env,
    server: common::http::Server,
    root: PathBuf,
    auth: String,
    batch: String,
}

impl Idmint {
    fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let file = self.env.path("body.json");
        std::fs::write(&file, body.to_string()).unwrap();
        let (code, text) = curl(
            &self.root,
            &format!("https://localhost:{}{path}", self.server.port),
            &[
                "-u",
                &self.auth,
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &format!("@{}", file.display()),
            ],
        );
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn certificates(&self) -> usize {
        let list: Value =
            serde_json::from_str(&self.env.ok(&["cert", "list", "--json"])).expect("json");
        list.as_array().map_or(0, Vec::len)
    }
}

fn idmint_with_vendor(vendor_ca: &Path) -> Idmint {
    let env = Env::new();
    env.ok(&["init", "--org", "TPM Test Co"]);
    env.ok(&[
        "ca",
        "register",
        "--name",
        "swtpm-vendor",
        "--cert",
        vendor_ca.to_str().unwrap(),
        "--tpm-ek",
    ]);
    let root = env.path("root.pem");
    std::fs::write(&root, env.ok(&["ca", "show", "root", "--pem"])).unwrap();
    let batch = common::http::batch(&env, "5");
    let secret = token(&env, "gateway-line", "enroll", Some(&batch));
    let server = env.serve(&["--rate-limit", "0"]);
    Idmint {
        auth: format!("gateway-line:{secret}"),
        env,
        server,
        root,
        batch,
    }
}

fn message(v: &Value) -> String {
    v.to_string()
}

#[test]
fn a_tpm_resident_key_is_certified_and_every_attack_refused() {
    if !SoftTpm::available() {
        idmint_testkit::skip("swtpm and tpm2-tools", SWTPM_PACKAGES);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let device = Device::new(&dir.path().join("tpm1"));
    let idm = idmint_with_vendor(&device.tpm.ek_ca_pem());

    // (The server's own TLS certificate is registered too.)
    let before = idm.certificates();

    // The attested identity: a P-256 key that cannot leave the TPM.
    device.key("id", None);
    let csr = device.csr("id", "gateway-0001");
    let (code, challenge) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "ak", "id", &csr),
    );
    assert_eq!(code, 200, "{challenge}");
    let secret = device.activate(&challenge);
    let (attest, signature) = device.certify("id", &unb64(&challenge["nonce"]));
    let activate = json!({
        "session": challenge["session"],
        "secret": b64(&secret),
        "certify_info": b64(&attest),
        "signature": b64(&signature),
    });
    let (code, issued) = idm.post("/api/v1/tpm/activate", &activate);
    assert_eq!(code, 201, "{issued}");
    assert_eq!(issued["thing"], "gateway-0001");
    assert_eq!(idm.certificates(), before + 1);

    // openssl: the chain verifies, and the certified key is the TPM key.
    let cert = idm.env.path("gateway.pem");
    std::fs::write(&cert, issued["pem"].as_str().unwrap()).unwrap();
    let chain = idm.env.path("chain.pem");
    let chain_pem: String = issued["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    std::fs::write(&chain, chain_pem).unwrap();
    let (ok, text) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&idm.root)
        .arg("-untrusted")
        .arg(&chain)
        .arg(&cert));
    assert!(ok, "openssl verify: {text}");
    let (ok, cert_key) = run(Command::new("openssl")
        .args(["x509", "-noout", "-pubkey", "-in"])
        .arg(&cert));
    assert!(ok, "{cert_key}");
    let (ok, tpm_key) = run(Command::new("openssl")
        .args(["pkey", "-pubin", "-in"])
        .arg(device.file("id.pem")));
    assert!(ok, "{tpm_key}");
    assert_eq!(cert_key, tpm_key, "the certificate's key is the TPM key");

    // Replay: the session's secret and nonce are spent.
    let (code, body) = idm.post("/api/v1/tpm/activate", &activate);
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("already used"), "{body}");

    // Clone: one identity per EK per batch.
    device.key("id2", None);
    let csr2 = device.csr("id2", "gateway-0002");
    let (code, body) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "ak", "id2", &csr2),
    );
    assert_eq!(code, 409, "{body}");
    assert!(message(&body).contains("refused clone"), "{body}");

    // The rest go into a second batch, where this TPM has no identity yet.
    let batch2 = common::http::batch(&idm.env, "5");
    let second_token = token(&idm.env, "gateway-line-2", "enroll", Some(&batch2));
    let idm = Idmint {
        auth: format!("gateway-line-2:{second_token}"),
        batch: batch2,
        ..idm
    };

    // An AK that is not restricted (an ordinary signing key posing as AK).
    let (code, body) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "id2", "id2", &csr2),
    );
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("not restricted"), "{body}");

    // A duplicable identity key.
    device.key("loose", Some("sign|sensitivedataorigin|userwithauth"));
    let loose_csr = device.csr("loose", "gateway-0003");
    let (code, body) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "ak", "loose", &loose_csr),
    );
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("duplicable"), "{body}");

    // A certification of another key than the attested one.
    let (code, challenge) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "ak", "id2", &csr2),
    );
    assert_eq!(code, 200, "{challenge}");
    let secret = device.activate(&challenge);
    let (attest, signature) = device.certify("id", &unb64(&challenge["nonce"]));
    let (code, body) = idm.post(
        "/api/v1/tpm/activate",
        &json!({
            "session": challenge["session"],
            "secret": b64(&secret),
            "certify_info": b64(&attest),
            "signature": b64(&signature),
        }),
    );
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("another key"), "{body}");
    // ... and the refused session is spent: the right certification is too late.
    let (attest, signature) = device.certify("id2", &unb64(&challenge["nonce"]));
    let (code, body) = idm.post(
        "/api/v1/tpm/activate",
        &json!({
            "session": challenge["session"],
            "secret": b64(&secret),
            "certify_info": b64(&attest),
            "signature": b64(&signature),
        }),
    );
    assert_eq!(code, 409, "{body}");

    // A certification over an old nonce (the first session's).
    let (code, challenge) = idm.post(
        "/api/v1/tpm/attest",
        &device.attest_body(&idm.batch, "ak", "id2", &csr2),
    );
    assert_eq!(code, 200, "{challenge}");
    let secret = device.activate(&challenge);
    let (attest, signature) = device.certify("id2", b"not this session's nonce");
    let (code, body) = idm.post(
        "/api/v1/tpm/activate",
        &json!({
            "session": challenge["session"],
            "secret": b64(&secret),
            "certify_info": b64(&attest),
            "signature": b64(&signature),
        }),
    );
    assert_eq!(code, 400, "{body}");
    assert!(message(&body).contains("nonce"), "{body}");

    // A TPM whose EK certificate comes from a vendor nobody registered.
    let stranger = Device::new(&dir.path().join("tpm2"));
    stranger.key("id", None);
    let csr3 = stranger.csr("id", "gateway-0004");
    let (code, body) = idm.post(
        "/api/v1/tpm/attest",
        &stranger.attest_body(&idm.batch, "ak", "id", &csr3),
    );
    assert_eq!(code, 400, "{body}");
    assert!(
        message(&body).contains("registered TPM manufacturer"),
        "{body}"
    );

    // Nothing but the one identity was registered.
    assert_eq!(idm.certificates(), before + 1);
}
