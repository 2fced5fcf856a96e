//! What an honest station never writes but a factory holding the batch CA
//! key could: logs over the count, with clones and skipped serials, and a
//! second log for the same authorization. Reconcile must report them (and
//! register excess and clones revoked), or reject the log.

use std::path::{Path, PathBuf};

use idmint_flows::init::{init, InitOptions};
use idmint_flows::Idmint;
use idmint_pki::{CertificateAuthority, DeviceKey, KeyType, SubjectValues};
use idmint_registry::{CertificateFilter, CertificateId, CertificateStatus, ThingName};
use zeroize::Zeroizing;

use super::bundle::{b64_encode, Authorization};
use super::log::{Event, FindingKind, LogWriter};
use super::{AuthorizeRequest, BatchKeyDestination};
use crate::Station;

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    idmint: Idmint,
    auth: Authorization,
    ca: CertificateAuthority,
}

async fn setup(count: u64, range: (u64, u64)) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (idmint, _) = init(
        &path.join("data"),
        InitOptions {
            org: "Test Co".into(),
            key_type: KeyType::P256,
            store: None,
            passphrase: Some(Zeroizing::new("pw".into())),
        },
    )
    .await
    .unwrap();
    let identity = age::x25519::Identity::generate();
    let identity_file = path.join("factory.key");
    std::fs::write(
        &identity_file,
        format!(
            "{}\n",
            age::secrecy::ExposeSecret::expose_secret(&identity.to_string())
        ),
    )
    .unwrap();
    let out = path.join("auth.json");
    Station::new(&idmint)
        .authorize_offline_batch(
            "test",
            &AuthorizeRequest {
                factory: "acme".into(),
                count,
                serial_range: Some(range),
                valid_days: 30,
                out: out.clone(),
                key: BatchKeyDestination::Age(identity.to_public().to_string()),
                product: Some("widget".into()),
                profile: "device".into(),
                ca: None,
                allow_inject: false,
            },
        )
        .await
        .unwrap();
    let auth = Authorization::read(&out).unwrap();
    let ca = auth.open_batch_ca(Some(&identity_file), None).unwrap();
    Setup {
        _dir: dir,
        dir: path,
        idmint,
        auth,
        ca,
    }
}

fn issued(ca: &CertificateAuthority, serial: u64, hw: &str, key: &DeviceKey) -> Event {
    issued_for(ca, serial, hw, key, 20)
}

/// An `issued` event for a certificate valid `days` (20 is within the batch
/// CA's 30, as the station caps it).
fn issued_for(
    ca: &CertificateAuthority,
    serial: u64,
    hw: &str,
    key: &DeviceKey,
    days: u32,
) -> Event {
    let mut profile = idmint_pki::Profile::device();
    profile.validity_days = days;
    let cert = ca
        .issue(
            &key.public_key().unwrap(),
            &profile,
            &SubjectValues::for_thing(hw).with("org", "Test Co"),
        )
        .unwrap();
    Event::Issued {
        serial,
        hw_id: hw.into(),
        thing: hw.into(),
        certificate_id: cert.info.id.clone(),
        public_key_sha256: cert.info.public_key_sha256.clone(),
        key_type: "p256".into(),
        injected: false,
        certificate: b64_encode(&cert.der),
    }
}

fn id_of(event: &Event) -> CertificateId {
    match event {
        Event::Issued { certificate_id, .. } => certificate_id.clone(),
        other => panic!("not an issued record: {other:?}"),
    }
}

/// Writes `events` as a signed log (as a factory with the key could).
fn write_log(s: &Setup, path: &Path, events: Vec<Event>) {
    let mut w =
        LogWriter::open(path, &s.auth.limits.batch, &s.auth.id, 0, s.auth.id.clone()).unwrap();
    for (i, e) in events.into_iter().enumerate() {
        w.append(s.ca.signer(), e, i as u64, 0).unwrap();
    }
}

fn provisioned(event: &Event, serial: u64) -> Event {
    Event::Provisioned {
        certificate_id: id_of(event),
        serial,
        locked: false,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn excess_clones_and_skipped_serials_are_reported_and_registered_revoked() {
    let s = setup(2, (1, 10)).await;
    let k1 = DeviceKey::generate(KeyType::P256).unwrap();
    let k2 = DeviceKey::generate(KeyType::P256).unwrap();
    let a = issued(&s.ca, 1, "HW-A", &k1);
    // The same hardware id again while the first is live: a clone.
    let b = issued(&s.ca, 2, "HW-A", &k2);
    // A third certificate over a count of 2, serials 3..4 skipped, and the
    // first device's key again.
    let c = issued(&s.ca, 5, "HW-C", &k1);
    let events = vec![
        a.clone(),
        provisioned(&a, 1),
        b.clone(),
        provisioned(&b, 2),
        c.clone(),
        Event::Spoiled {
            certificate_id: id_of(&c),
            serial: 5,
            stage: "install".into(),
            reason: "dropped".into(),
        },
        Event::Closed {
            issued: 3,
            provisioned: 2,
            spoiled: 1,
        },
    ];
    let log = s.dir.join("issuance.log");
    write_log(&s, &log, events);

    let report = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert!(report.accepted, "{:?}", report.findings);
    assert!(!report.clean());
    let kinds: Vec<FindingKind> = report.findings.iter().map(|f| f.kind).collect();
    for k in [
        FindingKind::Duplicate,
        FindingKind::Excess,
        FindingKind::Gap,
    ] {
        assert!(kinds.contains(&k), "{k:?} missing: {:?}", report.findings);
    }
    assert!(report.findings.iter().all(|f| !f.rejects));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.message.contains("hardware id HW-A twice")),
        "{:?}",
        report.findings
    );
    assert!(report
        .findings
        .iter()
        .any(|f| f.message.contains("serials 3..4 were never issued")));
    assert_eq!((report.registered, report.issued), (3, 3));

    let store = s.idmint.store();
    let status = |id: CertificateId| async move {
        let c = store.require_certificate(&id).await.unwrap();
        (c.status, c.revocation_reason, c.thing)
    };
    assert_eq!(
        status(id_of(&a)).await,
        (CertificateStatus::Active, None, Some("HW-A".into()))
    );
    assert_eq!(
        status(id_of(&b)).await,
        (
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::KeyCompromise),
            None
        )
    );
    assert_eq!(
        status(id_of(&c)).await,
        (
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::PrivilegeWithdrawn),
            None
        )
    );
    // The quota is never exceeded in the registry: the excess certificate
    // is registered (revoked) outside it.
    let batch = store.require_batch(&s.auth.limits.batch).await.unwrap();
    assert_eq!((batch.count, batch.issued, batch.spoiled), (2, 2, 0));

    // Again: nothing new, the same findings.
    let certs_before = store
        .list_certificates(&CertificateFilter::default())
        .await
        .unwrap()
        .len();
    let again = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert_eq!((again.new_records, again.registered), (0, 0));
    let again_kinds: Vec<FindingKind> = again.findings.iter().map(|f| f.kind).collect();
    assert_eq!(again_kinds, kinds);
    assert_eq!(
        store
            .list_certificates(&CertificateFilter::default())
            .await
            .unwrap()
            .len(),
        certs_before
    );
    assert!(store.verify_audit().await.unwrap().intact());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_log_for_the_same_authorization_is_a_fork() {
    let s = setup(5, (1, 5)).await;
    let one = |hw: &str| {
        let k = DeviceKey::generate(KeyType::P256).unwrap();
        let e = issued(&s.ca, 1, hw, &k);
        vec![
            e.clone(),
            provisioned(&e, 1),
            Event::Closed {
                issued: 1,
                provisioned: 1,
                spoiled: 0,
            },
        ]
    };
    let first = s.dir.join("first.log");
    let second = s.dir.join("second.log");
    write_log(&s, &first, one("HW-1"));
    write_log(&s, &second, one("HW-2"));
    let ok = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &first)
        .await
        .unwrap();
    assert!(ok.clean(), "{:?}", ok.findings);
    let fork = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &second)
        .await
        .unwrap();
    assert!(!fork.accepted);
    assert_eq!(fork.registered, 0);
    assert!(
        fork.findings.iter().any(|f| f.kind == FindingKind::Fork),
        "{:?}",
        fork.findings
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn outcomes_must_follow_issuance_and_totals_must_add_up() {
    let s = setup(5, (1, 5)).await;
    let k = DeviceKey::generate(KeyType::P256).unwrap();
    let e = issued(&s.ca, 1, "HW-1", &k);
    let log = s.dir.join("bad.log");
    write_log(
        &s,
        &log,
        vec![
            provisioned(&e, 1),
            e.clone(),
            Event::Closed {
                issued: 7,
                provisioned: 0,
                spoiled: 0,
            },
        ],
    );
    let report = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert!(!report.accepted);
    let edited = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Edited)
        .count();
    assert_eq!(edited, 2, "{:?}", report.findings);
    assert!(s
        .idmint
        .store()
        .reconciled_records(&s.auth.limits.batch)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_outliving_the_batch_ca_is_excess() {
    let s = setup(5, (1, 5)).await;
    let k = DeviceKey::generate(KeyType::P256).unwrap();
    let e = issued_for(&s.ca, 1, "HW-1", &k, 3650);
    let log = s.dir.join("long.log");
    write_log(
        &s,
        &log,
        vec![
            e.clone(),
            provisioned(&e, 1),
            Event::Closed {
                issued: 1,
                provisioned: 1,
                spoiled: 0,
            },
        ],
    );
    let report = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert!(report.accepted);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Excess && f.message.contains("beyond the batch CA")),
        "{:?}",
        report.findings
    );
    let c = s
        .idmint
        .store()
        .require_certificate(&id_of(&e))
        .await
        .unwrap();
    assert_eq!(c.status, CertificateStatus::Revoked);
}

#[test]
fn one_station_per_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("line.log");
    let held = super::station::lock_log(&log).unwrap();
    let err = super::station::lock_log(&log).unwrap_err().to_string();
    assert!(err.contains("another station is writing"), "{err}");
    drop(held);
    assert!(super::station::lock_log(&log).is_ok());
}

/// Hole 4, offline: a log record whose hardware id (and thing) names an
/// existing thing of no batch, or of another device, is a finding; its
/// certificate is registered revoked and attached to nothing, and the
/// thing is left as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_record_naming_another_batchs_thing_is_a_finding_not_written() {
    let s = setup(3, (1, 10)).await;
    let store = s.idmint.store();
    let mut tx = store.begin("operator").await.unwrap();
    let mut admin = idmint_registry::NewThing::named(ThingName::parse("admin-box").unwrap());
    admin.attributes.insert("role".into(), "admin".into());
    tx.upsert_thing(&admin).await.unwrap();
    tx.commit().await.unwrap();
    let mine = DeviceKey::generate(KeyType::P256).unwrap();
    let theirs = DeviceKey::generate(KeyType::P256).unwrap();
    let good = issued(&s.ca, 1, "HW-G", &mine);
    let bad = issued(&s.ca, 2, "admin-box", &theirs);
    let events = vec![
        good.clone(),
        provisioned(&good, 1),
        bad.clone(),
        provisioned(&bad, 2),
        Event::Closed {
            issued: 2,
            provisioned: 2,
            spoiled: 0,
        },
    ];
    let log = s.dir.join("issuance.log");
    write_log(&s, &log, events);
    let report = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert!(report.accepted, "{:?}", report.findings);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Duplicate
                && f.message.contains("admin-box")
                && f.message.contains("not attached")),
        "{:?}",
        report.findings
    );
    let c = store.require_certificate(&id_of(&bad)).await.unwrap();
    assert_eq!((c.status, c.thing), (CertificateStatus::Revoked, None));
    let thing = store.thing("admin-box").await.unwrap().unwrap();
    assert_eq!((thing.batch, thing.device_id), (None, None));
    assert_eq!(
        thing.attributes.get("role").map(String::as_str),
        Some("admin")
    );
    let certs = store
        .list_certificates(&CertificateFilter {
            thing: Some("admin-box".into()),
            ..CertificateFilter::default()
        })
        .await
        .unwrap();
    assert!(certs.is_empty(), "{certs:?}");
    let g = store.require_certificate(&id_of(&good)).await.unwrap();
    assert_eq!(g.status, CertificateStatus::Active);
}

/// `openssl verify -crl_check -extended_crl` of registry certificate `id`
/// against the batch CA's CRL (signed by its CRL signer).
fn openssl_crl_check(dir: &Path, files: &[(&str, &[u8])], cert: &[u8]) -> (bool, String) {
    let write = |name: &str, label: &str, der: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, idmint_pki::to_pem(label, der)).unwrap();
        path
    };
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["verify", "-crl_check", "-extended_crl"]);
    for (i, (flag, der)) in files.iter().enumerate() {
        let label = if *flag == "-CRLfile" {
            "X509 CRL"
        } else {
            "CERTIFICATE"
        };
        cmd.arg(flag).arg(write(&format!("f{i}.pem"), label, der));
    }
    let out = cmd
        .arg(write("leaf.pem", "CERTIFICATE", cert))
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn reconciled_excess_is_on_the_batch_cas_crl() {
    let s = setup(1, (1, 10)).await;
    let k1 = DeviceKey::generate(KeyType::P256).unwrap();
    let k2 = DeviceKey::generate(KeyType::P256).unwrap();
    let a = issued(&s.ca, 1, "HW-A", &k1);
    let b = issued(&s.ca, 2, "HW-B", &k2);
    let log = s.dir.join("issuance.log");
    write_log(
        &s,
        &log,
        vec![
            a.clone(),
            provisioned(&a, 1),
            b.clone(),
            provisioned(&b, 2),
            Event::Closed {
                issued: 2,
                provisioned: 2,
                spoiled: 0,
            },
        ],
    );
    let report = Station::new(&s.idmint)
        .reconcile_issuance_log("test", &log)
        .await
        .unwrap();
    assert!(report.accepted, "{:?}", report.findings);
    assert!(report
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::Excess));

    let store = s.idmint.store();
    let batch_ca = s.auth.limits.batch.clone() + "-ca";
    let signers = store.revocation_signers(&batch_ca).await.unwrap().unwrap();
    let crl = s.idmint.issue_crl("test", &batch_ca).await.unwrap();
    let root = store.require_ca("root").await.unwrap().certificate_der;
    let offline = store.require_ca("offline").await.unwrap().certificate_der;
    let chain: [(&str, &[u8]); 5] = [
        ("-CAfile", &root),
        ("-untrusted", &offline),
        ("-untrusted", s.ca.certificate_der()),
        ("-untrusted", &signers.crl_signer_der),
        ("-CRLfile", &crl),
    ];
    let der = |e: &Event| {
        let id = id_of(e);
        async move { store.require_certificate(&id).await.unwrap().der }
    };
    let (ok, text) = openssl_crl_check(&s.dir, &chain, &der(&a).await);
    assert!(ok, "{text}");
    let (ok, text) = openssl_crl_check(&s.dir, &chain, &der(&b).await);
    assert!(!ok && text.contains("certificate revoked"), "{text}");

    // The stored keys are encrypted under the CA passphrase, never plain.
    for key in [&signers.ocsp_responder_key, &signers.crl_signer_key] {
        assert!(key.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    }
    assert!(!format!("{signers:?}").contains("PRIVATE"));
}
