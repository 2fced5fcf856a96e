//! Fuzz the credential slot reader: `parse_slot` and `find_slot` on
//! arbitrary bytes must never panic, and whatever they accept must survive
//! a round trip through the encoder.

#![no_main]

use idmint_slot::{encode_slot, find_slot, parse_slot, Credentials};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = find_slot(data);
    let Ok(slot) = parse_slot(data) else { return };
    for record in slot.records() {
        let _ = record.record_type();
    }
    let Ok(creds) = Credentials::from_slot(&slot) else {
        return;
    };
    // Unknown records and padding are dropped, so the credentials still fit.
    let Ok(encoded) = encode_slot(slot.capacity(), &creds) else {
        panic!("credentials read from a slot no longer fit in it");
    };
    let reparsed = parse_slot(&encoded).and_then(|s| Credentials::from_slot(&s));
    assert_eq!(reparsed.ok(), Some(creds));
});
