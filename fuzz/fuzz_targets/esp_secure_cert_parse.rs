//! Fuzz the `esp_secure_cert` TLV reader: arbitrary bytes must never panic,
//! and whatever credentials it reads must survive a round trip through the
//! writer.

#![no_main]

use idmint_slot::partition::esp_secure_cert::EspSecureCert;
use idmint_slot::PartitionFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = EspSecureCert::parse(data) else {
        return;
    };
    let Ok(creds) = parsed.credentials() else {
        return;
    };
    let format = PartitionFormat::EspSecureCert { size: 0x10000 };
    let Ok(pem) = format.encode_pem(&creds) else {
        return;
    };
    assert_eq!(format.decode(&pem).ok(), Some(creds));
});
