//! Every kind of object idmint emits, made through the flows API and checked
//! by three verifiers that share no code with idmint's own checks: the
//! `openssl` command line, rustls-webpki and x509-parser (see the crate
//! docs). A profile change that one of them refuses fails here.

mod verify;

use idmint_fleet::claims::ClaimValidity;
use idmint_fleet::templates::TemplateRequest;
use idmint_fleet::Fleet;
use idmint_flows::access::{Action, Principal, Resource};
use idmint_flows::init::{init, InitOptions, ROOT_CA};
use idmint_flows::issue::IssueOptions;
use idmint_flows::Idmint;
use idmint_pki::{Csr, KeyType, RevocationReason};
use idmint_registry::{CertificateStatus, TemplateKind};
use idmint_station::offline::{AuthorizeRequest, BatchKeyDestination};
use idmint_station::Station;
use verify::{openssl, webpki_check, x509, Expect, Workdir};
use zeroize::Zeroizing;

/// A fresh data directory, and the root and default issuing CA certificates.
struct Fixture {
    _dir: tempfile::TempDir,
    work: Workdir,
    idmint: Idmint,
    root: Vec<u8>,
    issuing: Vec<u8>,
    issuing_name: String,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (idmint, _) = init(
        &dir.path().join("data"),
        InitOptions {
            org: "Verifier Co".into(),
            key_type: KeyType::P256,
            store: None,
            passphrase: Some(Zeroizing::new("independent verifiers".into())),
        },
    )
    .await
    .expect("init");
    let issuing_name = idmint.default_ca().to_string();
    let root = ca_der(&idmint, ROOT_CA).await;
    let issuing = ca_der(&idmint, &issuing_name).await;
    let work = Workdir::new(dir.path().join("work"));
    Fixture {
        _dir: dir,
        work,
        idmint,
        root,
        issuing,
        issuing_name,
    }
}

async fn ca_der(idmint: &Idmint, name: &str) -> Vec<u8> {
    idmint
        .store()
        .require_ca(name)
        .await
        .expect("CA")
        .certificate_der
}

fn thing_name(name: &str) -> idmint_flows::ThingName {
    idmint_flows::ThingName::parse(name).expect("a valid thing name")
}

fn operator() -> idmint_flows::access::AuthorizedIssuance {
    Principal::Local {
        actor: "verifier".into(),
    }
    .authorize_issuance(Action::IssueInBatch, None)
    .expect("the local operator may issue")
}

#[tokio::test(flavor = "multi_thread")]
async fn root_and_issuing_ca() {
    let f = fixture().await;
    let root = f.work.pem("root.pem", &f.root);
    let issuing = f.work.pem("issuing.pem", &f.issuing);

    openssl::verify(&root, &[], &root, None).expect("openssl: root self-signed");
    openssl::verify(&root, &[], &issuing, None).expect("openssl: issuing under root");
    let text = openssl::text(&issuing);
    assert!(text.contains("CA:TRUE"), "{text}");

    webpki_check::trust_anchor(&f.root).expect("webpki: root as trust anchor");

    x509::check(&f.root, &f.root, &Expect::ca()).expect("x509-parser: root");
    x509::check(&f.issuing, &f.root, &Expect::ca()).expect("x509-parser: issuing");
}

#[tokio::test(flavor = "multi_thread")]
async fn key_generated_device_certificates_of_every_key_type() {
    let f = fixture().await;
    let root = f.work.pem("root.pem", &f.root);
    let issuing = f.work.pem("issuing.pem", &f.issuing);
    let who = operator();
    for (i, key_type) in [
        KeyType::P256,
        KeyType::P384,
        KeyType::Ed25519,
        KeyType::Rsa2048,
    ]
    .into_iter()
    .enumerate()
    {
        let thing = format!("verify-gen-{i}");
        let (key, issued) = f
            .idmint
            .new_identity(
                &who,
                &thing_name(&thing),
                Some(key_type),
                &IssueOptions::default(),
            )
            .await
            .expect("new identity");
        let der = &issued.certificate.der;
        let leaf = f.work.pem(&format!("{thing}.pem"), der);
        let key_file = f
            .work
            .write(&format!("{thing}.key"), key.pkcs8_pem().as_bytes());

        openssl::verify(&root, &[&issuing], &leaf, Some("sslclient"))
            .unwrap_or_else(|e| panic!("openssl, {key_type:?}: {e}"));
        assert_eq!(
            openssl::public_key_of_certificate(&leaf),
            openssl::public_key_of_key(&key_file),
            "{key_type:?}: the key does not match the certificate"
        );
        webpki_check::client(der, &f.root, &[&f.issuing], &[])
            .unwrap_or_else(|e| panic!("webpki, {key_type:?}: {e:?}"));
        x509::check(der, &f.issuing, &Expect::device(&thing))
            .unwrap_or_else(|e| panic!("x509-parser, {key_type:?}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn csr_issued_device_certificate() {
    let f = fixture().await;
    let root = f.work.pem("root.pem", &f.root);
    let issuing = f.work.pem("issuing.pem", &f.issuing);
    let (csr_file, key_file) = openssl::new_csr(&f.work, "verify-csr-1");
    let csr = Csr::from_pem_or_der(&std::fs::read(&csr_file).expect("CSR")).expect("parse CSR");
    let issued = f
        .idmint
        .issue_from_csr(&operator(), &csr, &IssueOptions::default())
        .await
        .expect("issue from CSR");
    let der = &issued.certificate.der;
    assert_eq!(issued.thing.as_str(), "verify-csr-1");
    let leaf = f.work.pem("csr-leaf.pem", der);

    openssl::verify(&root, &[&issuing], &leaf, Some("sslclient")).expect("openssl");
    assert_eq!(
        openssl::public_key_of_certificate(&leaf),
        openssl::public_key_of_key(&key_file),
        "the certificate is not for the CSR's key"
    );
    webpki_check::client(der, &f.root, &[&f.issuing], &[]).expect("webpki");
    x509::check(der, &f.issuing, &Expect::device("verify-csr-1")).expect("x509-parser");
}

#[tokio::test(flavor = "multi_thread")]
async fn claim_certificate() {
    let f = fixture().await;
    let fleet = Fleet::new(&f.idmint);
    fleet
        .create_template(
            "verifier",
            &TemplateRequest {
                name: "verify-fleet".into(),
                kind: TemplateKind::Fleet,
                body: include_str!("../../template/tests/data/aws_fleet.json").into(),
                hook: None,
                hook_timeout_ms: None,
                enabled: true,
            },
        )
        .await
        .expect("template");
    let claim = fleet
        .create_claim(
            "verifier",
            &["verify-fleet".into()],
            ClaimValidity::Days(30),
            None,
        )
        .await
        .expect("claim");
    // The PEM holds the claim certificate, then the claim CA.
    let chain = verify::pem_certificates(&claim.certificate_pem);
    assert_eq!(chain.len(), 2, "claim certificate then claim CA");
    let (leaf_der, claim_ca_der) = (&chain[0], &chain[1]);
    let root = f.work.pem("root.pem", &f.root);
    let claim_ca = f.work.pem("claim-ca.pem", claim_ca_der);
    let leaf = f.work.pem("claim.pem", leaf_der);
    let key_file = f.work.write("claim.key", claim.private_key.as_bytes());

    openssl::verify(&root, &[&claim_ca], &leaf, Some("sslclient")).expect("openssl");
    assert_eq!(
        openssl::public_key_of_certificate(&leaf),
        openssl::public_key_of_key(&key_file)
    );
    webpki_check::client(leaf_der, &f.root, &[claim_ca_der], &[]).expect("webpki");
    x509::check(claim_ca_der, &f.root, &Expect::ca()).expect("x509-parser: claim CA");
    let thing = x509::common_name(leaf_der).expect("claim CN");
    assert!(thing.starts_with("claim-"), "{thing}");
    x509::check(leaf_der, claim_ca_der, &Expect::device(&thing)).expect("x509-parser: claim");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_certificate() {
    let f = fixture().await;
    let key_path = f.work.path("server.key");
    let (cert, _) = f
        .idmint
        .issue_server_certificate(&["localhost".into(), "127.0.0.1".into()], &key_path)
        .await
        .expect("server certificate");
    assert_eq!(
        verify::mode(&key_path),
        0o600,
        "the server key file is not private"
    );
    let root = f.work.pem("root.pem", &f.root);
    let issuing = f.work.pem("issuing.pem", &f.issuing);
    let leaf = f.work.pem("server.pem", &cert.der);

    openssl::verify_server(&root, &[&issuing], &leaf, "localhost", "127.0.0.1").expect("openssl");
    assert_eq!(
        openssl::public_key_of_certificate(&leaf),
        openssl::public_key_of_key(&key_path)
    );
    for name in ["localhost", "127.0.0.1"] {
        webpki_check::server(&cert.der, &f.root, &[&f.issuing], name)
            .unwrap_or_else(|e| panic!("webpki, {name}: {e:?}"));
    }
    assert!(
        webpki_check::server(&cert.der, &f.root, &[&f.issuing], "evil.example").is_err(),
        "webpki accepted the server certificate for a name it does not carry"
    );
    x509::check(&cert.der, &f.issuing, &Expect::server()).expect("x509-parser");
}

/// A device certificate revoked for key compromise and one still good: the
/// CRL, the OCSP responses for both and for a serial never issued, and the
/// delegated OCSP responder certificate that signs them.
#[tokio::test(flavor = "multi_thread")]
async fn crl_and_ocsp_for_an_online_ca() {
    let f = fixture().await;
    let who = operator();
    let mut issued = Vec::new();
    for thing in ["verify-good", "verify-revoked"] {
        let (_, cert) = f
            .idmint
            .new_identity(&who, &thing_name(thing), None, &IssueOptions::default())
            .await
            .expect("issue");
        issued.push(cert.certificate);
    }
    let (good, revoked) = (&issued[0], &issued[1]);
    let record = f
        .idmint
        .store()
        .require_certificate(&revoked.info.id)
        .await
        .expect("record");
    let change = Principal::Local {
        actor: "verifier".into(),
    }
    .authorize(
        Action::ChangeCertificateStatus,
        &Resource::certificate(&record),
    )
    .expect("the operator may revoke");
    f.idmint
        .set_certificate_status(
            &change,
            &revoked.info.id,
            CertificateStatus::Revoked,
            Some(RevocationReason::KeyCompromise),
        )
        .await
        .expect("revoke");

    let root = f.work.pem("root.pem", &f.root);
    let issuing = f.work.pem("issuing.pem", &f.issuing);
    let good_pem = f.work.pem("good.pem", &good.der);
    let revoked_pem = f.work.pem("revoked.pem", &revoked.der);

    // The CRL.
    let crl = f
        .idmint
        .issue_crl("verifier", &f.issuing_name)
        .await
        .expect("CRL");
    let crl_pem = f.work.pem_of("crl.pem", "X509 CRL", &crl);
    let text = openssl::crl(&crl_pem, &issuing).expect("openssl: CRL signature");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(text.contains("X509v3 CRL Number"), "{text}");
    openssl::verify_with_crl(&root, &[&issuing], &good_pem, &crl_pem, &[])
        .expect("openssl: the good certificate against the CRL");
    let refused = openssl::verify_with_crl(&root, &[&issuing], &revoked_pem, &crl_pem, &[])
        .expect_err("openssl accepted a revoked certificate");
    assert!(refused.contains("certificate revoked"), "{refused}");

    webpki_check::client(&good.der, &f.root, &[&f.issuing], &[&crl])
        .expect("webpki: the good certificate against the CRL");
    assert_eq!(
        webpki_check::client(&revoked.der, &f.root, &[&f.issuing], &[&crl]),
        Err(webpki::Error::CertRevoked)
    );

    let entries = x509::crl(&crl, &f.issuing).expect("x509-parser: CRL");
    assert_eq!(
        entries,
        vec![(revoked.info.serial.to_lowercase(), Some(1))],
        "the CRL lists exactly the revoked certificate, reason keyCompromise (1)"
    );

    // OCSP: both certificates in one request, made by openssl.
    let request = openssl::ocsp_request(&f.work, &issuing, &[&good_pem, &revoked_pem], &[]);
    let answer = f.idmint.ocsp_respond(&request).await;
    assert!(answer.failure.is_none(), "{:?}", answer.failure);
    let response = f.work.write("ocsp.der", &answer.der);
    let text = openssl::ocsp_check(
        &response,
        &issuing,
        &root,
        &[],
        &[&good_pem, &revoked_pem],
        &[],
    )
    .expect("openssl: OCSP response");
    assert!(text.contains("good.pem: good"), "{text}");
    assert!(text.contains("revoked.pem: revoked"), "{text}");
    assert!(text.contains("Reason: keyCompromise"), "{text}");

    let parsed = verify::ocsp::check(&answer.der, &f.issuing).expect("x509-ocsp + x509-parser");
    assert_eq!(
        parsed.statuses,
        vec![
            (good.info.serial.to_lowercase(), "good"),
            (revoked.info.serial.to_lowercase(), "revoked"),
        ]
    );
    let responder = parsed
        .responder
        .expect("the responder certificate is in the response");
    x509::check(&responder, &f.issuing, &Expect::ocsp_responder()).expect("x509-parser: responder");
    webpki_check::ocsp_responder(&responder, &f.root, &[&f.issuing]).expect("webpki: responder");
    let responder_pem = f.work.pem("responder.pem", &responder);
    openssl::verify(&root, &[&issuing], &responder_pem, Some("ocsphelper"))
        .expect("openssl: responder");

    // A serial we never issued: `unknown`, still signed.
    let request = openssl::ocsp_request(&f.work, &issuing, &[], &["0x0badc0de"]);
    let answer = f.idmint.ocsp_respond(&request).await;
    let response = f.work.write("ocsp-unknown.der", &answer.der);
    let text = openssl::ocsp_check(&response, &issuing, &root, &[], &[], &["0x0badc0de"])
        .expect("openssl: OCSP response for an unknown serial");
    assert!(text.contains("0x0badc0de: unknown"), "{text}");
    let parsed = verify::ocsp::check(&answer.der, &f.issuing).expect("x509-ocsp");
    assert_eq!(parsed.statuses, vec![("0badc0de".to_string(), "unknown")]);
}

/// An offline batch: the batch CA, the delegated OCSP responder and the CRL
/// signer it signs for the maker, the CRL that signer signs in the batch
/// CA's name, the batch CA's own CRL over the signer, OCSP answers by the
/// offline responder, and the batch CA revoked on its parent's CRL.
#[tokio::test(flavor = "multi_thread")]
async fn offline_batch_ca_and_its_revocation_signers() {
    let f = fixture().await;
    let identity = age::x25519::Identity::generate();
    let report = Station::new(&f.idmint)
        .authorize_offline_batch(
            "verifier",
            &AuthorizeRequest {
                factory: "verify-factory".into(),
                count: 10,
                serial_range: None,
                valid_days: 30,
                out: f.work.path("batch.bundle"),
                key: BatchKeyDestination::Age(identity.to_public().to_string()),
                product: None,
                profile: "device".into(),
                ca: None,
                allow_inject: false,
            },
        )
        .await
        .expect("authorize");
    let maker_der = ca_der(&f.idmint, &report.maker_ca).await;
    let batch_der = ca_der(&f.idmint, &report.batch_ca).await;
    let signers = f
        .idmint
        .store()
        .revocation_signers(&report.batch_ca)
        .await
        .expect("read")
        .expect("the batch has revocation signers");

    let root = f.work.pem("root.pem", &f.root);
    let maker = f.work.pem("maker.pem", &maker_der);
    let batch = f.work.pem("batch-ca.pem", &batch_der);
    let responder = f
        .work
        .pem("batch-responder.pem", &signers.ocsp_responder_der);
    let crl_signer = f.work.pem("crl-signer.pem", &signers.crl_signer_der);

    // The batch CA: a CA of path length 0 under the maker CA, clientAuth only.
    openssl::verify(&root, &[&maker], &batch, None).expect("openssl: batch CA");
    x509::check(&maker_der, &f.root, &Expect::ca()).expect("x509-parser: maker CA");
    x509::check(&batch_der, &maker_der, &Expect::batch_ca()).expect("x509-parser: batch CA");

    // Its delegated OCSP responder.
    x509::check(
        &signers.ocsp_responder_der,
        &batch_der,
        &Expect::ocsp_responder(),
    )
    .expect("x509-parser: offline responder");
    openssl::verify(&root, &[&maker, &batch], &responder, Some("ocsphelper"))
        .expect("openssl: offline responder");
    // rustls-webpki checks the extended key usage of every certificate in
    // the path: the batch CA (clientAuth only, so that a factory cannot mint
    // TLS servers) does not pass it for id-kp-OCSPSigning, so webpki is
    // asked only that the signature path holds, the way an OCSP client
    // checks a responder its issuer delegated to (RFC 6960 §4.2.2.2).
    webpki_check::signed_by(&signers.ocsp_responder_der, &batch_der)
        .expect("webpki: offline responder signed by the batch CA");

    // An OCSP answer for a serial of the batch CA, by that responder.
    let request = openssl::ocsp_request(&f.work, &batch, &[], &["0x05"]);
    let answer = f.idmint.ocsp_respond(&request).await;
    assert!(answer.failure.is_none(), "{:?}", answer.failure);
    let response = f.work.write("batch-ocsp.der", &answer.der);
    let text = openssl::ocsp_check(&response, &batch, &root, &[&maker], &[], &["0x05"])
        .expect("openssl: offline OCSP response");
    assert!(text.contains("0x05: unknown"), "{text}");
    let parsed = verify::ocsp::check(&answer.der, &batch_der).expect("x509-ocsp: offline");
    assert_eq!(
        parsed.responder.as_deref(),
        Some(signers.ocsp_responder_der.as_slice()),
        "the offline answer is signed by the responder the batch CA signed"
    );

    // The CRL signer: the batch CA's subject, cRLSign only, covered by the
    // batch CA's own CRL.
    x509::check(&signers.crl_signer_der, &batch_der, &Expect::crl_signer())
        .expect("x509-parser: CRL signer");
    assert_eq!(
        x509::subject(&signers.crl_signer_der),
        x509::subject(&batch_der),
        "the CRL signer names the batch CA as the CRLs' issuer"
    );
    let signer_status = f
        .work
        .pem_of("signer-status.pem", "X509 CRL", &signers.signer_status_crl);
    openssl::crl(&signer_status, &batch).expect("openssl: the batch CA's CRL over its signer");
    assert_eq!(
        x509::crl(&signers.signer_status_crl, &batch_der).expect("x509-parser"),
        Vec::new()
    );

    // The CRL the maker publishes for the batch CA, signed by the signer.
    let crl = f
        .idmint
        .issue_crl("verifier", &report.batch_ca)
        .await
        .expect("batch CRL");
    let crl_pem = f.work.pem_of("batch.crl.pem", "X509 CRL", &crl);
    openssl::crl(&crl_pem, &crl_signer).expect("openssl: the signer's CRL");
    x509::crl(&crl, &signers.crl_signer_der).expect("x509-parser: the signer's CRL");
    assert!(
        x509::crl(&crl, &batch_der).is_err(),
        "the batch CA's key, at the factory, signed the maker's CRL"
    );

    // The batch CA revoked: on the maker CA's CRL, and refused through the
    // chain.
    f.idmint
        .revoke_ca("verifier", &report.batch_ca, RevocationReason::CaCompromise)
        .await
        .expect("revoke the batch CA");
    let maker_crl = f
        .idmint
        .issue_crl("verifier", &report.maker_ca)
        .await
        .expect("maker CRL");
    let maker_crl_pem = f.work.pem_of("maker.crl.pem", "X509 CRL", &maker_crl);
    let root_crl = f
        .idmint
        .issue_crl("verifier", ROOT_CA)
        .await
        .expect("root CRL");
    let root_crl_pem = f.work.pem_of("root.crl.pem", "X509 CRL", &root_crl);
    let text = openssl::crl(&maker_crl_pem, &maker).expect("openssl: maker CRL");
    assert!(text.contains("CA Compromise"), "{text}");
    let refused = openssl::verify_with_crl(
        &root,
        &[&maker, &batch, &crl_signer],
        &responder,
        &maker_crl_pem,
        &[&root_crl_pem, &crl_pem, &signer_status],
    )
    .expect_err("openssl accepted a certificate under a revoked batch CA");
    assert!(refused.contains("certificate revoked"), "{refused}");
    assert_eq!(
        x509::crl(&maker_crl, &maker_der).expect("x509-parser: maker CRL"),
        vec![(x509::serial(&batch_der), Some(2))],
        "the maker CRL lists the batch CA, reason cACompromise (2)"
    );
    assert_eq!(
        webpki_check::client(
            &signers.crl_signer_der,
            &f.root,
            &[&maker_der, &batch_der],
            &[&maker_crl, &root_crl],
        )
        .map(|_| ())
        .err(),
        Some(webpki::Error::CertRevoked),
        "webpki: a certificate under the revoked batch CA"
    );
}

#[test]
fn the_verifiers_refuse_what_they_should() {
    // A check of the checkers: a certificate signed by another key fails
    // each of them, so a pass above means something.
    let dir = tempfile::tempdir().expect("dir");
    let work = Workdir::new(dir.path().join("w"));
    let (a, _) = openssl::self_signed_ca(&work, "a");
    let (b, _) = openssl::self_signed_ca(&work, "b");
    let a_der = verify::der_of_pem_file(&a);
    let b_der = verify::der_of_pem_file(&b);
    assert!(openssl::verify(&a, &[], &b, None).is_err());
    assert!(x509::check(&b_der, &a_der, &Expect::ca()).is_err());
    assert!(webpki_check::signed_by(&b_der, &a_der).is_err());
}
