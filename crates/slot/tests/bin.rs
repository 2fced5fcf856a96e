//! Raw binary and blob golden images: slot search rules, typed errors, and
//! rendering that leaves every byte outside the slot untouched.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::Path;

use common::{empty_slot, golden_bin, random_credentials, Rng};
use idmint_slot::{
    encode_slot, find_slot, parse_slot, Credentials, GoldenImage, ImageError, ImageFormat,
    RenderError, SlotError, MAGIC,
};

#[test]
fn bin_render_patches_only_the_slot() {
    let mut rng = Rng::new(1);
    let (len, offset, capacity) = (1 << 20, 300_001, 4096);
    let golden_bytes = golden_bin(&mut rng, len, offset, capacity);
    let golden = GoldenImage::load(golden_bytes.clone(), ImageFormat::Bin).unwrap();
    assert_eq!(
        (golden.capacity(), golden.location(), golden.output_len()),
        (capacity, offset as u64, len)
    );

    let mut image = Vec::new();
    for n in 0..3 {
        let creds = random_credentials(&mut rng, n);
        let slot = encode_slot(golden.capacity(), &creds).unwrap();
        golden.render(&slot, &mut image).unwrap();
        assert_eq!(image.len(), len);
        assert_eq!(image[..offset], golden_bytes[..offset]);
        assert_eq!(
            image[offset + capacity..],
            golden_bytes[offset + capacity..]
        );
        assert_eq!(&image[offset..offset + capacity], &slot[..]);
        let (found, parsed) = find_slot(&image).unwrap();
        assert_eq!(found, offset);
        assert_eq!(Credentials::from_slot(&parsed).unwrap(), creds);
    }
}

#[test]
fn slot_at_the_very_start_and_end() {
    let mut rng = Rng::new(2);
    for (len, offset) in [(512, 0), (600, 88)] {
        let golden =
            GoldenImage::load(golden_bin(&mut rng, len, offset, 512), ImageFormat::Bin).unwrap();
        assert_eq!(golden.location(), offset as u64);
    }
}

#[test]
fn write_image_streams_the_same_bytes() {
    let mut rng = Rng::new(3);
    let golden =
        GoldenImage::load(golden_bin(&mut rng, 10_000, 1234, 2048), ImageFormat::Bin).unwrap();
    let slot = encode_slot(2048, &random_credentials(&mut rng, 0)).unwrap();
    let mut rendered = Vec::new();
    golden.render(&slot, &mut rendered).unwrap();
    let mut streamed = std::io::Cursor::new(Vec::new());
    golden.write_image(&slot, &mut streamed).unwrap();
    assert_eq!(streamed.into_inner(), rendered);
}

#[test]
fn blob_emits_only_the_slot() {
    let mut rng = Rng::new(4);
    let golden =
        GoldenImage::load(golden_bin(&mut rng, 50_000, 4000, 1024), ImageFormat::Blob).unwrap();
    assert_eq!(
        (golden.capacity(), golden.output_len(), golden.location()),
        (1024, 1024, 4000)
    );
    let creds = random_credentials(&mut rng, 0);
    let creds = Credentials {
        chain: vec![],
        trust_anchors: vec![],
        certificate: vec![1; 100],
        ..creds
    };
    let slot = encode_slot(1024, &creds).unwrap();
    let mut out = Vec::new();
    golden.render(&slot, &mut out).unwrap();
    assert_eq!(out, &slot[..]);
    assert_eq!(
        Credentials::from_slot(&parse_slot(&out).unwrap()).unwrap(),
        creds
    );
}

#[test]
fn render_rejects_a_slot_of_the_wrong_length() {
    let mut rng = Rng::new(5);
    let golden = GoldenImage::load(golden_bin(&mut rng, 5000, 10, 1024), ImageFormat::Bin).unwrap();
    let err = golden.render(&vec![0; 1023], &mut Vec::new()).unwrap_err();
    assert!(matches!(
        err,
        RenderError::SlotLength {
            expected: 1024,
            actual: 1023
        }
    ));
}

#[test]
fn no_slot() {
    let mut rng = Rng::new(6);
    assert_eq!(
        GoldenImage::load(rng.bytes(4096), ImageFormat::Bin).unwrap_err(),
        ImageError::NoSlot
    );
    assert_eq!(
        GoldenImage::load(Vec::new(), ImageFormat::Blob).unwrap_err(),
        ImageError::NoSlot
    );
}

#[test]
fn two_slots() {
    let mut rng = Rng::new(7);
    let mut image = golden_bin(&mut rng, 10_000, 100, 1024);
    image[5000..6024].copy_from_slice(&empty_slot(1024));
    assert_eq!(
        GoldenImage::load(image, ImageFormat::Bin).unwrap_err(),
        ImageError::MultipleSlots {
            first: 100,
            second: 5000
        }
    );
}

#[test]
fn already_provisioned() {
    let mut rng = Rng::new(8);
    let golden =
        GoldenImage::load(golden_bin(&mut rng, 10_000, 64, 2048), ImageFormat::Bin).unwrap();
    let slot = encode_slot(2048, &random_credentials(&mut rng, 0)).unwrap();
    let mut device = Vec::new();
    golden.render(&slot, &mut device).unwrap();
    let err = GoldenImage::load(device, ImageFormat::Bin).unwrap_err();
    assert_eq!(err, ImageError::AlreadyProvisioned { location: 64 });
    assert!(
        err.to_string().contains("already holds credentials"),
        "{err}"
    );
}

#[test]
fn stray_magic_without_a_header_is_ignored_but_reported_if_alone() {
    let mut rng = Rng::new(9);
    let mut image = golden_bin(&mut rng, 10_000, 4000, 1024);
    // The magic as a string constant in rodata, followed by other data.
    image[100..116].copy_from_slice(&MAGIC);
    image[116..120].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        GoldenImage::load(image.clone(), ImageFormat::Bin)
            .unwrap()
            .location(),
        4000
    );

    // Only the stray magic: say why it is not a slot.
    image[4000] = b'X';
    assert_eq!(
        GoldenImage::load(image, ImageFormat::Bin).unwrap_err(),
        ImageError::InvalidSlotHeader {
            location: 100,
            reason: SlotError::CapacityExceedsInput {
                capacity: u32::MAX,
                available: 9900
            }
        }
    );
}

#[test]
fn slot_truncated_by_end_of_file() {
    let mut rng = Rng::new(10);
    let image = golden_bin(&mut rng, 2000, 1000, 1000);
    let err = GoldenImage::load(image[..1500].to_vec(), ImageFormat::Bin).unwrap_err();
    assert!(matches!(
        err,
        ImageError::InvalidSlotHeader {
            location: 1000,
            reason: SlotError::CapacityExceedsInput { .. }
        }
    ));
}

#[test]
fn slot_too_small_for_the_credentials() {
    let mut rng = Rng::new(11);
    let golden = GoldenImage::load(golden_bin(&mut rng, 2000, 0, 256), ImageFormat::Bin).unwrap();
    let err = encode_slot(golden.capacity(), &random_credentials(&mut rng, 0)).unwrap_err();
    assert!(matches!(err, SlotError::SlotTooSmall { capacity: 256, .. }));
}

#[test]
fn format_names_extensions_and_inference() {
    for (name, format, ext) in [
        ("bin", ImageFormat::Bin, "bin"),
        ("hex", ImageFormat::Hex, "hex"),
        ("elf", ImageFormat::Elf, "elf"),
        ("blob", ImageFormat::Blob, "cred"),
    ] {
        assert_eq!(name.parse::<ImageFormat>().unwrap(), format);
        assert_eq!(name.to_uppercase().parse::<ImageFormat>().unwrap(), format);
        assert_eq!(format.to_string(), name);
        assert_eq!(format.extension(), ext);
    }
    let err = "srec".parse::<ImageFormat>().unwrap_err();
    assert_eq!(err.name, "srec");
    assert!(err.to_string().contains("bin, hex, elf, blob"));

    assert_eq!(
        ImageFormat::from_path(Path::new("fw.hex")),
        ImageFormat::Hex
    );
    assert_eq!(
        ImageFormat::from_path(Path::new("fw.IHEX")),
        ImageFormat::Hex
    );
    assert_eq!(
        ImageFormat::from_path(Path::new("fw.ihx")),
        ImageFormat::Hex
    );
    assert_eq!(
        ImageFormat::from_path(Path::new("fw.elf")),
        ImageFormat::Elf
    );
    assert_eq!(
        ImageFormat::from_path(Path::new("fw.bin")),
        ImageFormat::Bin
    );
    assert_eq!(
        ImageFormat::from_path(Path::new("firmware")),
        ImageFormat::Bin
    );
    assert_eq!(
        ImageFormat::detect(Path::new("firmware"), b"\x7fELF\x02\x01"),
        ImageFormat::Elf
    );
    assert_eq!(
        ImageFormat::detect(Path::new("fw.hex"), b":00000001FF"),
        ImageFormat::Hex
    );
}

#[test]
fn errors_are_readable() {
    let err = ImageError::MultipleSlots {
        first: 0x100,
        second: 0x2000,
    };
    assert_eq!(
        err.to_string(),
        "two credential slots found, at 0x100 and 0x2000; a golden image must have exactly one"
    );
    let err = ImageError::HexChecksum {
        line: 3,
        stored: 0x12,
        computed: 0x34,
    };
    assert_eq!(
        err.to_string(),
        "Intel HEX line 3: checksum is 0x12, should be 0x34"
    );
}
