//! Fuzz the ESP-IDF NVS partition reader: arbitrary bytes must never panic,
//! and whatever credentials it reads must survive a round trip through the
//! writer.

#![no_main]

use idmint_slot::partition::nvs::NvsPartition;
use idmint_slot::PartitionFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = NvsPartition::parse(data) else { return };
    let Some(first) = parsed.entries().first() else { return };
    let namespace = first.namespace.clone();
    let Ok(creds) = parsed.credentials(&namespace) else { return };
    let format = PartitionFormat::EspNvs { size: 0x10000, namespace };
    let Ok(bytes) = format.encode_pem(&creds) else { return };
    assert_eq!(format.decode(&bytes).ok(), Some(creds));
});
