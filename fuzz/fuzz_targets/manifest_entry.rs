//! Fuzz the manifest entry parsers: any bytes as a signed secure element
//! (flattened JWS), a JSON bulk-registration line, or a PEM/DER certificate
//! file must give a `ManifestEntry` or a typed rejection, never a panic.
#![no_main]

use idmint_manifest::{ManifestEntry, RawBody, RawEntry, SignedSecureElement};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SignedSecureElement::parse(data);
    for body in [
        RawBody::Signed(data.to_vec()),
        RawBody::JsonLine(data.to_vec()),
        RawBody::Pem {
            name: "fuzz.pem".into(),
            bytes: data.to_vec(),
        },
    ] {
        let _ = ManifestEntry::parse(RawEntry { index: 0, body });
    }
});
