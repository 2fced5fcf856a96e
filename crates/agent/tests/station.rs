//! End-to-end tests: a station `AgentClient` against the device simulator
//! over real TCP sockets, a pty and `exec:` child processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use idmint_agent::{
    verify_proof, AgentClient, Capability, ClientError, DeviceAddress, DevsimListen, DevsimOptions,
    DevsimServer, ErrorCode, FrameError, KeyType, Misbehaviour, ProofError,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

/// A fresh, empty state directory for one test.
fn state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("idmint-agent-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Start a simulator on 127.0.0.1:0 in a thread; return its address.
fn start_sim(state: &Path, no_keygen: bool, misbehave: Misbehaviour) -> DeviceAddress {
    let mut opts = DevsimOptions::new(DevsimListen::Tcp("127.0.0.1:0".parse().unwrap()), state);
    opts.hw_id = Some(format!(
        "hw-{}",
        state.file_name().unwrap().to_string_lossy()
    ));
    opts.no_keygen = no_keygen;
    opts.misbehave = misbehave;
    let server = DevsimServer::bind(opts).unwrap();
    let addr = server.address();
    thread::spawn(move || server.serve_forever());
    addr
}

fn connect(addr: &DeviceAddress) -> AgentClient {
    AgentClient::connect(addr)
        .unwrap()
        .with_timeout(Duration::from_secs(10))
}

/// A throwaway CA that signs CSRs and public keys.
struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
}

impl TestCa {
    fn new() -> Self {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "idmint test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            cert_der: cert.der().to_vec(),
        }
    }

    /// Issue a leaf for a CSR; fails if the CSR's signature is bad.
    fn sign_csr(&self, csr_der: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let csr = CertificateSigningRequestParams::from_der(&csr_der.into())?;
        Ok(csr.signed_by(&self.issuer)?.der().to_vec())
    }

    /// Issue a leaf for a key pair (the inject path).
    fn sign_key(&self, key: &KeyPair) -> Vec<u8> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "injected");
        params.signed_by(key, &self.issuer).unwrap().der().to_vec()
    }

    fn chain(&self, leaf: Vec<u8>) -> Vec<Vec<u8>> {
        vec![leaf, self.cert_der.clone()]
    }
}

fn csr_key_type(csr_der: &[u8]) -> KeyType {
    let (_, csr) = X509CertificationRequest::from_der(csr_der).unwrap();
    let oid = csr
        .certification_request_info
        .subject_pki
        .algorithm
        .algorithm
        .to_id_string();
    match oid.as_str() {
        "1.2.840.10045.2.1" => KeyType::P256,
        "1.3.101.112" => KeyType::Ed25519,
        other => panic!("unexpected key algorithm {other}"),
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn device_code(r: Result<impl std::fmt::Debug, ClientError>) -> ErrorCode {
    match r {
        Err(e) => e
            .device_code()
            .unwrap_or_else(|| panic!("expected a device error, got {e:?}")),
        Ok(v) => panic!("expected a device error, got {v:?}"),
    }
}

#[test]
fn full_flow_keygen_install_prove_lock() {
    let ca = TestCa::new();
    for key_type in [KeyType::P256, KeyType::Ed25519] {
        let state = state_dir(&format!("flow-{key_type}"));
        let addr = start_sim(&state, false, Misbehaviour::default());
        let mut station = connect(&addr);

        let hello = station.hello().unwrap();
        assert_eq!(hello.protocol, 2);
        assert!(
            hello.hw_id.starts_with("hw-") && hello.hw_id.ends_with(&format!("flow-{key_type}"))
        );
        assert!(hello.has(&Capability::keygen(key_type)));
        assert!(hello.has(&Capability::Lock));
        assert!(!hello.has(&Capability::KeyInject));
        assert!(!hello.locked);

        // Nothing to prove or install before keygen.
        assert_eq!(device_code(station.prove(b"nonce")), ErrorCode::NoKey);
        assert_eq!(
            device_code(station.install(&ca.chain(ca.cert_der.clone()))),
            ErrorCode::NoKey
        );

        let csr = station.keygen(key_type).unwrap();
        assert_eq!(csr_key_type(&csr), key_type);
        let (_, parsed) = X509CertificationRequest::from_der(&csr).unwrap();
        assert!(parsed
            .certification_request_info
            .subject
            .to_string()
            .contains(&hello.hw_id));
        assert_eq!(
            device_code(station.prove(b"nonce")),
            ErrorCode::NoCertificate
        );

        let leaf = ca.sign_csr(&csr).unwrap();
        station.install(&ca.chain(leaf.clone())).unwrap();

        let nonce = b"station nonce 0123456789";
        let proof = station.prove(nonce).unwrap();
        assert_eq!(proof.key_type, key_type);
        assert_eq!(verify_proof(&leaf, nonce, &proof.signature), Ok(key_type));
        assert_eq!(
            verify_proof(&leaf, b"another nonce", &proof.signature),
            Err(ProofError::BadSignature)
        );
        // The proof must not verify against another certificate's key.
        assert!(verify_proof(&ca.cert_der, nonce, &proof.signature).is_err());

        station.lock().unwrap();
        station.lock().unwrap(); // idempotent
        assert_eq!(device_code(station.keygen(key_type)), ErrorCode::Locked);
        assert_eq!(
            device_code(station.install(&ca.chain(leaf.clone()))),
            ErrorCode::Locked
        );
        assert!(station.hello().unwrap().locked);
        // Proving still works after lock.
        let proof = station.prove(b"after lock").unwrap();
        verify_proof(&leaf, b"after lock", &proof.signature).unwrap();

        // The state on "flash".
        let key_pem = state.join("key.pem");
        let cert_pem = state.join("cert.pem");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&key_pem).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(&cert_pem).unwrap();
        assert_eq!(pem.matches("BEGIN CERTIFICATE").count(), 2);
        let cert_pub = openssl(&[
            "x509",
            "-in",
            cert_pem.to_str().unwrap(),
            "-noout",
            "-pubkey",
        ]);
        let key_pub = openssl(&["pkey", "-in", key_pem.to_str().unwrap(), "-pubout"]);
        assert_eq!(cert_pub, key_pub);
        assert!(key_pub.contains("BEGIN PUBLIC KEY"));

        // A new connection sees the persisted, locked state.
        drop(station);
        let mut again = connect(&addr);
        assert!(again.hello().unwrap().locked);
        let _ = std::fs::remove_dir_all(&state);
    }
}

#[test]
fn install_for_another_key_is_refused_and_nothing_stored() {
    let ca = TestCa::new();
    let state = state_dir("mismatch");
    let addr = start_sim(&state, false, Misbehaviour::default());
    let mut station = connect(&addr);
    station.keygen(KeyType::P256).unwrap();

    let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let wrong_leaf = ca.sign_key(&other);
    assert_eq!(
        device_code(station.install(&ca.chain(wrong_leaf))),
        ErrorCode::KeyMismatch
    );
    assert!(!state.join("cert.pem").exists());
    // Garbage "certificates" are a bad request.
    assert_eq!(
        device_code(station.install(&[vec![0x30, 0x03, 1, 2, 3]])),
        ErrorCode::BadRequest
    );
    assert_eq!(device_code(station.install(&[])), ErrorCode::BadRequest);
    assert!(!state.join("cert.pem").exists());
    // Inject is refused by a keygen device.
    assert_eq!(
        device_code(station.inject(&other.serialize_der(), &ca.chain(ca.sign_key(&other)))),
        ErrorCode::Unsupported
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn inject_path_without_keygen() {
    let ca = TestCa::new();
    let state = state_dir("inject");
    let addr = start_sim(&state, true, Misbehaviour::default());
    let mut station = connect(&addr);
    let hello = station.hello().unwrap();
    assert_eq!(
        hello.capabilities,
        vec![Capability::KeyInject, Capability::Lock]
    );
    assert_eq!(
        device_code(station.keygen(KeyType::P256)),
        ErrorCode::Unsupported
    );

    for alg in [&PKCS_ED25519, &PKCS_ECDSA_P256_SHA256] {
        let key = KeyPair::generate_for(alg).unwrap();
        let leaf = ca.sign_key(&key);
        // A chain for another key is refused and nothing is stored.
        let other = KeyPair::generate_for(alg).unwrap();
        let before = std::fs::read(state.join("key.pem")).ok();
        assert_eq!(
            device_code(station.inject(&key.serialize_der(), &ca.chain(ca.sign_key(&other)))),
            ErrorCode::KeyMismatch
        );
        assert_eq!(std::fs::read(state.join("key.pem")).ok(), before);
        assert_eq!(
            device_code(station.inject(b"not a key", &ca.chain(leaf.clone()))),
            ErrorCode::BadRequest
        );

        station
            .inject(&key.serialize_der(), &ca.chain(leaf.clone()))
            .unwrap();
        let proof = station.prove(b"inject nonce").unwrap();
        verify_proof(&leaf, b"inject nonce", &proof.signature).unwrap();
        let stored = std::fs::read_to_string(state.join("key.pem")).unwrap();
        let stored = KeyPair::from_pem(&stored).unwrap();
        assert_eq!(stored.public_key_raw(), key.public_key_raw());
    }
    station.lock().unwrap();
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    assert_eq!(
        device_code(station.inject(&key.serialize_der(), &ca.chain(ca.sign_key(&key)))),
        ErrorCode::Locked
    );
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn misbehaving_links() {
    // Drop at a request kind.
    let state = state_dir("drop-at");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            drop_at: Some(idmint_agent::RequestKind::Keygen),
            ..Default::default()
        },
    );
    let mut station = connect(&addr);
    station.hello().unwrap();
    let err = station.keygen(KeyType::P256).unwrap_err();
    assert!(matches!(err, ClientError::LinkClosed), "{err:?}");

    // Drop after N requests.
    let state = state_dir("drop-after");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            drop_after: Some(2),
            ..Default::default()
        },
    );
    let mut station = connect(&addr);
    station.hello().unwrap();
    station.hello().unwrap();
    assert!(matches!(station.hello(), Err(ClientError::LinkClosed)));

    // Garbage instead of a response.
    let state = state_dir("garbage");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            garbage_at: Some(idmint_agent::RequestKind::Hello),
            ..Default::default()
        },
    );
    let mut station = connect(&addr);
    let err = station.hello().unwrap_err();
    assert!(
        matches!(err, ClientError::Frame(FrameError::BadEncoding)),
        "{err:?}"
    );
    // The link is still usable for other requests.
    station.keygen(KeyType::Ed25519).unwrap();

    // Slow answers.
    let state = state_dir("slow");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            delay_ms: 400,
            ..Default::default()
        },
    );
    let mut station = connect(&addr).with_timeout(Duration::from_millis(100));
    let err = station.hello().unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
    // With enough patience the next request succeeds; the late answer to
    // the timed-out request is skipped.
    station.set_timeout(Duration::from_secs(5));
    station.hello().unwrap();
}

#[test]
fn misbehaving_devices() {
    let ca = TestCa::new();
    let state = state_dir("bad-csr");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            bad_csr_signature: true,
            ..Default::default()
        },
    );
    let csr = connect(&addr).keygen(KeyType::P256).unwrap();
    assert!(matches!(
        ca.sign_csr(&csr),
        Err(rcgen::Error::InvalidCertificationRequestSignature)
    ));

    let state = state_dir("wrong-type");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            wrong_key_type: true,
            ..Default::default()
        },
    );
    let csr = connect(&addr).keygen(KeyType::P256).unwrap();
    assert_eq!(csr_key_type(&csr), KeyType::Ed25519);

    let state = state_dir("bad-proof");
    let addr = start_sim(
        &state,
        false,
        Misbehaviour {
            bad_proof: true,
            ..Default::default()
        },
    );
    let mut station = connect(&addr);
    let csr = station.keygen(KeyType::P256).unwrap();
    let leaf = ca.sign_csr(&csr).unwrap();
    station.install(&ca.chain(leaf.clone())).unwrap();
    let proof = station.prove(b"nonce").unwrap();
    assert_eq!(
        verify_proof(&leaf, b"nonce", &proof.signature),
        Err(ProofError::BadSignature)
    );
}

/// The `stdio_agent` example, built by `cargo test` next to the test binary.
fn stdio_agent() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("stdio_agent");
    assert!(path.exists(), "{} not built", path.display());
    path
}

#[test]
fn exec_transport() {
    let ca = TestCa::new();
    let state = state_dir("exec");
    let addr: DeviceAddress = format!("exec:{} {}", stdio_agent().display(), state.display())
        .parse()
        .unwrap();
    let mut station = connect(&addr);
    let hello = station.hello().unwrap();
    assert!(hello.hw_id.starts_with("sim-"));
    let csr = station.keygen(KeyType::Ed25519).unwrap();
    let leaf = ca.sign_csr(&csr).unwrap();
    station.install(&ca.chain(leaf.clone())).unwrap();
    let proof = station.prove(b"over ssh").unwrap();
    verify_proof(&leaf, b"over ssh", &proof.signature).unwrap();
    drop(station);
    // The state persists across agent runs, hw id included.
    let mut station = connect(&addr);
    assert_eq!(station.hello().unwrap().hw_id, hello.hw_id);
    // ... and so does the (reloaded) key.
    let proof = station.prove(b"again").unwrap();
    verify_proof(&leaf, b"again", &proof.signature).unwrap();

    // A command that exits at once: the link is closed.
    let mut station = connect(&"exec:true".parse().unwrap());
    assert!(matches!(station.hello(), Err(ClientError::LinkClosed)));
    // A command that echoes the request back: not a response.
    let mut station = connect(&"exec:cat".parse().unwrap());
    assert!(matches!(
        station.hello(),
        Err(ClientError::Frame(FrameError::BadMessage))
    ));
    // A command that never answers.
    let mut station =
        connect(&"exec:sleep 5".parse().unwrap()).with_timeout(Duration::from_millis(200));
    assert!(matches!(station.hello(), Err(ClientError::Timeout { .. })));
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn pty_transport() {
    let state = state_dir("pty");
    let mut opts = DevsimOptions::new(DevsimListen::Pty, &state);
    opts.hw_id = Some("pty-device".into());
    let server = match DevsimServer::bind(opts) {
        Ok(s) => s,
        Err(e) => {
            // Containers without /dev/pts cannot run this test.
            idmint_testkit::skip("a pty", &format!("{e}; run where /dev/pts is mounted"));
            return;
        }
    };
    let addr = server.address();
    assert!(addr.to_string().starts_with("serial:/dev/"), "{addr}");
    thread::spawn(move || server.serve_forever());
    let mut station = connect(&addr);
    assert_eq!(station.hello().unwrap().hw_id, "pty-device");
    let csr = station.keygen(KeyType::P256).unwrap();
    assert_eq!(csr_key_type(&csr), KeyType::P256);
    let _ = std::fs::remove_dir_all(&state);
}
