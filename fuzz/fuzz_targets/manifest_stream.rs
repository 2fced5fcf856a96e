//! Fuzz the manifest readers that split a stream into entries: the JSON
//! array scanner (Trust&GO style), JSON lines and tar. The first byte picks
//! the format and the read buffer's size; whatever the buffer size, a JSON
//! array must split into exactly the same entries, and nothing may panic.
#![no_main]

use std::io::BufReader;

use idmint_manifest::source::{read_stream, ManifestFormat};
use idmint_manifest::{ManifestEntry, RawEntry};
use libfuzzer_sys::fuzz_target;

fn split(data: &[u8], format: ManifestFormat, capacity: usize) -> Vec<RawEntry> {
    let mut entries = Vec::new();
    let reader = BufReader::with_capacity(capacity, data);
    read_stream(reader, format, &mut |entry| {
        entries.push(entry);
        entries.len() < 64
    })
    .expect("reading from memory cannot fail");
    entries
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, manifest)) = data.split_first() else {
        return;
    };
    let format = match selector % 3 {
        0 => ManifestFormat::Signed,
        1 => ManifestFormat::JsonLines,
        _ => ManifestFormat::Pem,
    };
    let capacity = 1 + usize::from(selector / 3) % 64;
    let entries = split(manifest, format, capacity);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index, i as u64);
    }
    if format == ManifestFormat::Signed {
        let whole = split(manifest, format, 64 * 1024);
        assert_eq!(format!("{entries:?}"), format!("{whole:?}"));
    }
    for entry in entries.into_iter().take(4) {
        let _ = ManifestEntry::parse(entry);
    }
});
