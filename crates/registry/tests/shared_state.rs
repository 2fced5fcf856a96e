//! What servers on one store share through it: a claim certificate's
//! request counter (on SQLite and, with IDMINT_TEST_POSTGRES, PostgreSQL:
//! the limit holds, concurrent requests cannot both take the last slot, a
//! window that ended restarts and is swept), and the event channel
//! (PostgreSQL: an event reaches every listener once, a large one through
//! the events table).

use std::time::Duration;

use idmint_registry::{ClaimAllowance, Event, Store, CLAIM_WINDOW_SECS};
use sqlx::Connection;

async fn postgres_url(tag: &str) -> Option<String> {
    match std::env::var("IDMINT_TEST_POSTGRES") {
        Ok(admin) if !admin.is_empty() => {
            sqlx::any::install_default_drivers();
            let mut b = [0u8; 6];
            idmint_pki::random_fill(&mut b).unwrap();
            let name = format!("idmint_{tag}_{}", hex::encode(b));
            let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .unwrap();
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap();
            Some(format!("{base}/{name}"))
        }
        _ => {
            idmint_testkit::skip(
                "PostgreSQL (IDMINT_TEST_POSTGRES)",
                "scripts/test.sh starts one; or scripts/pg-test-server.sh start",
            );
            None
        }
    }
}

async fn stores(tag: &str) -> Vec<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let mut out = vec![(Store::open(&url).await.unwrap(), Some(dir))];
    if let Some(url) = postgres_url(tag).await {
        out.push((Store::open(&url).await.unwrap(), None));
    }
    out
}

#[tokio::test]
async fn a_claims_window_holds_its_limit_then_restarts_and_is_swept() {
    for (store, _dir) in stores("claim_window").await {
        let t = 1_800_000_000;
        for i in 0..3 {
            assert_eq!(
                store
                    .count_claim_request("claim-a", 3, t + i)
                    .await
                    .unwrap(),
                ClaimAllowance::Allowed
            );
        }
        // The fourth in the window: throttled until the window ends.
        assert_eq!(
            store
                .count_claim_request("claim-a", 3, t + 10)
                .await
                .unwrap(),
            ClaimAllowance::Throttled {
                retry_after_secs: 50
            }
        );
        // Another claim has its own window.
        assert_eq!(
            store
                .count_claim_request("claim-b", 3, t + 10)
                .await
                .unwrap(),
            ClaimAllowance::Allowed
        );
        // No limit: nothing counted.
        assert_eq!(
            store.count_claim_request("claim-c", 0, t).await.unwrap(),
            ClaimAllowance::Allowed
        );
        // The window ended: a new one opens with this request.
        let later = t + CLAIM_WINDOW_SECS;
        assert_eq!(
            store
                .count_claim_request("claim-a", 3, later)
                .await
                .unwrap(),
            ClaimAllowance::Allowed
        );
        // claim-b's window (opened at t + 10) ended by t + 70; claim-a's
        // new one has not.
        assert_eq!(store.forget_claim_windows(t + 70).await.unwrap(), 1);
        assert_eq!(
            store
                .count_claim_request("claim-a", 1, later + 1)
                .await
                .unwrap(),
            ClaimAllowance::Throttled {
                retry_after_secs: 59
            }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_requests_cannot_share_the_last_slot() {
    for (store, _dir) in stores("claim_race").await {
        let t = 1_800_000_000;
        let mut tasks = Vec::new();
        for _ in 0..40 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.count_claim_request("claim-r", 7, t).await.unwrap()
            }));
        }
        let mut allowed = 0;
        for task in tasks {
            if task.await.unwrap() == ClaimAllowance::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 7);
    }
}

#[tokio::test]
async fn sqlite_has_no_event_channel() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    assert!(Store::open(&url).await.unwrap().event_channel().is_none());
}

#[tokio::test]
async fn an_event_reaches_every_listener_once_small_or_large() {
    let Some(url) = postgres_url("events").await else {
        return;
    };
    // Two servers: two stores (pools) on one database.
    let (a, b) = (
        Store::open(&url).await.unwrap(),
        Store::open(&url).await.unwrap(),
    );
    let (a, b) = (a.event_channel().unwrap(), b.event_channel().unwrap());
    let mut on_a = a.listen().await.unwrap();
    let mut on_b = b.listen().await.unwrap();
    let small = Event {
        topic: "$aws/events/certificates/registered/ca1".into(),
        payload: br#"{"certificateId":"c1"}"#.to_vec(),
    };
    // Over NOTIFY's 8,000 bytes, and not UTF-8.
    let large = Event {
        topic: "$aws/events/certificates/registered/ca2".into(),
        payload: (0..20_000u32).map(|i| (i % 251) as u8).collect(),
    };
    b.publish(&small).await.unwrap();
    a.publish(&large).await.unwrap();
    let within = Duration::from_secs(10);
    for listener in [&mut on_a, &mut on_b] {
        let first = tokio::time::timeout(within, listener.next()).await;
        assert_eq!(first.unwrap().unwrap().as_ref(), Some(&small));
        let second = tokio::time::timeout(within, listener.next()).await;
        assert_eq!(second.unwrap().unwrap().as_ref(), Some(&large));
        // Nothing more: each event once.
        let none = tokio::time::timeout(Duration::from_millis(300), listener.next()).await;
        assert!(none.is_err(), "a third event: {none:?}");
    }
}
