//! The checked-in test vectors under `tests/vectors/` (made by
//! `tests/vectors/make.sh` with openssl and python3) parse as what they
//! are: EST request bodies as curl sends them, OCSP requests from `openssl
//! ocsp -reqout`, and AWS IoT fleet provisioning payloads in JSON and CBOR
//! (rendered into the checked-in fleet templates). They also seed the fuzz
//! corpus (`fuzz/seed.sh`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use idmint_fleet::provision::{device_parameters, render_for_device};
use idmint_pki::ocsp::{IssuerId, Request};
use idmint_pki::{CertificateInfo, KeyType};
use idmint_server::est;
use idmint_server::mqtt::payload::{decode, CreateRequest, CsrRequest, RegisterRequest};
use idmint_server::mqtt::topics::Format;
use idmint_template::Template;

fn vector(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

#[test]
fn est_bodies_from_curl_and_openssl_parse() {
    for (file, key_type, cn) in [
        (
            "est/simpleenroll-p256.b64",
            KeyType::P256,
            "est-device-0001",
        ),
        (
            "est/simpleenroll-p256-crlf.b64",
            KeyType::P256,
            "est-device-0001",
        ),
        (
            "est/simpleenroll-p384-oneline.b64",
            KeyType::P384,
            "est-device-0002",
        ),
        (
            "est/simpleenroll-ed25519.b64",
            KeyType::Ed25519,
            "est-device-0003",
        ),
        (
            "est/simplereenroll-rsa2048.b64",
            KeyType::Rsa2048,
            "est-device-0004",
        ),
    ] {
        let body = vector(file);
        let csr = est::parse_csr_body(Some("application/pkcs10"), &body)
            .unwrap_or_else(|e| panic!("{file}: {e:?}"));
        assert_eq!(csr.key_type(), key_type, "{file}");
        assert_eq!(csr.common_name(), Some(cn), "{file}");
        // The content type decides, parameters and case aside.
        assert!(est::parse_csr_body(Some("Application/PKCS10; charset=us-ascii"), &body).is_ok());
        assert!(est::parse_csr_body(Some("text/plain"), &body).is_err());
    }
}

#[test]
fn ocsp_requests_from_openssl_parse_and_name_the_ca() {
    let ca = CertificateInfo::from_pem(&vector("ocsp/ca.pem"))
        .expect("CA")
        .1;
    let issuer = IssuerId::of(&ca).expect("issuer id");
    let device = CertificateInfo::from_pem(&vector("ocsp/device.pem"))
        .expect("device")
        .0;
    for (file, serials) in [
        ("ocsp/request-nonce.der", vec![device.serial.as_str()]),
        ("ocsp/request-no-nonce.der", vec![device.serial.as_str()]),
        ("ocsp/request-sha256.der", vec![device.serial.as_str()]),
        (
            "ocsp/request-two-serials.der",
            vec![device.serial.as_str(), "01"],
        ),
    ] {
        let request = Request::from_der(&vector(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let queries: Vec<_> = request.queries().collect();
        let asked: Vec<String> = queries.iter().map(|q| q.serial().into_string()).collect();
        assert_eq!(asked, serials, "{file}");
        assert!(queries.iter().all(|q| issuer.issued(q)), "{file}");
    }
}

#[test]
fn fleet_payloads_in_json_and_cbor_decode_alike() {
    for format in [Format::Json, Format::Cbor] {
        let ext = match format {
            Format::Json => "json",
            Format::Cbor => "cbor",
        };
        let _: CreateRequest = decode(format, &vector(&format!("fleet/create-keys.{ext}")))
            .expect("CreateKeysAndCertificate");
        let csr: CsrRequest = decode(format, &vector(&format!("fleet/create-from-csr.{ext}")))
            .expect("CreateCertificateFromCsr");
        let pem = csr.certificate_signing_request.expect("a CSR");
        let parsed = idmint_pki::Csr::from_pem_or_der(pem.as_bytes()).expect("the CSR parses");
        assert_eq!(parsed.common_name(), Some("sensor-0042"));
        let register: RegisterRequest =
            decode(format, &vector(&format!("fleet/register-thing.{ext}"))).expect("RegisterThing");
        assert!(register
            .certificate_ownership_token
            .is_some_and(|t| t.ends_with(".ownership-token-example")));
        assert_eq!(
            register.parameters,
            Some(BTreeMap::from([
                ("SerialNumber".to_string(), "0042".to_string()),
                ("Site".to_string(), "plant-7".to_string()),
            ]))
        );
    }
}

#[test]
fn register_thing_parameters_render_the_checked_in_templates() {
    let register: RegisterRequest =
        decode(Format::Cbor, &vector("fleet/register-thing.cbor")).expect("RegisterThing");
    let mut parameters = register.parameters.expect("parameters");
    // A device cannot set its certificate's parameters.
    parameters.insert("AWS::IoT::Certificate::Id".into(), "forged".into());
    parameters.insert("Model".into(), "m2".into());
    parameters.insert("Firmware".into(), "1.4.2".into());
    parameters.insert("Location".into(), "berlin".into());
    parameters.insert("DeviceId".into(), "urn:0042".into());
    let parameters = device_parameters(parameters);
    assert!(!parameters.contains_key("AWS::IoT::Certificate::Id"));
    let certificate = CertificateInfo::from_pem(&vector("fleet/device-cert.pem"))
        .expect("device certificate")
        .0;
    for (file, thing) in [
        ("fleet/template-serial.json", "sensor-0042"),
        ("fleet/template-joined.json", "m2_sensor-0042"),
        ("fleet/template-mapped.json", "ber-0042"),
    ] {
        let body = String::from_utf8(vector(file)).expect("UTF-8");
        let template = Template::parse(&body).unwrap_or_else(|e| panic!("{file}: {e}"));
        let (provisioning, name) =
            render_for_device(&template, "Vectors", parameters.clone(), &certificate)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(name, thing, "{file}");
        assert_eq!(provisioning.thing.map(|t| t.name).as_deref(), Some(thing));
    }
}
