//! The device agent protocol's `prove` is not a signing oracle, end to end
//! through the real binaries: a device provisioned by `idmint station run`
//! and served by `idmint devsim` signs `"idmint-prove-v1\0" || nonce`, never
//! the bare nonce (checked with `openssl dgst`); the station's verifier
//! refuses a signature over the bare nonce; and a version-1 peer on either
//! side gets an error naming both protocol versions.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use common::{devsim, openssl, Env};
use idmint_agent::frame::{decode_message, encode_message};
use idmint_agent::{
    verify_proof, AgentClient, DeviceAddress, DeviceError, ErrorCode, FrameDecoder, HelloInfo,
    KeyType, Request, RequestBody, Response, ResponseBody,
};

/// The context string a version-2 device puts before the nonce; spelled out
/// here rather than taken from the crate, so the test checks the contract.
const CONTEXT: &[u8] = b"idmint-prove-v1\0";

/// Runs `idmint station run --json` for one device; returns its JSON line.
fn station_line(env: &Env, batch: &str, address: &str) -> serde_json::Value {
    let out = env.run(&[
        "station",
        "run",
        "--json",
        "--timeout-ms",
        "3000",
        "--batch",
        batch,
        "--device",
        address,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let line = stdout.lines().next().unwrap_or_else(|| {
        panic!(
            "no station line; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).expect("JSON line")
}

fn new_batch(env: &Env) -> String {
    env.ok(&["batch", "create", "--product", "widget", "--count", "2"])
        .trim()
        .to_string()
}

/// The leaf certificate (DER) in a device's `cert.pem`.
fn leaf_der(state: &Path) -> Vec<u8> {
    let text = std::fs::read(state.join("cert.pem")).expect("cert.pem");
    pem::parse_many(text).expect("PEM chain")[0]
        .contents()
        .to_vec()
}

/// Whether `openssl dgst -sha256 -verify` accepts `sig` over `message`
/// with the public key of the device's certificate.
fn openssl_verifies(env: &Env, state: &Path, message: &[u8], sig: &[u8]) -> bool {
    let public = env.path("leaf-pub.pem");
    let (ok, text) = openssl(&[
        "x509",
        "-in",
        &state.join("cert.pem").to_string_lossy(),
        "-noout",
        "-pubkey",
        "-out",
        &public.to_string_lossy(),
    ]);
    assert!(ok, "openssl x509 -pubkey: {text}");
    let (msg, sig_file) = (env.path("message.bin"), env.path("signature.bin"));
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig_file, sig).unwrap();
    let (ok, text) = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &public.to_string_lossy(),
        "-signature",
        &sig_file.to_string_lossy(),
        &msg.to_string_lossy(),
    ]);
    ok && text.contains("Verified OK")
}

#[test]
fn prove_signs_a_domain_separated_message_and_a_bare_nonce_signature_is_refused() {
    let env = Env::init(&[]);
    let batch = new_batch(&env);
    let device = devsim(&env, "oracle", &[]);
    let line = station_line(&env, &batch, &device.addr);
    assert_eq!(line["ok"], true, "{line}");
    let leaf = leaf_der(&device.state);

    // A station (or anyone on the line) hands the device a 32-byte value
    // that is really the SHA-256 digest of something it wants signed.
    let nonce = idmint_pki::sha256(b"pay 1000 EUR to Mallory").to_vec();
    let address: DeviceAddress = device.addr.parse().expect("address");
    let mut client = AgentClient::connect(&address)
        .expect("connect")
        .with_timeout(Duration::from_secs(10));
    let proof = client.prove(&nonce).expect("prove");
    assert_eq!(proof.key_type, KeyType::P256);

    // What the device signed is the context followed by the nonce ...
    let mut message = CONTEXT.to_vec();
    message.extend_from_slice(&nonce);
    assert!(
        openssl_verifies(&env, &device.state, &message, &proof.signature),
        "the device's proof is not a signature over \"idmint-prove-v1\\0\" || nonce"
    );
    // ... never the station's bytes alone.
    assert!(
        !openssl_verifies(&env, &device.state, &nonce, &proof.signature),
        "the device signed the bare nonce: a signing oracle"
    );
    assert_eq!(
        verify_proof(&leaf, &nonce, &proof.signature),
        Ok(KeyType::P256)
    );

    // A signature over the bare nonce by the very same key (as a version-1
    // device would make) does not pass the station's verifier.
    let nonce_file = env.path("nonce.bin");
    let bare_sig = env.path("bare.sig");
    std::fs::write(&nonce_file, &nonce).unwrap();
    let (ok, text) = openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &device.state.join("key.pem").to_string_lossy(),
        "-out",
        &bare_sig.to_string_lossy(),
        &nonce_file.to_string_lossy(),
    ]);
    assert!(ok, "openssl dgst -sign: {text}");
    let bare = std::fs::read(&bare_sig).unwrap();
    assert!(
        verify_proof(&leaf, &nonce, &bare).is_err(),
        "the verifier accepted a signature over the bare nonce"
    );
}

/// Sends one raw request frame and reads one response.
fn exchange(address: &str, request: &Request) -> Response {
    let host = address.strip_prefix("tcp://").expect("tcp address");
    let mut stream = TcpStream::connect(host).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut wire = vec![0u8];
    wire.extend(encode_message(request).expect("encode"));
    stream.write_all(&wire).unwrap();
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).expect("read");
        assert_ne!(n, 0, "the device closed the link");
        if let Some(frame) = decoder.feed(&buf[..n]).next() {
            return decode_message(&frame.expect("frame")).expect("response");
        }
    }
}

#[test]
fn a_version_1_request_is_refused_naming_both_versions() {
    let env = Env::new();
    let device = devsim(&env, "v1", &[]);
    let response = exchange(
        &device.addr,
        &Request {
            v: 1,
            id: 7,
            body: RequestBody::Hello,
        },
    );
    assert_eq!(response.id, 7);
    match response.body {
        ResponseBody::Error(e) => {
            assert_eq!(e.code, ErrorCode::UnsupportedVersion, "{e:?}");
            assert!(
                e.message.contains("version 1") && e.message.contains('2'),
                "the error does not name both versions: {}",
                e.message
            );
        }
        other => panic!("a version-1 request was served: {other:?}"),
    }
}

/// A device that speaks only version 1: it answers v1 `hello`, refuses
/// any other v1 request, and answers every other version with
/// `unsupported-version` in a v1 response, as a v1 agent does.
fn version_1_device() -> String {
    #[derive(serde::Deserialize)]
    struct Header {
        v: u16,
        id: u32,
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = format!("tcp://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut decoder = FrameDecoder::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let frames: Vec<_> = decoder.feed(&buf[..n]).collect();
                for frame in frames.into_iter().flatten() {
                    let Ok(h) = decode_message::<Header>(&frame) else {
                        continue;
                    };
                    let is_hello = decode_message::<Request>(&frame)
                        .map(|r| r.body == RequestBody::Hello)
                        .unwrap_or(false);
                    let body = if h.v != 1 {
                        ResponseBody::Error(DeviceError::new(
                            ErrorCode::UnsupportedVersion,
                            format!(
                                "protocol version {} not supported; this device speaks 1",
                                h.v
                            ),
                        ))
                    } else if is_hello {
                        ResponseBody::Hello(HelloInfo {
                            protocol: 1,
                            hw_id: "HW-old".into(),
                            firmware: "old-agent/1".into(),
                            capabilities: vec![],
                            locked: false,
                        })
                    } else {
                        ResponseBody::Error(DeviceError::new(ErrorCode::Unsupported, "stub"))
                    };
                    let reply = encode_message(&Response {
                        v: 1,
                        id: h.id,
                        body,
                    })
                    .expect("encode");
                    if stream.write_all(&reply).is_err() {
                        break;
                    }
                }
            }
        }
    });
    address
}

#[test]
fn a_version_1_device_is_refused_by_the_station_naming_both_versions() {
    let env = Env::init(&[]);
    let batch = new_batch(&env);
    let old = version_1_device();
    let line = station_line(&env, &batch, &old);
    assert_eq!(line["ok"], false, "{line}");
    assert_eq!(line["stage"], "hello", "{line}");
    let error = line["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("version 1") && error.contains("version 2"),
        "the station's error does not name both versions: {error}"
    );
    // Nothing was issued for it.
    let shown = env.json(&["batch", "show", &batch, "--json"]);
    assert_eq!(shown["issued"].as_i64(), Some(0), "{shown}");
}
