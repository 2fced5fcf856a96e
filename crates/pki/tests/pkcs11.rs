//! A CA key held in a SoftHSM2 token: generated inside the token
//! (sensitive, not extractable), used to sign an issuing CA's device
//! certificates, which openssl verifies. Skips when SoftHSM2 is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use idmint_pki::{
    CaBuilder, DeviceKey, KeyType, Pkcs11Config, Pkcs11Key, Pkcs11Uri, Profile, SubjectValues,
};
use zeroize::Zeroizing;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A fresh SoftHSM2 token labelled `idmint` (user PIN 1234) in `dir`.
fn softhsm(dir: &Path) -> Option<Pkcs11Config> {
    if !Path::new(MODULE).exists() {
        idmint_testkit::skip("SoftHSM2", "apt-get install softhsm2");
        return None;
    }
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    // SOFTHSM2_CONF is read by the module in this process too.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "idmint",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(Pkcs11Config {
        module: PathBuf::from(MODULE),
        pin: Zeroizing::new("1234".into()),
    })
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    let mut s = String::from_utf8_lossy(&out.stdout).to_string();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

#[test]
fn uri_parsing() {
    let uri = Pkcs11Uri::parse("pkcs11:token=idmint;object=factory%20ca;type=private?pin-value=1")
        .unwrap();
    assert_eq!(
        (uri.token.as_str(), uri.object.as_str()),
        ("idmint", "factory ca")
    );
    assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
    for bad in [
        "",
        "pkcs11:",
        "pkcs11:token=a",
        "file:x",
        "pkcs11:token=a;object",
        "pkcs11:token=%ff;object=x",
    ] {
        assert!(Pkcs11Uri::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn token_held_ca_issues_certificates_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let Some(config) = softhsm(dir.path()) else {
        return;
    };
    let uri = Pkcs11Uri::parse("pkcs11:token=idmint;object=factory-ca").unwrap();
    let key = Pkcs11Key::generate(&config, &uri).unwrap();
    assert!(key.is_non_extractable().unwrap());
    // A second key with the same label is refused.
    assert!(Pkcs11Key::generate(&config, &uri).is_err());
    drop(key);

    let root = CaBuilder::root("Test Root", KeyType::P256).build().unwrap();
    let signer = Pkcs11Key::open(&config, &uri)
        .unwrap()
        .into_signer()
        .unwrap();
    assert!(signer.is_external() && signer.software_pkcs8_der().is_none());
    let issuing = CaBuilder::issuing("Token CA", KeyType::P256, &root)
        .signer(signer)
        .build()
        .unwrap();
    let root_pem = dir.path().join("root.pem");
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&root_pem, root.certificate_pem()).unwrap();
    std::fs::write(&ca_pem, issuing.certificate_pem()).unwrap();
    for i in 0..3 {
        let device = DeviceKey::generate(KeyType::P256).unwrap();
        let cert = issuing
            .issue(
                &device.public_key().unwrap(),
                &Profile::device(),
                &SubjectValues::for_thing(&format!("dev-{i}")),
            )
            .unwrap();
        idmint_pki::verify_chain(
            &cert.der,
            &[issuing.certificate_der()],
            &[root.certificate_der()],
        )
        .unwrap();
        let leaf = dir.path().join(format!("dev-{i}.pem"));
        std::fs::write(&leaf, cert.pem()).unwrap();
        let (ok, text) = openssl(&[
            "verify",
            "-CAfile",
            &root_pem.to_string_lossy(),
            "-untrusted",
            &ca_pem.to_string_lossy(),
            &leaf.to_string_lossy(),
        ]);
        assert!(ok && text.contains(": OK"), "{text}");
    }
    // A wrong PIN fails cleanly.
    let wrong = Pkcs11Config {
        pin: Zeroizing::new("0000".into()),
        ..config.clone()
    };
    assert!(Pkcs11Key::open(&wrong, &uri).is_err());
    let missing = Pkcs11Uri::parse("pkcs11:token=idmint;object=nope").unwrap();
    assert!(Pkcs11Key::open(&config, &missing).is_err());
}
