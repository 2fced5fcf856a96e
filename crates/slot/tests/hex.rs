//! Intel HEX golden images: round trips through the address space, valid
//! checksums on every output line, untouched lines kept byte-identical, and
//! typed errors for broken files.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;

use common::{empty_slot, random_credentials, Rng};
use idmint_slot::{encode_slot, find_slot, Credentials, GoldenImage, ImageError, ImageFormat};
use ihex::Record;

/// Memory contents: address -> byte.
type Memory = BTreeMap<u64, u8>;

/// Build HEX records for `chunks` of (address, bytes), `per_record` bytes per
/// data record, using extended linear (04) or segment (02) addresses.
fn build_hex(chunks: &[(u64, Vec<u8>)], per_record: usize, segment: bool) -> Vec<Record> {
    let mut records = Vec::new();
    let mut current_base = None;
    for (start, bytes) in chunks {
        let mut address = *start;
        for piece in bytes.chunks(per_record) {
            // Split so no record crosses a 64 KiB boundary.
            let room = 0x1_0000 - (address & 0xFFFF) as usize;
            let (a, b) = piece.split_at(piece.len().min(room));
            for part in [a, b].into_iter().filter(|p| !p.is_empty()) {
                let base = address & !0xFFFF;
                if current_base != Some(base) {
                    records.push(if segment {
                        Record::ExtendedSegmentAddress((base >> 4) as u16)
                    } else {
                        Record::ExtendedLinearAddress((base >> 16) as u16)
                    });
                    current_base = Some(base);
                }
                records.push(Record::Data {
                    offset: (address & 0xFFFF) as u16,
                    value: part.to_vec(),
                });
                address += part.len() as u64;
            }
        }
    }
    records.push(Record::StartLinearAddress(0x0800_0101));
    records.push(Record::EndOfFile);
    records
}

fn to_text(records: &[Record], line_end: &str) -> Vec<u8> {
    let mut text = String::new();
    for r in records {
        text += &r.to_record_string().unwrap();
        text += line_end;
    }
    text.into_bytes()
}

/// Parse a HEX text back (checking every checksum) into memory contents.
fn memory_of(text: &[u8]) -> Memory {
    let text = std::str::from_utf8(text).unwrap();
    let mut memory = Memory::new();
    let mut base = 0u64;
    for record in ihex::Reader::new(text) {
        match record.expect("every output record is valid, checksum included") {
            Record::Data { offset, value } => {
                for (i, b) in value.iter().enumerate() {
                    assert!(memory.insert(base + offset as u64 + i as u64, *b).is_none());
                }
            }
            Record::ExtendedLinearAddress(upper) => base = (upper as u64) << 16,
            Record::ExtendedSegmentAddress(seg) => base = (seg as u64) << 4,
            _ => {}
        }
    }
    memory
}

/// Firmware at 0x0800_0000 with the slot straddling a 64 KiB boundary, plus
/// a second region elsewhere.
fn golden_chunks(rng: &mut Rng, slot_address: u64, capacity: usize) -> Vec<(u64, Vec<u8>)> {
    let base = 0x0800_0000u64;
    let mut flash = rng.bytes(0x1_2000);
    let at = (slot_address - base) as usize;
    flash[at..at + capacity].copy_from_slice(&empty_slot(capacity));
    vec![(base, flash), (0x0810_0000, rng.bytes(1000))]
}

fn check_round_trip(golden_text: Vec<u8>, slot_address: u64, capacity: usize, rng: &mut Rng) {
    let golden_memory = memory_of(&golden_text);
    let golden = GoldenImage::load(golden_text.clone(), ImageFormat::Hex).unwrap();
    assert_eq!(golden.capacity(), capacity);
    assert_eq!(golden.location(), slot_address);

    let mut out = Vec::new();
    for n in 0..3 {
        let creds = random_credentials(rng, n);
        let slot = encode_slot(golden.capacity(), &creds).unwrap();
        golden.render(&slot, &mut out).unwrap();
        assert_eq!(out.len(), golden.output_len());

        // The address space equals the golden one with the slot patched.
        let mut expected = golden_memory.clone();
        for (i, b) in slot.iter().enumerate() {
            expected.insert(slot_address + i as u64, *b);
        }
        let memory = memory_of(&out);
        assert_eq!(memory, expected);

        // Lines outside the slot are byte-identical; only slot lines differ.
        let golden_lines: Vec<&[u8]> = golden_text.split(|&b| b == b'\n').collect();
        let lines: Vec<&[u8]> = out.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), golden_lines.len());
        let changed = lines
            .iter()
            .zip(&golden_lines)
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            changed > 0 && changed <= capacity / 16 + 2,
            "{changed} lines changed"
        );

        // Read back the slot from the flat memory.
        let flat: Vec<u8> = (slot_address..slot_address + capacity as u64)
            .map(|a| memory[&a])
            .collect();
        let (_, parsed) = find_slot(&flat).unwrap();
        assert_eq!(Credentials::from_slot(&parsed).unwrap(), creds);
    }
}

#[test]
fn linear_addresses_slot_spanning_records_and_a_64k_boundary() {
    let mut rng = Rng::new(21);
    let (slot_address, capacity) = (0x0800_FC03, 4096);
    let records = build_hex(&golden_chunks(&mut rng, slot_address, capacity), 16, false);
    check_round_trip(to_text(&records, "\n"), slot_address, capacity, &mut rng);
}

#[test]
fn segment_addresses_and_long_records() {
    let mut rng = Rng::new(22);
    let mut memory = rng.bytes(0x2_0000);
    let (slot_address, capacity) = (0xFF00u64, 3000);
    memory[0xFF00..0xFF00 + capacity].copy_from_slice(&empty_slot(capacity));
    let records = build_hex(&[(0, memory)], 32, true);
    check_round_trip(to_text(&records, "\r\n"), slot_address, capacity, &mut rng);
}

#[test]
fn lowercase_and_crlf_lines_outside_the_slot_are_kept() {
    let mut rng = Rng::new(23);
    let (slot_address, capacity) = (0x0800_1000, 4096);
    let records = build_hex(&golden_chunks(&mut rng, slot_address, capacity), 16, false);
    let golden = String::from_utf8(to_text(&records, "\r\n"))
        .unwrap()
        .to_lowercase()
        .into_bytes();
    let image = GoldenImage::load(golden.clone(), ImageFormat::Hex).unwrap();
    let slot = encode_slot(capacity, &random_credentials(&mut rng, 0)).unwrap();
    let mut out = Vec::new();
    image.render(&slot, &mut out).unwrap();
    assert!(out.starts_with(b":020000040800f2\r\n"));
    assert!(out.ends_with(b":00000001ff\r\n"));
    assert_eq!(memory_of(&out).len(), memory_of(&golden).len());
}

#[test]
fn large_golden_renders_the_same_length_every_time() {
    let mut rng = Rng::new(24);
    let capacity = 4096;
    let mut flash = rng.bytes(1 << 20);
    flash[0x8_0000..0x8_0000 + capacity].copy_from_slice(&empty_slot(capacity));
    let text = to_text(&build_hex(&[(0x0800_0000, flash)], 16, false), "\n");
    let golden = GoldenImage::load(text.clone(), ImageFormat::Hex).unwrap();
    assert_eq!(golden.output_len(), text.len());
    let slot = encode_slot(capacity, &random_credentials(&mut rng, 0)).unwrap();
    let mut out = Vec::new();
    golden.render(&slot, &mut out).unwrap();
    // Everything before and after the slot's lines is shared verbatim.
    let first = out.iter().zip(&text).position(|(a, b)| a != b).unwrap();
    let last = out
        .iter()
        .rev()
        .zip(text.iter().rev())
        .position(|(a, b)| a != b)
        .unwrap();
    assert!(text.len() - first - last <= (capacity / 16 + 1) * 44);
}

fn load(text: &str) -> Result<GoldenImage, ImageError> {
    GoldenImage::load(text.as_bytes().to_vec(), ImageFormat::Hex)
}

/// A tiny valid golden HEX with a 64-byte slot at 0x100.
fn tiny_golden() -> String {
    let mut records = build_hex(&[(0x100, empty_slot(64))], 16, false);
    records.remove(0); // no extended address record needed below 64 KiB
    String::from_utf8(to_text(&records, "\n")).unwrap()
}

#[test]
fn tiny_golden_loads() {
    let golden = load(&tiny_golden()).unwrap();
    assert_eq!((golden.location(), golden.capacity()), (0x100, 64));
}

#[test]
fn bad_checksum_is_reported_with_its_line() {
    let text = tiny_golden();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    // Corrupt the checksum of line 3.
    let line = &mut lines[2];
    let stored = u8::from_str_radix(&line[line.len() - 2..], 16).unwrap();
    let wrong = stored.wrapping_add(1);
    line.truncate(line.len() - 2);
    line.push_str(&format!("{wrong:02X}"));
    let err = load(&(lines.join("\n") + "\n")).unwrap_err();
    assert_eq!(
        err,
        ImageError::HexChecksum {
            line: 3,
            stored: wrong,
            computed: stored
        }
    );
}

#[test]
fn malformed_records_are_reported_with_their_line() {
    let good = tiny_golden();
    for (bad, line) in [
        (good.replacen(":10010000", "10010000", 1), 1),
        (good.replacen(":10011000", ":10011G00", 1), 2),
        (good.replace(":00000001FF", ":0000000AF6"), 6),
        (format!("{good}:0A\n"), 7),
    ] {
        match load(&bad) {
            Err(ImageError::HexRecord { line: l, .. })
            | Err(ImageError::HexDataAfterEof { line: l }) => {
                assert_eq!(l, line, "{bad}")
            }
            other => panic!("expected a record error on line {line}, got {other:?}"),
        }
    }
}

#[test]
fn missing_eof_and_data_after_eof() {
    let good = tiny_golden();
    assert_eq!(
        load(&good.replace(":00000001FF\n", "")).unwrap_err(),
        ImageError::HexMissingEof
    );
    let after = format!("{good}:0100000000FF\n");
    assert_eq!(
        load(&after).unwrap_err(),
        ImageError::HexDataAfterEof { line: 7 }
    );
    // Blank lines (and a missing final newline) are fine.
    assert!(load(&format!("\n{}\n\n", good.trim_end())).is_ok());
}

#[test]
fn overlapping_data_is_rejected() {
    let good = tiny_golden();
    let extra = Record::Data {
        offset: 0x108,
        value: vec![0xAA; 4],
    }
    .to_record_string()
    .unwrap();
    let twice = format!("{extra}\n{good}");
    assert!(matches!(
        load(&twice).unwrap_err(),
        ImageError::HexOverlap { address: 0x108 }
    ));
}

#[test]
fn record_crossing_64k_is_rejected() {
    let data = Record::Data {
        offset: 0xFFF8,
        value: vec![0; 16],
    }
    .to_record_string()
    .unwrap();
    let err = load(&format!("{data}\n:00000001FF\n")).unwrap_err();
    assert_eq!(
        err,
        ImageError::HexRecordWraps {
            line: 1,
            address: 0xFFF8
        }
    );
}

#[test]
fn slot_interrupted_by_a_gap_is_not_a_slot() {
    let mut slot = empty_slot(64);
    let tail = slot.split_off(32);
    let records = build_hex(&[(0x100, slot), (0x140, tail)], 16, false);
    let err = GoldenImage::load(to_text(&records, "\n"), ImageFormat::Hex).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::InvalidSlotHeader {
                location: 0x100,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn no_slot_two_slots_and_provisioned() {
    let mut rng = Rng::new(25);
    let records = build_hex(&[(0, rng.bytes(4000))], 16, false);
    assert_eq!(
        GoldenImage::load(to_text(&records, "\n"), ImageFormat::Hex).unwrap_err(),
        ImageError::NoSlot
    );

    let records = build_hex(
        &[(0x1000, empty_slot(64)), (0x2_0000, empty_slot(64))],
        16,
        false,
    );
    assert_eq!(
        GoldenImage::load(to_text(&records, "\n"), ImageFormat::Hex).unwrap_err(),
        ImageError::MultipleSlots {
            first: 0x1000,
            second: 0x2_0000
        }
    );

    let creds = random_credentials(&mut rng, 0);
    let slot = encode_slot(2048, &creds).unwrap();
    let records = build_hex(&[(0x3000, slot.to_vec())], 16, false);
    assert_eq!(
        GoldenImage::load(to_text(&records, "\n"), ImageFormat::Hex).unwrap_err(),
        ImageError::AlreadyProvisioned { location: 0x3000 }
    );
}

#[test]
fn binary_garbage_is_an_error_not_a_panic() {
    let mut rng = Rng::new(26);
    for len in [0, 1, 11, 100, 5000] {
        assert!(GoldenImage::load(rng.bytes(len), ImageFormat::Hex).is_err());
    }
}
