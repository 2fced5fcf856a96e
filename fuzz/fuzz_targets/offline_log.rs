//! Fuzz the offline station's issuance log checker (`check_log`), which
//! reads a log a factory hands back: any bytes are records and findings,
//! never a panic.
//!
//! The first byte picks the mode. Odd: the input is checked as it is (a
//! forger's log: the signatures do not hold). Even: every line that parses
//! as a record is first re-hashed and re-signed with the test batch CA key
//! (and, with bit 1 set, chained to the line before), so the fuzzer reaches
//! the checks a factory that holds its batch CA key could try to fool.
#![no_main]

use std::sync::OnceLock;

use idmint_pki::{DeviceKey, KeyType, Signer};
use idmint_station::offline::log::{check_log, Record, LOG_CONTEXT};
use libfuzzer_sys::fuzz_target;

const AUTHORIZATION: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const BATCH: &str = "widget-2026-12";

fn batch_ca() -> &'static Signer {
    static KEY: OnceLock<Signer> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = DeviceKey::generate(KeyType::P256).expect("a P-256 key");
        Signer::software(key)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, log)) = data.split_first() else {
        return;
    };
    let signer = batch_ca();
    let spki = signer.spki_der();
    let bytes = if mode & 1 == 1 {
        log.to_vec()
    } else {
        reseal(log, signer, mode & 2 == 2)
    };
    let checked = check_log(&bytes, AUTHORIZATION, BATCH, &spki);
    for finding in &checked.findings {
        assert_eq!(finding.rejects, finding.kind.rejects());
        assert!(!finding.message.is_empty());
    }
    assert!(checked.records.len() <= bytes.split(|b| *b == b'\n').count());
});

/// Re-hashes and re-signs every record line; other lines stay as they are.
fn reseal(log: &[u8], signer: &Signer, chain: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.len() + 256);
    let mut prev = AUTHORIZATION.to_string();
    let mut lines = log.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        match serde_json::from_slice::<Record>(line) {
            Ok(mut record) => {
                if chain {
                    record.prev = prev.clone();
                }
                record.hash = record.body_hash();
                let hash = hex::decode(&record.hash).expect("a hex hash");
                let mut message = LOG_CONTEXT.to_vec();
                message.extend_from_slice(&hash);
                let sig = rcgen::SigningKey::sign(signer, &message).expect("signing");
                record.sig =
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig);
                prev = record.hash.clone();
                out.extend_from_slice(&serde_json::to_vec(&record).expect("a record encodes"));
            }
            Err(_) => out.extend_from_slice(line),
        }
        if lines.peek().is_some() {
            out.push(b'\n');
        }
    }
    out
}
