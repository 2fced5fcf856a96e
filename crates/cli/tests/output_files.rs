//! Commands that write key and certificate files check every output before
//! they issue anything: an existing file is a one-line error naming it, and
//! nothing is issued (so no certificate exists whose key went nowhere).

mod common;

use common::Env;

const TEMPLATE: &str = r#"{
  "Parameters": {"SerialNumber": {"Type": "String"}},
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing",
      "Properties": {"ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]}}},
    "certificate": {"Type": "AWS::IoT::Certificate",
      "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "Active"}}
  }
}"#;

#[test]
fn claim_create_refuses_existing_outputs_before_issuing() {
    let env = Env::init(&[]);
    let body = env.path("fleet.json");
    std::fs::write(&body, TEMPLATE).expect("template");
    env.ok(&[
        "template",
        "create",
        "Fleet",
        "--body",
        &body.to_string_lossy(),
    ]);
    let (cert, key) = (env.path("claim.pem"), env.path("claim.key"));
    let (cert_s, key_s) = (cert.to_string_lossy(), key.to_string_lossy());
    let args = [
        "claim",
        "create",
        "--template",
        "Fleet",
        "--out-cert",
        &cert_s,
        "--out-key",
        &key_s,
    ];
    let before = env.counts();
    for existing in [&cert, &key] {
        std::fs::write(existing, "keep me\n").expect("existing file");
        let err = env.fails(&args);
        assert!(
            err.contains("already exists") && err.contains(&*existing.to_string_lossy()),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(existing).expect("still there"),
            "keep me\n"
        );
        std::fs::remove_file(existing).expect("remove");
        assert!(!cert.exists() && !key.exists(), "a partial output was left");
        assert_eq!(env.counts(), before, "a claim was issued");
    }
    env.ok(&args);
    assert!(cert.exists() && key.exists());
}

#[test]
fn cert_new_refuses_existing_outputs_before_issuing() {
    let env = Env::init(&[]);
    let (cert, key) = (env.path("d.cert.pem"), env.path("d.key.pem"));
    std::fs::write(&key, "keep me\n").expect("existing key");
    let before = env.counts();
    let err = env.fails(&[
        "cert",
        "new",
        "--thing",
        "d",
        "--out",
        &cert.to_string_lossy(),
        "--out-key",
        &key.to_string_lossy(),
    ]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(env.counts(), before);
    assert!(!cert.exists());
}
