//! Clone refusal in the registry's write transaction, on SQLite and (with
//! IDMINT_TEST_POSTGRES) PostgreSQL: two concurrent transactions
//! certifying one key (exactly one commits), a renewal of the same key for
//! the same thing (the older certificate superseded, not a clone), a
//! revoked key certified again, and the store's unique index refusing a
//! second live row that bypasses the transaction.

use idmint_registry::{
    CertificateId, CertificateStatus, NewCa, NewCertificate, RegistryError, Serial, Store,
};
use sqlx::Connection;

async fn stores() -> Vec<(String, Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let mut out = vec![(url.clone(), Store::open(&url).await.unwrap(), Some(dir))];
    match std::env::var("IDMINT_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            sqlx::any::install_default_drivers();
            let mut b = [0u8; 6];
            idmint_pki::random_fill(&mut b).unwrap();
            let name = format!("idmint_clones_{}", hex::encode(b));
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

/// The certificate id standing for `tag`: its bytes in hex, right-padded
/// with `0` to 64 digits (tags keep their order).
fn cid(tag: &str) -> CertificateId {
    let hex: String = tag.bytes().map(|b| format!("{b:02x}")).collect();
    CertificateId::parse(&format!("{hex:0<64}")).unwrap()
}

fn cert(id: &str, thing: &str, key: &str) -> NewCertificate {
    NewCertificate {
        id: cid(id),
        serial: Serial::from_integer_bytes(id.as_bytes()),
        ca: "issuing".into(),
        thing: Some(thing.to_string()),
        status: CertificateStatus::PendingActivation,
        subject: format!("CN={thing}"),
        key_type: Some("p256".into()),
        not_before: 1_700_000_000,
        not_after: 2_000_000_000,
        public_key_sha256: key.to_string(),
        batch: None,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
    }
}

async fn ca(store: &Store) {
    let mut tx = store.begin("test").await.unwrap();
    tx.insert_ca(&NewCa {
        name: "issuing".into(),
        kind: idmint_registry::CaKind::Issuing,
        parent: None,
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

#[tokio::test]
async fn two_transactions_certifying_one_key_at_once_one_commits() {
    for (url, store, _dir) in stores().await {
        ca(&store).await;
        for round in 0..20 {
            let key = format!("key-{round}");
            let tasks: Vec<_> = (0..2)
                .map(|i| {
                    let (store, key) = (store.clone(), key.clone());
                    tokio::spawn(async move {
                        let mut tx = store.begin("station").await?;
                        tx.insert_certificate(&cert(
                            &format!("c{round}-{i}"),
                            &format!("t{round}-{i}"),
                            &key,
                        ))
                        .await?;
                        // Hold the transaction a moment: the other writer
                        // is queued behind it, not reading around it.
                        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                        tx.commit().await
                    })
                })
                .collect();
            let mut results = Vec::new();
            for t in tasks {
                results.push(t.await.unwrap());
            }
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let clones = results
                .iter()
                .filter(|r| {
                    matches!(r, Err(RegistryError::Clone { public_key_sha256, existing_certificate: Some(_) }) if *public_key_sha256 == key)
                })
                .count();
            assert_eq!((ok, clones), (1, 1), "{url} round {round}: {results:?}");
            assert_eq!(
                store
                    .certificates_with_public_key(&key)
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

#[tokio::test]
async fn renewals_revoked_keys_and_the_index() {
    for (url, store, _dir) in stores().await {
        ca(&store).await;
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_certificate(&cert("old", "lamp", "k1"))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // The same key for another thing: a clone, nothing written.
        let mut tx = store.begin("test").await.unwrap();
        let e = tx.insert_certificate(&cert("other", "lamp-2", "k1")).await;
        assert!(
            matches!(&e, Err(RegistryError::Clone { existing_certificate: Some(c), .. }) if *c == cid("old")),
            "{url}: {e:?}"
        );
        drop(tx);
        assert!(store.certificate(&cid("other")).await.unwrap().is_none());

        // Twice in one call: a clone.
        let mut tx = store.begin("test").await.unwrap();
        let e = tx
            .insert_certificates(&[cert("n1", "a", "k9"), cert("n2", "b", "k9")])
            .await;
        assert!(
            matches!(e, Err(RegistryError::Clone { .. })),
            "{url}: {e:?}"
        );
        drop(tx);

        // The same key for the same thing: a renewal; the old one is
        // superseded (audited) and keeps its status until retired.
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_certificate(&cert("renewed", "lamp", "k1"))
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let old = store.certificate(&cid("old")).await.unwrap().unwrap();
        assert_eq!(old.status, CertificateStatus::PendingActivation);
        let audit = store.audit_records(0, 1000).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|r| r.action == "certificate.superseded" && r.subject == cid("old").as_str()),
            "{url}"
        );
        // Still no other thing may take the key.
        let mut tx = store.begin("test").await.unwrap();
        assert!(matches!(
            tx.insert_certificate(&cert("x", "lamp-3", "k1")).await,
            Err(RegistryError::Clone { .. })
        ));
        drop(tx);

        // A revoked key may be certified again; a revoked copy is no clone.
        let mut tx = store.begin("test").await.unwrap();
        tx.set_certificate_status(
            &cid("old"),
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::Superseded),
        )
        .await
        .unwrap();
        tx.set_certificate_status(
            &cid("renewed"),
            CertificateStatus::Revoked,
            Some(idmint_registry::RevocationReason::KeyCompromise),
        )
        .await
        .unwrap();
        let mut revoked = cert("copy", "lamp-4", "k1");
        revoked.status = CertificateStatus::Revoked;
        tx.insert_certificate(&revoked).await.unwrap();
        tx.insert_certificate(&cert("again", "lamp-5", "k1"))
            .await
            .unwrap();
        tx.commit().await.unwrap();

        // The index: a second live row written around the transaction.
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
        let e = sqlx::query(
            "INSERT INTO certificates (id, serial, ca, thing, status, subject, not_before, not_after, der, public_key_sha256, created, updated) \
             VALUES ('raw', 'raw', 'issuing', 'lamp-6', 'ACTIVE', 'CN=raw', 0, 1, $1, 'k1', 0, 0)",
        )
        .bind(vec![0u8, 1])
        .execute(&mut conn)
        .await;
        assert!(
            e.as_ref()
                .err()
                .and_then(|e| e.as_database_error())
                .is_some_and(|d| d.is_unique_violation()),
            "{url}: {e:?}"
        );
    }
}
