//! A stable-toolchain stand-in for the fuzz targets: mutate valid slots,
//! golden images of every format and ESP32 partitions at random and check
//! that parsing never panics, that accepted images render to `output_len`
//! bytes and that credentials read from a partition write back.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{golden_bin, random_credentials, Rng};
use idmint_slot::{encode_slot, find_slot, parse_slot, Credentials, GoldenImage, ImageFormat};

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        match rng.below(5) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.next_u64() as u8,
            2 => out.truncate(at),
            3 => out.insert(at, rng.next_u64() as u8),
            _ => {
                // Small integers at header-ish positions.
                let value = [0u32, 1, 2, 31, 32, 33, u32::MAX][rng.below(7)];
                let end = (at + 4).min(out.len());
                out[at..end].copy_from_slice(&value.to_le_bytes()[..end - at]);
            }
        }
    }
    out
}

#[test]
fn mutated_slots_never_panic() {
    let mut rng = Rng::new(41);
    let slot = encode_slot(2048, &random_credentials(&mut rng, 0)).unwrap();
    for _ in 0..20_000 {
        let bytes = mutate(&mut rng, &slot);
        let _ = find_slot(&bytes);
        if let Ok(parsed) = parse_slot(&bytes) {
            let _ = parsed.records().count();
            if let Ok(creds) = Credentials::from_slot(&parsed) {
                assert!(encode_slot(parsed.capacity(), &creds).is_ok());
            }
        }
    }
}

#[test]
fn mutated_golden_images_never_panic() {
    let mut rng = Rng::new(42);
    let bin = golden_bin(&mut rng, 3000, 500, 512);
    let hex = {
        let mut records = vec![ihex::Record::ExtendedLinearAddress(0x0800)];
        for (i, chunk) in bin.chunks(16).enumerate() {
            records.push(ihex::Record::Data {
                offset: (i * 16) as u16,
                value: chunk.to_vec(),
            });
        }
        records.push(ihex::Record::EndOfFile);
        ihex::create_object_file_representation(&records)
            .unwrap()
            .into_bytes()
    };
    let inputs = [
        (ImageFormat::Bin, bin.clone()),
        (ImageFormat::Blob, bin),
        (ImageFormat::Hex, hex),
    ];
    for (format, golden) in &inputs {
        assert!(GoldenImage::load(golden.clone(), *format).is_ok());
        for _ in 0..3_000 {
            let bytes = mutate(&mut rng, golden);
            if let Ok(image) = GoldenImage::load(bytes, *format) {
                let mut out = Vec::new();
                image
                    .render(&vec![0x5A; image.capacity()], &mut out)
                    .unwrap();
                assert_eq!(out.len(), image.output_len());
            }
        }
    }
    // ELF parsing of arbitrary bytes, including an ELF-looking prefix.
    for _ in 0..3_000 {
        let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
        let len = rng.below(400);
        bytes.extend(rng.bytes(len));
        let _ = GoldenImage::load(bytes, ImageFormat::Elf);
    }
}

#[test]
fn mutated_partitions_never_panic() {
    use idmint_slot::{PartitionFormat, PemCredentials, Zeroizing};
    let mut rng = Rng::new(43);
    let creds = PemCredentials {
        device_cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".repeat(9),
        private_key: Zeroizing::new(
            "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n".into(),
        ),
        ca_cert: "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n".into(),
    };
    for format in [
        PartitionFormat::EspSecureCert { size: 0x2000 },
        PartitionFormat::EspNvs {
            size: 0x3000,
            namespace: "esp_secure_cert".into(),
        },
    ] {
        let good = format.encode_pem(&creds).unwrap();
        assert_eq!(format.decode(&good).unwrap(), creds);
        for _ in 0..3_000 {
            // Mutations near the written entries, where they matter.
            let head = mutate(&mut rng, &good[..1024]);
            let mut bytes = head;
            bytes.extend_from_slice(&good[1024..]);
            if let Ok(read) = format.decode(&bytes) {
                if let Ok(again) = format.encode_pem(&read) {
                    assert_eq!(format.decode(&again).unwrap(), read);
                }
            }
        }
    }
}
