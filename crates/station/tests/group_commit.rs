//! Single issuances under concurrency go through the group-commit writer:
//! every caller gets its own answer (the ones over a batch's quota are
//! refused, the rest registered), and the registry holds exactly what the
//! callers were told, on SQLite and (with IDMINT_TEST_POSTGRES) PostgreSQL.

use std::sync::Arc;

use idmint_flows::access::{Action, Principal};
use idmint_flows::init::{init, InitOptions};
use idmint_flows::issue::IssueOptions;
use idmint_flows::{FlowError, Idmint};
use idmint_pki::{DeviceKey, KeyType, SubjectValues};
use idmint_registry::{CertificateFilter, RegistryError};
use idmint_station::{NewStationBatch, Station};
use zeroize::Zeroizing;

async fn fresh(dir: &std::path::Path, store: Option<String>) -> Idmint {
    let (idmint, _) = init(
        dir,
        InitOptions {
            org: "Group Co".into(),
            key_type: KeyType::P256,
            store,
            passphrase: Some(Zeroizing::new("group-commit-test".into())),
        },
    )
    .await
    .expect("init");
    idmint
}

async fn concurrent_issuance_respects_the_quota(idmint: Idmint) {
    let idmint = Arc::new(idmint);
    let batch = Station::new(&idmint)
        .create_station_batch(
            "test",
            &NewStationBatch {
                product: "widget".into(),
                count: 40,
                factory: None,
                profile: "device".into(),
                ca: None,
                allow_inject: false,
                policy: Default::default(),
            },
        )
        .await
        .expect("batch");
    // 60 callers at once against a quota of 40, and 20 outside any batch.
    let mut calls = Vec::new();
    for i in 0..80 {
        let (idmint, batch) = (idmint.clone(), batch.id.clone());
        calls.push(tokio::spawn(async move {
            let key = DeviceKey::generate(KeyType::P256).expect("key");
            let thing = idmint_flows::ThingName::parse(&format!("dev-{i:03}")).expect("thing");
            let options = IssueOptions {
                batch: (i < 60).then_some(batch),
                ..Default::default()
            };
            let who = Principal::Local {
                actor: format!("caller-{i}"),
            }
            .authorize_issuance(Action::IssueInBatch, options.batch.as_deref())
            .expect("the local operator may issue");
            idmint
                .issue_for_public_key(
                    &who,
                    &key.public_key().expect("public key"),
                    &thing,
                    SubjectValues::for_thing(thing.as_str()),
                    &options,
                )
                .await
                .map(|issued| issued.certificate.info.id)
        }));
    }
    let mut issued_in_batch = Vec::new();
    let mut registered_callers = Vec::new();
    let mut refused_callers = Vec::new();
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.expect("task") {
            Ok(id) => {
                if i < 60 {
                    issued_in_batch.push(id);
                }
                registered_callers.push(format!("caller-{i}"));
            }
            Err(FlowError::Registry(RegistryError::QuotaExhausted { .. })) if i < 60 => {
                refused_callers.push(format!("caller-{i}"))
            }
            Err(e) => panic!("caller {i}: {e}"),
        }
    }
    assert_eq!(issued_in_batch.len(), 40);
    assert_eq!(refused_callers.len(), 20);
    assert_eq!(registered_callers.len(), 60);

    let store = idmint.store();
    let in_batch = store
        .list_certificates(&CertificateFilter {
            batch: Some(batch.id.to_string()),
            ..Default::default()
        })
        .await
        .expect("list");
    let mut registered: Vec<String> = in_batch.iter().map(|c| c.id.to_string()).collect();
    registered.sort();
    issued_in_batch.sort();
    assert_eq!(
        registered, issued_in_batch,
        "registered = what callers were told"
    );
    let all = store
        .list_certificates(&CertificateFilter::default())
        .await
        .expect("list");
    // 60 device certificates and the CAs' own (root and issuing) if listed.
    assert_eq!(all.iter().filter(|c| c.thing.is_some()).count(), 60);
    let batch = store.require_batch(&batch.id).await.expect("batch");
    assert_eq!(batch.issued, 40);
    // Every registration is in the audit chain under its caller's name,
    // nothing of a refused one is, and the chain is intact.
    let report = store.verify_audit().await.expect("verify");
    assert!(report.intact(), "{report:?}");
    let records = store.audit_records(0, 100_000).await.expect("audit");
    for caller in &registered_callers {
        assert!(
            records
                .iter()
                .any(|r| &r.actor == caller && r.action == "certificate.register"),
            "{caller} registered but not audited"
        );
    }
    for caller in &refused_callers {
        assert!(
            !records.iter().any(|r| &r.actor == caller),
            "{caller} was refused but left an audit record"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issuance_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let idmint = fresh(&dir.path().join("data"), None).await;
    concurrent_issuance_respects_the_quota(idmint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_issuance_on_postgresql() {
    let Ok(server) = std::env::var("IDMINT_TEST_POSTGRES") else {
        idmint_testkit::skip(
            "PostgreSQL (IDMINT_TEST_POSTGRES)",
            "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
        );
        return;
    };
    // A database of our own, so reruns and other tests do not interfere.
    let name = format!(
        "idmint_group_{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    );
    let status = std::process::Command::new("psql")
        .args([server.as_str(), "-qc", &format!("CREATE DATABASE {name}")])
        .status()
        .expect("psql");
    assert!(status.success());
    let url = match server.rfind('/') {
        Some(i) => format!("{}/{name}", &server[..i]),
        None => panic!("IDMINT_TEST_POSTGRES has no database part: {server}"),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let idmint = fresh(&dir.path().join("data"), Some(url)).await;
    concurrent_issuance_respects_the_quota(idmint).await;
}
