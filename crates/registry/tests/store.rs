//! The store suite: every test runs against SQLite and, when
//! IDMINT_TEST_POSTGRES names a server (as .ci/run does), PostgreSQL too.

use std::collections::BTreeMap;

use idmint_registry::{
    AuditEvent, AuditReport, BatchId, BatchKind, CaKind, CertificateFilter, CertificateId,
    CertificateStatus, NewBatch, NewCa, NewCertificate, NewChain, NewIntermediate, NewThing,
    OwnershipToken, RegistryError, Serial, Store, ThingName,
};
use sqlx::Connection;

/// A fresh, empty store per backend: a temp SQLite file, and a new database
/// on the PostgreSQL test server if there is one.
async fn stores() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let mut out = vec![(url.clone(), Store::open(&url).await.unwrap(), Some(dir))];
    match std::env::var("IDMINT_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            sqlx::any::install_default_drivers();
            let name = format!("idmint_test_{}", hex::encode(rand_bytes()));
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            let url = format!("{base}/{name}");
            out.push((url.clone(), Store::open(&url).await.unwrap(), None));
        }
        _ => idmint_testkit::skip(
            "PostgreSQL (IDMINT_TEST_POSTGRES)",
            "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
        ),
    }
    out
}

fn rand_bytes() -> [u8; 6] {
    let mut b = [0u8; 6];
    idmint_pki::random_fill(&mut b).unwrap();
    b
}

/// The certificate id standing for `tag`: its bytes in hex, right-padded
/// with `0` to 64 digits (tags keep their order).
fn cid(tag: &str) -> CertificateId {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    CertificateId::parse(&format!("{hex:0<64}")).unwrap()
}

fn thing(name: &str) -> NewThing {
    NewThing::named(ThingName::parse(name).unwrap())
}

fn batch_id(id: &str) -> BatchId {
    BatchId::parse(id).unwrap()
}

fn cert(id: &str, serial: &str, thing: Option<&str>, batch: Option<&str>) -> NewCertificate {
    NewCertificate {
        id: cid(id),
        serial: Serial::parse(serial).unwrap(),
        ca: "issuing".into(),
        thing: thing.map(str::to_string),
        status: CertificateStatus::Active,
        subject: format!("CN={}", thing.unwrap_or("x")),
        key_type: Some("p256".into()),
        not_before: 1_700_000_000,
        not_after: 2_000_000_000,
        public_key_sha256: format!("pk-{id}"),
        batch: batch.map(batch_id),
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
    }
}

async fn ca(store: &Store) {
    let mut tx = store.begin("test").await.unwrap();
    tx.insert_ca(&NewCa {
        name: "issuing".into(),
        kind: CaKind::Issuing,
        parent: Some("root".into()),
        certificate_der: vec![1, 2, 3],
        id: cid("caid"),
        subject: "CN=Issuing".into(),
        key_type: Some("p256".into()),
        not_before: 0,
        not_after: 2_000_000_000,
        key_ref: Some("encrypted".into()),
        signer_der: None,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

async fn exec(url: &str, sql: &str) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query(sql).execute(&mut conn).await.unwrap();
}

fn assert_broken(report: &AuditReport, what: &str) {
    assert!(!report.intact(), "{what} was not detected: {report:?}");
}

#[tokio::test]
async fn certificates_things_and_status_transitions() {
    for (url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("test").await.unwrap();
        tx.upsert_thing(&thing("dev-1")).await.unwrap();
        tx.insert_certificates(&[
            cert("aa", "01", Some("dev-1"), None),
            cert("bb", "02", None, None),
        ])
        .await
        .unwrap();
        tx.commit().await.unwrap();

        let all = store
            .list_certificates(&CertificateFilter::default())
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "{url}");
        let of_thing = store
            .list_certificates(&CertificateFilter {
                thing: Some("dev-1".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(of_thing.len(), 1);
        assert_eq!(of_thing[0].id, cid("aa"));
        assert_eq!(of_thing[0].der, vec![0x30, 0x03, 0x02, 0x01, 0x01]);

        let mut tx = store.begin("test").await.unwrap();
        tx.set_certificate_status(&cid("aa"), CertificateStatus::Inactive, None)
            .await
            .unwrap();
        tx.set_certificate_status(
            &cid("aa"),
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::KeyCompromise),
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let revoked = store.revoked_certificates("issuing").await.unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            revoked[0].revocation_reason,
            Some(idmint_registry::RevocationReason::KeyCompromise)
        );
        assert!(revoked[0].revoked_at.is_some());

        let mut tx = store.begin("test").await.unwrap();
        let err = tx
            .set_certificate_status(&cid("aa"), CertificateStatus::Active, None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::InvalidTransition { .. }),
            "{err}"
        );
        let err = tx
            .set_certificate_status(&cid("zz"), CertificateStatus::Active, None)
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }), "{err}");
        drop(tx);

        // What OCSP reads, by issuer and serial.
        let good = store
            .revocation_state("issuing", "02")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(good.status, CertificateStatus::Active);
        assert_eq!(good.revoked_at, None);
        let revoked = store
            .revocation_state("issuing", "01")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoked.status, CertificateStatus::Revoked);
        assert_eq!(
            revoked.revocation_reason,
            Some(idmint_registry::RevocationReason::KeyCompromise)
        );
        assert!(revoked.revoked_at.is_some());
        assert_eq!(store.revocation_state("issuing", "77").await.unwrap(), None);
        assert_eq!(store.revocation_state("other", "02").await.unwrap(), None);
        let mut tx = store.begin("test").await.unwrap();
        let dup = tx
            .insert_certificate(&cert("aa", "09", None, None))
            .await
            .unwrap_err();
        assert!(matches!(dup, RegistryError::AlreadyExists { .. }), "{dup}");
        drop(tx);
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

#[tokio::test]
async fn dropped_transaction_writes_nothing() {
    for (_url, store, _dir) in stores().await {
        ca(&store).await;
        let before = store.verify_audit().await.unwrap();
        let mut tx = store.begin("test").await.unwrap();
        tx.upsert_thing(&thing("ghost")).await.unwrap();
        tx.insert_certificate(&cert("cc", "03", Some("ghost"), None))
            .await
            .unwrap();
        drop(tx);
        assert!(store.thing("ghost").await.unwrap().is_none());
        assert!(store.certificate(&cid("cc")).await.unwrap().is_none());
        let after = store.verify_audit().await.unwrap();
        assert_eq!(before.records, after.records);
        assert!(after.intact());
    }
}

#[tokio::test]
async fn things_upsert_and_unique_device_ids() {
    for (_url, store, _dir) in stores().await {
        let mut t = thing("dev-1");
        t.device_id = Some("HW-1".into());
        t.attributes = BTreeMap::from([("color".to_string(), "red".to_string())]);
        let mut tx = store.begin("test").await.unwrap();
        tx.upsert_thing(&t).await.unwrap();
        t.attributes.insert("size".into(), "L".into());
        tx.upsert_thing(&t).await.unwrap();
        tx.commit().await.unwrap();
        let got = store.thing("dev-1").await.unwrap().unwrap();
        assert_eq!(got.attributes.len(), 2);
        assert_eq!(
            store
                .thing_by_device_id("HW-1")
                .await
                .unwrap()
                .unwrap()
                .name,
            "dev-1"
        );

        let mut other = thing("dev-2");
        other.device_id = Some("HW-1".into());
        let mut tx = store.begin("test").await.unwrap();
        let err = tx.upsert_thing(&other).await.unwrap_err();
        assert!(matches!(err, RegistryError::AlreadyExists { .. }), "{err}");
        drop(tx);

        // A name off the rule cannot even be made into a thing's name.
        let bad = ThingName::parse("bad\u{7}name").unwrap_err();
        assert!(bad.to_string().contains("not a valid thing name"), "{bad}");

        let bulk: Vec<NewThing> = (0..1000).map(|i| thing(&format!("bulk-{i:04}"))).collect();
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_things(&bulk).await.unwrap();
        tx.insert_things(&bulk[..10]).await.unwrap();
        tx.commit().await.unwrap();
        let all = store.list_things(None, None, None).await.unwrap();
        assert_eq!(all.len(), 1001);
        assert_eq!(
            all.iter().filter(|t| t.name.starts_with("bulk-")).count(),
            1000
        );
        let page = store
            .list_things(None, Some("bulk-0995"), None)
            .await
            .unwrap();
        assert_eq!(
            page.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
            ["bulk-0996", "bulk-0997", "bulk-0998", "bulk-0999", "dev-1"]
        );
        assert_eq!(
            store.list_things(None, None, Some(5)).await.unwrap().len(),
            5
        );
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

#[tokio::test]
async fn quota_is_never_exceeded_by_concurrent_writers() {
    for (_url, store, _dir) in stores().await {
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_batch(&NewBatch {
            id: batch_id("b1"),
            kind: BatchKind::Station,
            product: "widget".into(),
            count: 10,
            profile: "device".into(),
            ca: "issuing".into(),
            factory: None,
            allow_inject: false,
            params: serde_json::json!({}),
        })
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..25 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin("station").await.unwrap();
                match tx.reserve_quota("b1", 1).await {
                    Ok(()) => {
                        tx.commit().await.unwrap();
                        true
                    }
                    Err(RegistryError::QuotaExhausted { .. }) => false,
                    Err(e) => panic!("{e}"),
                }
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += usize::from(t.await.unwrap());
        }
        assert_eq!(granted, 10);
        let batch = store.require_batch("b1").await.unwrap();
        assert_eq!((batch.issued, batch.remaining), (10, 0));
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

#[tokio::test]
async fn audit_tampering_is_detected() {
    // One fresh store per kind of tampering, per backend.
    let tamperings = [
        (
            "update",
            "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2",
        ),
        ("delete", "DELETE FROM audit_log WHERE seq = 2"),
        ("swap", ""),
        (
            "truncate",
            "DELETE FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)",
        ),
        (
            "rehash",
            "UPDATE audit_log SET details = '{\"forged\":true}' WHERE seq = 1",
        ),
    ];
    for (what, sql) in tamperings {
        for (url, store, _dir) in stores().await {
            ca(&store).await;
            let mut tx = store.begin("test").await.unwrap();
            tx.upsert_thing(&thing("a")).await.unwrap();
            tx.upsert_thing(&thing("b")).await.unwrap();
            tx.upsert_thing(&thing("c")).await.unwrap();
            tx.commit().await.unwrap();
            let intact = store.verify_audit().await.unwrap();
            assert!(intact.intact());
            assert_eq!(intact.records, 4);
            store.close().await;
            if what == "swap" {
                // Both databases check the primary key per row: swap through a free value.
                exec(&url, "UPDATE audit_log SET seq = -2 WHERE seq = 2").await;
                exec(&url, "UPDATE audit_log SET seq = 2 WHERE seq = 3").await;
                exec(&url, "UPDATE audit_log SET seq = 3 WHERE seq = -2").await;
            } else {
                exec(&url, sql).await;
            }
            let reopened = Store::open(&url).await.unwrap();
            assert_broken(&reopened.verify_audit().await.unwrap(), what);
        }
    }
}

#[tokio::test]
async fn an_ownership_token_works_once_under_concurrency_and_expires() {
    for (_url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("fleet").await.unwrap();
        let mut pending = cert("c1", "01", None, None);
        pending.status = CertificateStatus::PendingActivation;
        tx.insert_certificate(&pending).await.unwrap();
        let mut stale = cert("c2", "02", None, None);
        stale.status = CertificateStatus::PendingActivation;
        tx.insert_certificate(&stale).await.unwrap();
        let token = |id: &str, expires| OwnershipToken {
            certificate_id: cid(id),
            claim_certificate_id: cid("claim").to_string(),
            expires,
        };
        tx.insert_ownership_token("h1", &token("c1", idmint_registry::now() + 3600))
            .await
            .unwrap();
        tx.insert_ownership_token("h2", &token("c2", idmint_registry::now() - 1))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // Another claim cannot use it; a read-only check does not spend it.
        assert!(matches!(
            store
                .usable_ownership_token("h1", cid("other").as_str())
                .await,
            Err(RegistryError::OwnershipToken(_))
        ));
        let usable = store
            .usable_ownership_token("h1", cid("claim").as_str())
            .await
            .unwrap();
        assert_eq!(usable.token.certificate_id, cid("c1"));
        assert_eq!(usable.certificate_der, pending.der);
        // The claim certificate "claim" is not registered: no standing.
        assert_eq!(usable.claim, None);
        // A registered claim certificate's standing comes with the token.
        let mut tx = store.begin("fleet").await.unwrap();
        let mut claimed = cert("c3", "03", None, None);
        claimed.status = CertificateStatus::PendingActivation;
        claimed.der = vec![0x30, 0x03, 0x02, 0x01, 0x03];
        tx.insert_certificate(&claimed).await.unwrap();
        let mut revoked_claim = cert("k1", "04", None, None);
        revoked_claim.status = CertificateStatus::Revoked;
        tx.insert_certificate(&revoked_claim).await.unwrap();
        let mut t3 = token("c3", idmint_registry::now() + 3600);
        t3.claim_certificate_id = cid("k1").to_string();
        tx.insert_ownership_token("h3", &t3).await.unwrap();
        tx.commit().await.unwrap();
        let usable = store
            .usable_ownership_token("h3", cid("k1").as_str())
            .await
            .unwrap();
        assert_eq!(usable.certificate_der, claimed.der);
        let standing = usable.claim.unwrap();
        assert_eq!(standing.status, CertificateStatus::Revoked);
        assert_eq!(standing.not_after.unix_timestamp(), 2_000_000_000);
        assert!(!standing.in_force_at(time::OffsetDateTime::now_utc()));

        let mut tasks = Vec::new();
        for _ in 0..12 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut tx = store.begin("fleet").await.unwrap();
                match tx.use_ownership_token("h1", cid("claim").as_str()).await {
                    Ok(t) => {
                        tx.commit().await.unwrap();
                        assert_eq!(t.certificate_id, cid("c1"));
                        true
                    }
                    Err(RegistryError::OwnershipToken(_)) => false,
                    Err(e) => panic!("{e}"),
                }
            }));
        }
        let mut spent = 0;
        for t in tasks {
            spent += usize::from(t.await.unwrap());
        }
        assert_eq!(spent, 1, "the token worked {spent} times");

        // The expired one is refused, then swept: its certificate is revoked
        // and kept, the token stays refused as expired.
        let mut tx = store.begin("fleet").await.unwrap();
        assert!(matches!(
            tx.use_ownership_token("h2", cid("claim").as_str()).await,
            Err(RegistryError::OwnershipToken("has expired"))
        ));
        drop(tx);
        let due = store
            .expired_ownership_tokens(idmint_registry::now(), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        let mut tx = store.begin("sweep").await.unwrap();
        assert!(tx.expire_ownership_token("h2", &cid("c2")).await.unwrap());
        tx.commit().await.unwrap();
        let swept = store.certificate(&cid("c2")).await.unwrap().expect("kept");
        assert_eq!(swept.status, CertificateStatus::Revoked);
        assert_eq!(
            swept.revocation_reason,
            Some(idmint_registry::RevocationReason::CessationOfOperation)
        );
        assert!(store
            .expired_ownership_tokens(idmint_registry::now(), 10)
            .await
            .unwrap()
            .is_empty());
        assert!(matches!(
            store
                .usable_ownership_token("h2", cid("claim").as_str())
                .await,
            Err(RegistryError::OwnershipToken("has expired"))
        ));
        // A second sweep (another server) finds nothing to do.
        let mut tx = store.begin("sweep").await.unwrap();
        assert!(!tx.expire_ownership_token("h2", &cid("c2")).await.unwrap());
        drop(tx);
        assert!(store.certificate(&cid("c1")).await.unwrap().is_some());
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

fn intermediate(id: &str) -> NewIntermediate {
    NewIntermediate {
        id: id.to_string(),
        subject: format!("CN=Intermediate {id}"),
        der: id.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn issuer_chains_are_stored_once_and_exported_with_each_page() {
    for (url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_certificates(&[
            cert("aa", "01", None, Some("b1")),
            cert("bb", "02", None, Some("b1")),
            cert("cc", "03", None, Some("b1")),
            cert("dd", "04", None, Some("b2")),
        ])
        .await
        .unwrap();
        // The same intermediate twice in one call is stored (and audited) once.
        tx.insert_intermediates(&[intermediate("i1"), intermediate("i2"), intermediate("i1")])
            .await
            .unwrap();
        tx.insert_chains(&[
            NewChain {
                certificate: cid("aa").to_string(),
                intermediates: vec!["i1".into()],
            },
            NewChain {
                certificate: cid("bb").to_string(),
                intermediates: vec!["i2".into(), "i1".into()],
            },
            NewChain {
                certificate: cid("dd").to_string(),
                intermediates: vec!["i1".into()],
            },
        ])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let before = store.verify_audit().await.unwrap().records;

        // Stored already: nothing written, nothing audited.
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_intermediates(&[intermediate("i1")])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        assert_eq!(store.verify_audit().await.unwrap().records, before, "{url}");

        // Pages of batch b1: chains in order, issuer first; dd (batch b2,
        // inside the id range of no page of b1) is not mixed in.
        let page = store.export_page(Some("b1"), None, None, 2).await.unwrap();
        let ids: Vec<&str> = page.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [cid("aa").as_str(), cid("bb").as_str()], "{url}");
        assert_eq!(page[0].chain, vec![b"i1".to_vec()]);
        assert_eq!(page[1].chain, vec![b"i2".to_vec(), b"i1".to_vec()]);
        let page = store
            .export_page(Some("b1"), None, Some(cid("bb").as_str()), 2)
            .await
            .unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(
            (page[0].id.as_str(), page[0].chain.len()),
            (cid("cc").as_str(), 0)
        );
        let page = store
            .export_page(None, Some("issuing"), Some(cid("bb").as_str()), 10)
            .await
            .unwrap();
        let chains: Vec<(&str, usize)> = page
            .iter()
            .map(|c| (c.id.as_str(), c.chain.len()))
            .collect();
        assert_eq!(
            chains,
            [(cid("cc").as_str(), 0), (cid("dd").as_str(), 1)],
            "{url}"
        );

        // A chain naming an intermediate never stored is refused, and the
        // transaction leaves nothing behind.
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_certificate(&cert("ee", "05", None, Some("b1")))
            .await
            .unwrap();
        let err = tx
            .insert_chains(&[NewChain {
                certificate: cid("ee").to_string(),
                intermediates: vec!["nope".into()],
            }])
            .await;
        assert!(err.is_err(), "{url}");
        drop(tx);
        assert!(store.certificate(&cid("ee")).await.unwrap().is_none());

        // Deleting a certificate takes its chain with it; registering it
        // again records its chain afresh.
        let mut tx = store.begin("test").await.unwrap();
        tx.delete_certificate(cid("bb").as_str(), "test")
            .await
            .unwrap();
        tx.insert_certificate(&cert("bb", "02", None, Some("b1")))
            .await
            .unwrap();
        tx.insert_chains(&[NewChain {
            certificate: cid("bb").to_string(),
            intermediates: vec!["i1".into()],
        }])
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let page = store.export_page(Some("b1"), None, None, 10).await.unwrap();
        assert_eq!(page[1].chain, vec![b"i1".to_vec()], "{url}");
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

/// The stored text of audit records, pinned: the action and the details
/// exactly as written (and hashed) since the chain began.
#[tokio::test]
async fn audit_records_keep_their_stored_text() {
    for (_url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_batch(&NewBatch {
            id: batch_id("b1"),
            kind: BatchKind::Station,
            product: "widget".into(),
            count: 10,
            profile: "device".into(),
            ca: "issuing".into(),
            factory: None,
            allow_inject: true,
            params: serde_json::json!({}),
        })
        .await
        .unwrap();
        tx.upsert_thing(&NewThing {
            name: ThingName::parse("dev-1").unwrap(),
            thing_type: Some("widget".into()),
            attributes: BTreeMap::from([("color".to_string(), "red \"ish\"".to_string())]),
            device_id: Some("hw-1".into()),
            batch: Some(batch_id("b1")),
        })
        .await
        .unwrap();
        tx.insert_certificate(&cert("aa", "01", Some("dev-1"), Some("b1")))
            .await
            .unwrap();
        tx.set_certificate_status(
            &cid("aa"),
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::KeyCompromise),
        )
        .await
        .unwrap();
        tx.register_devices(
            AuditEvent::CertificateIssue,
            &[thing("dev-2")],
            &[cert("bb", "02", Some("dev-2"), None)],
        )
        .await
        .unwrap();
        tx.insert_things(&[thing("dev-3")]).await.unwrap();
        tx.set_batch_state("b1", "COMPLETE", None).await.unwrap();
        tx.commit().await.unwrap();
        let records: Vec<(String, String, String)> = store
            .audit_records(0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|r| (r.action, r.subject, r.details))
            .collect();
        let (caid, aa, bb) = (cid("caid"), cid("aa"), cid("bb"));
        let ca_details = format!(
            r#"{{"certificateId":"{caid}","kind":"issuing","parent":"root","subject":"CN=Issuing"}}"#
        );
        let expected = [
            ("ca.create", "issuing", ca_details.as_str()),
            ("batch.create", "b1", r#"{"allowInject":true,"ca":"issuing","count":10,"factory":null,"kind":"station","product":"widget","profile":"device"}"#),
            ("thing.upsert", "dev-1", r#"{"attributes":{"color":"red \"ish\""},"batch":"b1","deviceId":"hw-1","thingType":"widget"}"#),
            ("certificate.register", aa.as_str(), r#"{"batch":"b1","ca":"issuing","serial":"01","status":"ACTIVE","subject":"CN=dev-1","thing":"dev-1"}"#),
            ("certificate.status", aa.as_str(), r#"{"from":"ACTIVE","reason":"keyCompromise","to":"REVOKED"}"#),
            ("certificate.issue", bb.as_str(), r#"{"batch":null,"ca":"issuing","deviceId":null,"newThing":true,"serial":"02","status":"ACTIVE","subject":"CN=dev-2","thing":"dev-2"}"#),
            ("thing.create", "dev-3", "{}"),
            ("batch.state", "b1", r#"{"state":"COMPLETE"}"#),
        ]
        .map(|(a, s, d)| (a.to_string(), s.to_string(), d.to_string()));
        assert_eq!(records, expected);
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

/// A row changed behind the registry's back so that a column fails its
/// type's rule (a status that is not one, a serial that is not hex, thing
/// attributes that are not JSON) is reported as a corrupt
/// row naming the column, never read as something else.
#[tokio::test]
async fn a_value_that_fails_its_rule_is_a_corrupt_row_naming_its_column() {
    for (url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("test").await.unwrap();
        tx.upsert_thing(&NewThing::named(ThingName::parse("dev-1").unwrap()))
            .await
            .unwrap();
        tx.insert_certificate(&cert("c1", "01", Some("dev-1"), None))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let id = cid("c1");
        for (sql, column) in [
            ("UPDATE certificates SET status = 'BOGUS'", "status"),
            (
                "UPDATE certificates SET status = 'ACTIVE', serial = 'not hex'",
                "serial",
            ),
        ] {
            exec(&url, sql).await;
            match store.certificate(&id).await {
                Err(RegistryError::Corrupt(text)) => {
                    assert!(text.starts_with(column), "{url}: {sql}: {text}")
                }
                other => panic!("{url}: {sql}: {other:?}"),
            }
        }
        exec(&url, "UPDATE things SET attributes = 'not json'").await;
        match store.thing("dev-1").await {
            Err(RegistryError::Corrupt(text)) => assert!(text.starts_with("attributes"), "{text}"),
            other => panic!("{url}: {other:?}"),
        }
    }
}
