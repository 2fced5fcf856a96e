//! The checked-in offline batch vectors under `tests/vectors/offline/`: an
//! authorization bundle from `idmint batch authorize` and the issuance log
//! an offline station wrote under it (`idmint station run --authorization`
//! against `idmint devsim`). The bundle verifies, and the log checks clean
//! against it; edited, it does not. They also seed the fuzz corpus.

use std::path::{Path, PathBuf};

use idmint_pki::CertificateInfo;
use idmint_station::offline::log::{check_log, Event};
use idmint_station::offline::{Authorization, FindingKind};

fn vector(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/vectors/offline")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn authorization() -> (Authorization, Vec<u8>) {
    let auth = Authorization::parse(
        &vector("authorization.json"),
        Path::new("authorization.json"),
    )
    .expect("the bundle verifies");
    let spki = CertificateInfo::from_der(&auth.batch_ca_der)
        .expect("batch CA")
        .spki_der;
    (auth, spki)
}

#[test]
fn the_bundle_verifies_and_the_log_checks_clean() {
    let (auth, spki) = authorization();
    let log = vector("issuance.log");
    let checked = check_log(&log, &auth.id, &auth.limits.batch, &spki);
    assert!(checked.findings.is_empty(), "{:?}", checked.findings);
    let events: Vec<&str> = checked.records.iter().map(|r| r.event.name()).collect();
    assert!(events.contains(&"issued"), "{events:?}");
    assert!(events.contains(&"provisioned"), "{events:?}");
    assert!(matches!(
        checked.records.last().map(|r| &r.event),
        Some(Event::Closed { .. })
    ));
    for (i, r) in checked.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
}

#[test]
fn the_log_edited_or_cut_is_reported() {
    let (auth, spki) = authorization();
    let log = String::from_utf8(vector("issuance.log")).expect("UTF-8");
    let kinds = |text: &str| -> Vec<FindingKind> {
        check_log(text.as_bytes(), &auth.id, &auth.limits.batch, &spki)
            .findings
            .iter()
            .map(|f| f.kind)
            .collect()
    };
    // A record's content changed.
    let edited = log.replacen("\"locked\":true", "\"locked\":false", 1);
    assert_ne!(edited, log, "the log has a provisioned record");
    assert!(
        kinds(&edited).contains(&FindingKind::Edited),
        "{:?}",
        kinds(&edited)
    );
    // Cut in the middle of its last line.
    let cut = &log[..log.len() - 20];
    assert!(
        kinds(cut).contains(&FindingKind::Truncated),
        "{:?}",
        kinds(cut)
    );
    // Its second line dropped.
    let mut lines: Vec<&str> = log.lines().collect();
    lines.remove(1);
    let gap = lines.join("\n") + "\n";
    assert!(kinds(&gap).contains(&FindingKind::Gap), "{:?}", kinds(&gap));
    // Checked against another authorization.
    let foreign = check_log(log.as_bytes(), &"0".repeat(64), &auth.limits.batch, &spki);
    assert!(foreign
        .findings
        .iter()
        .any(|f| f.kind == FindingKind::Foreign));
}
