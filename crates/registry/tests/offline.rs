//! The registry's one quota rule (spoiled certificates keep counting; only
//! an audited raise makes room), offline authorizations and reconciled
//! issuance log records, on SQLite and (with IDMINT_TEST_POSTGRES) on
//! PostgreSQL.

use idmint_registry::{
    BatchId, BatchKind, FindingKind, NewBatch, NewOfflineAuthorization, ReconciledRecord,
    RecordFinding, RegistryError, Store,
};
use sqlx::Connection;

async fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), Some(dir))];
    match std::env::var("IDMINT_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            sqlx::any::install_default_drivers();
            let mut b = [0u8; 6];
            idmint_pki::random_fill(&mut b).unwrap();
            let name = format!("idmint_test_{}", hex::encode(b));
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            out.push((Store::open(&format!("{base}/{name}")).await.unwrap(), None));
        }
        _ => idmint_testkit::skip(
            "PostgreSQL (IDMINT_TEST_POSTGRES)",
            "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
        ),
    }
    out
}

fn batch(id: &str, kind: BatchKind, count: i64) -> NewBatch {
    NewBatch {
        id: BatchId::parse(id).unwrap(),
        kind,
        product: "widget".into(),
        count,
        profile: "device".into(),
        ca: "issuing".into(),
        factory: Some("acme".into()),
        allow_inject: false,
        params: serde_json::json!({}),
    }
}

#[tokio::test]
async fn spoiled_certificates_keep_counting_until_an_audited_raise() {
    for (store, _dir) in stores().await {
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_batch(&batch("b", BatchKind::Station, 3))
            .await
            .unwrap();
        tx.reserve_quota("b", 2).await.unwrap();
        tx.add_spoiled("b", 1, "dropped at install").await.unwrap();
        tx.reserve_quota("b", 1).await.unwrap();
        tx.commit().await.unwrap();
        let b = store.require_batch("b").await.unwrap();
        assert_eq!((b.issued, b.spoiled, b.remaining), (3, 1, 0));

        // A spoiled certificate gave nothing back: a quota of 3 is 3 ever.
        let mut tx = store.begin("test").await.unwrap();
        match tx.reserve_quota("b", 1).await {
            Err(RegistryError::QuotaExhausted {
                quota: 3,
                issued: 3,
                requested: 1,
                ..
            }) => {}
            other => panic!("expected QuotaExhausted, got {other:?}"),
        }
        drop(tx);

        // Only the maker's explicit raise makes room, and it is audited.
        let mut tx = store.begin("test").await.unwrap();
        tx.raise_quota("b", 1, "replacement").await.unwrap();
        tx.reserve_quota("b", 1).await.unwrap();
        tx.commit().await.unwrap();
        let b = store.require_batch("b").await.unwrap();
        assert_eq!((b.count, b.issued), (4, 4));
        let audit = store.audit_records(0, 10_000).await.unwrap();
        assert!(
            audit
                .iter()
                .any(|r| r.action == "batch.quota" && r.details.contains("replacement")),
            "{audit:?}"
        );
        assert!(matches!(
            store
                .begin("test")
                .await
                .unwrap()
                .raise_quota("nope", 1, "x")
                .await,
            Err(RegistryError::NotFound { .. })
        ));
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

#[tokio::test]
async fn offline_authorizations_and_reconciled_records() {
    for (store, _dir) in stores().await {
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_batch(&batch("off", BatchKind::Authorization, 5))
            .await
            .unwrap();
        let auth = NewOfflineAuthorization {
            batch: "off".into(),
            authorization_id: "a".repeat(64),
            batch_ca: "off-ca".into(),
            serial_first: 100,
            serial_last: 199,
            not_before: 1,
            not_after: 2,
            limits: "{}".into(),
            signature: "c2ln".into(),
            key_kind: "age".into(),
        };
        tx.insert_offline_authorization(&auth).await.unwrap();
        tx.commit().await.unwrap();
        let got = store.offline_authorization("off").await.unwrap().unwrap();
        assert_eq!(
            (got.serial_first, got.serial_last, got.key_kind.as_str()),
            (100, 199, "age")
        );
        let by_id = store
            .offline_authorization_by_id(&"a".repeat(64))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_id.batch, "off");
        assert!(store
            .offline_authorization("other")
            .await
            .unwrap()
            .is_none());
        // An empty serial range is refused.
        let mut tx = store.begin("test").await.unwrap();
        let mut bad = auth.clone();
        bad.batch = "off2".into();
        bad.authorization_id = "b".repeat(64);
        bad.serial_first = 5;
        bad.serial_last = 4;
        assert!(tx.insert_offline_authorization(&bad).await.is_err());
        drop(tx);

        let record = |seq: i64, finding: Option<(FindingKind, &str)>| ReconciledRecord {
            batch: "off".into(),
            seq,
            hash: format!("{seq:064}"),
            event: "issued".into(),
            certificate_id: Some(format!("c{seq}")),
            serial: Some(100 + seq),
            hw_id: Some(format!("HW-{seq}")),
            finding: finding.map(|(kind, message): (FindingKind, &str)| RecordFinding {
                kind,
                message: message.to_string(),
            }),
            reconciled: 7,
        };
        let mut tx = store.begin("test").await.unwrap();
        tx.insert_reconciled_records(&(1..=40).map(|s| record(s, None)).collect::<Vec<_>>())
            .await
            .unwrap();
        tx.insert_reconciled_records(&[record(41, Some((FindingKind::Duplicate, "x")))])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let rows = store.reconciled_records("off").await.unwrap();
        assert_eq!(rows.len(), 41);
        assert_eq!(rows[0].seq, 1);
        let finding = rows[40].finding.as_ref().expect("the finding is stored");
        assert_eq!(
            (finding.kind, finding.message.as_str()),
            (FindingKind::Duplicate, "x")
        );
        // The same position twice is refused, and nothing of it is written.
        let mut tx = store.begin("test").await.unwrap();
        assert!(matches!(
            tx.insert_reconciled_records(&[record(3, None)]).await,
            Err(RegistryError::AlreadyExists { .. })
        ));
        drop(tx);
        assert_eq!(store.reconciled_records("off").await.unwrap().len(), 41);
        assert!(store.verify_audit().await.unwrap().intact());
    }
}

/// A registry written before findings were typed held `"kind: message"` in
/// `finding`; opening it with this version splits those into the kind and
/// the message, so reconciles of its logs report them as before.
#[tokio::test]
async fn findings_stored_as_text_are_read_typed_after_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let url = format!("sqlite://{}?mode=rwc", db.display());
    // Schema 14: every migration before the typed findings.
    let old = dir.path().join("migrations");
    std::fs::create_dir(&old).unwrap();
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(&here).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0015" {
            std::fs::copy(&path, old.join(&name)).unwrap();
        }
    }
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.as_path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    for (seq, finding) in [
        (1, None),
        (
            2,
            Some("duplicate: record 2: hardware id HW-1 is issued a second time"),
        ),
        (
            3,
            Some("excess: record 3: certificate c3 exceeds the batch quota 2"),
        ),
    ] {
        sqlx::query(
            "INSERT INTO offline_log_records (batch, seq, hash, event, finding, reconciled) \
             VALUES ('old', ?, 'h', 'issued', ?, 0)",
        )
        .bind(seq)
        .bind(finding)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = Store::open(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows = store.reconciled_records("old").await.unwrap();
    let findings: Vec<_> = rows
        .iter()
        .map(|r| r.finding.as_ref().map(|f| (f.kind, f.message.as_str())))
        .collect();
    assert_eq!(
        findings,
        [
            None,
            Some((
                FindingKind::Duplicate,
                "record 2: hardware id HW-1 is issued a second time"
            )),
            Some((
                FindingKind::Excess,
                "record 3: certificate c3 exceeds the batch quota 2"
            )),
        ]
    );
}
