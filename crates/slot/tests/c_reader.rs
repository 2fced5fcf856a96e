//! The C reader in `firmware/` against the Rust encoder: compile it with
//! strict flags, run it on images written by this crate, and compare.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, firmware_dir, gcc, golden_bin, hex, random_credentials, Rng};
use idmint_slot::{encode_slot, find_slot, GoldenImage, ImageFormat, MAGIC};

/// A driver that reads a file and prints what the C reader sees.
const DRIVER: &str = r#"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "idmint_cred.h"

int main(int argc, char **argv)
{
    FILE *f;
    long size;
    uint8_t *buf;
    idmint_cred_iter it;
    idmint_cred_status st;
    uint16_t type;
    const uint8_t *value;
    uint32_t len, i;

    if (argc == 2 && strcmp(argv[1], "--crc") == 0) {
        printf("%08lx\n", (unsigned long)idmint_cred_crc32((const uint8_t *)"123456789", 9));
        return 0;
    }
    if (argc != 2 || (f = fopen(argv[1], "rb")) == NULL) {
        return 2;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* +1 so an empty file still gets a valid pointer. */
    buf = malloc((size_t)size + 1);
    if (buf == NULL || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        return 2;
    }
    fclose(f);
    st = idmint_cred_open(&it, buf, (size_t)size);
    printf("open %d\n", (int)st);
    if (st != IDMINT_CRED_OK) {
        printf("error %s\n", idmint_cred_strerror(st));
        return 1;
    }
    printf("offset %lu\n", (unsigned long)idmint_cred_slot_offset(&it, buf));
    while ((st = idmint_cred_next(&it, &type, &value, &len)) == IDMINT_CRED_OK) {
        printf("record %u %lu ", (unsigned)type, (unsigned long)len);
        for (i = 0; i < len; i++) {
            printf("%02x", value[i]);
        }
        printf("\n");
    }
    printf("end %d\n", (int)st);
    if (idmint_cred_find(&it, IDMINT_CRED_PRIVATE_KEY, &value, &len) == IDMINT_CRED_OK) {
        printf("key %lu\n", (unsigned long)len);
    }
    free(buf);
    return st == IDMINT_CRED_END ? 0 : 1;
}
"#;

struct Reader {
    _dir: tempfile::TempDir,
    exe: PathBuf,
    object: PathBuf,
    /// `firmware/example.c`, built.
    example: PathBuf,
}

fn build_reader() -> Option<Reader> {
    let gcc = gcc()?;
    let dir = tempfile::tempdir().unwrap();
    let driver = dir.path().join("driver.c");
    std::fs::write(&driver, DRIVER).unwrap();
    let fw = firmware_dir();
    let exe = dir.path().join("driver");
    compile(
        &gcc,
        &[
            "-I".as_ref(),
            fw.as_os_str(),
            driver.as_os_str(),
            fw.join("idmint_cred.c").as_os_str(),
            "-o".as_ref(),
            exe.as_os_str(),
        ],
    );
    let object = dir.path().join("idmint_cred.o");
    compile(
        &gcc,
        &[
            "-c".as_ref(),
            fw.join("idmint_cred.c").as_os_str(),
            "-o".as_ref(),
            object.as_os_str(),
        ],
    );
    // The example must build too.
    let example = dir.path().join("example");
    compile(
        &gcc,
        &[
            fw.join("example.c").as_os_str(),
            fw.join("idmint_cred.c").as_os_str(),
            "-o".as_ref(),
            example.as_os_str(),
        ],
    );
    Some(Reader {
        _dir: dir,
        exe,
        object,
        example,
    })
}

fn run(reader: &Reader, image: &[u8]) -> (bool, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), image).unwrap();
    run_file(&reader.exe, file.path())
}

fn run_file(exe: &Path, file: &Path) -> (bool, String) {
    let out = Command::new(exe).arg(file).output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap())
}

/// What the driver should print for a valid image, computed by the Rust reader.
fn expected_output(image: &[u8]) -> String {
    let (offset, slot) = find_slot(image).unwrap();
    let mut out = format!("open 0\noffset {offset}\n");
    for record in slot.records() {
        out += &format!(
            "record {} {} {}\n",
            record.tag,
            record.value.len(),
            hex(record.value)
        );
    }
    out += "end 1\n";
    out += &format!("key {}\n", slot.private_key().unwrap().unwrap().len());
    out
}

#[test]
fn c_reader_reads_what_rust_writes() {
    let Some(reader) = build_reader() else { return };
    let mut rng = Rng::new(0x1D_4D17);
    for n in 0..12 {
        let capacity = 4096 + 512 * rng.below(4);
        let len = capacity + 1000 + rng.below(100_000);
        let offset = rng.below(len - capacity);
        let golden = GoldenImage::load(
            golden_bin(&mut rng, len, offset, capacity),
            ImageFormat::Bin,
        )
        .unwrap();
        let creds = random_credentials(&mut rng, n);
        let slot = encode_slot(golden.capacity(), &creds).unwrap();
        let mut image = Vec::new();
        golden.render(&slot, &mut image).unwrap();

        let (ok, printed) = run(&reader, &image);
        assert!(ok, "C reader rejected image {n}: {printed}");
        assert_eq!(printed, expected_output(&image));
        // And the records are exactly the credentials we wrote.
        assert!(printed.contains(&format!(
            "record 2 {} {}\n",
            creds.certificate.len(),
            hex(&creds.certificate)
        )));
        assert!(printed.contains(&format!(
            "record 4 {} {}\n",
            creds.private_key.len(),
            hex(&creds.private_key)
        )));
        assert!(printed.contains(&format!("offset {offset}\n")));
    }
}

fn one_image(rng: &mut Rng) -> (Vec<u8>, usize) {
    let offset = 777;
    let golden =
        GoldenImage::load(golden_bin(rng, 20_000, offset, 4096), ImageFormat::Bin).unwrap();
    let slot = encode_slot(golden.capacity(), &random_credentials(rng, 1)).unwrap();
    let mut image = Vec::new();
    golden.render(&slot, &mut image).unwrap();
    (image, offset)
}

/// `example.c` reads an Intel HEX image (here at a flash base that needs
/// extended linear address records, as `objcopy` writes them) as the flash
/// it describes: the same records at the same offset as the raw image. A
/// HEX line that fails its checksum is refused, naming the line.
#[test]
fn the_example_reads_raw_and_intel_hex_images_alike() {
    let Some(reader) = build_reader() else { return };
    let (image, offset) = one_image(&mut Rng::new(11));
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("device.bin");
    let ihex = dir.path().join("device.hex");
    std::fs::write(&bin, &image).unwrap();
    let objcopy = Command::new("objcopy")
        .args([
            "-I",
            "binary",
            "-O",
            "ihex",
            "--change-addresses",
            "0x08000000",
        ])
        .arg(&bin)
        .arg(&ihex)
        .output()
        .expect("objcopy (binutils) runs");
    assert!(objcopy.status.success(), "{objcopy:?}");

    let (bin_ok, from_bin) = run_file(&reader.example, &bin);
    let (hex_ok, from_hex) = run_file(&reader.example, &ihex);
    assert!(bin_ok && hex_ok, "{from_bin}\n{from_hex}");
    assert!(
        from_bin.starts_with(&format!("slot at offset {offset}\n")),
        "{from_bin}"
    );
    assert!(from_bin.contains("type 4: "), "{from_bin}");
    assert_eq!(from_hex, from_bin);

    let mut text = std::fs::read_to_string(&ihex).unwrap();
    let third = text.match_indices('\n').nth(1).unwrap().0 + 1;
    // Flip a data digit of line 3: its checksum no longer holds.
    let at = third + 9;
    let flipped = if &text[at..at + 1] == "0" { "1" } else { "0" };
    text.replace_range(at..at + 1, flipped);
    std::fs::write(&ihex, text).unwrap();
    let out = Command::new(&reader.example).arg(&ihex).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("HEX line 3") && err.contains("checksum"),
        "{err}"
    );
}

#[test]
fn c_reader_rejects_corrupt_crc() {
    let Some(reader) = build_reader() else { return };
    let (mut image, offset) = one_image(&mut Rng::new(7));
    image[offset + 32 + 100] ^= 0x40;
    assert_eq!(
        run(&reader, &image),
        (
            false,
            "open -7\nerror credential slot CRC mismatch (corrupt)\n".into()
        )
    );
    // A wrong CRC field is caught too.
    let (mut image, offset) = one_image(&mut Rng::new(7));
    image[offset + 28] ^= 1;
    assert!(run(&reader, &image).1.starts_with("open -7\n"));
}

#[test]
fn c_reader_rejects_truncated_slot() {
    let Some(reader) = build_reader() else { return };
    let (image, offset) = one_image(&mut Rng::new(8));
    for cut in [offset + 20, offset + 32, offset + 2000, offset + 4095] {
        let (ok, printed) = run(&reader, &image[..cut]);
        assert!(!ok);
        assert!(printed.starts_with("open -3\n"), "cut at {cut}: {printed}");
    }
}

#[test]
fn c_reader_reports_each_error() {
    let Some(reader) = build_reader() else { return };
    let mut rng = Rng::new(9);
    // No magic.
    assert!(run(&reader, &rng.bytes(5000)).1.starts_with("open -2\n"));
    assert!(run(&reader, &[]).1.starts_with("open -2\n"));
    // The golden image: an empty slot.
    let golden = golden_bin(&mut rng, 10_000, 100, 4096);
    assert!(run(&reader, &golden).1.starts_with("open -4\n"));
    // Unknown version.
    let mut v2 = golden.clone();
    v2[120] = 2;
    assert!(run(&reader, &v2).1.starts_with("open -5\n"));
    // Payload length beyond the capacity.
    let (mut image, offset) = one_image(&mut rng);
    image[offset + 24..offset + 28].copy_from_slice(&4065u32.to_le_bytes());
    assert!(run(&reader, &image).1.starts_with("open -6\n"));
    // A truncated record under a valid CRC.
    let (mut image, offset) = one_image(&mut rng);
    let payload_len = u32::from_le_bytes(image[offset + 24..offset + 28].try_into().unwrap()) - 1;
    image[offset + 24..offset + 28].copy_from_slice(&payload_len.to_le_bytes());
    let crc = idmint_slot::crc32(&image[offset + 32..offset + 32 + payload_len as usize]);
    image[offset + 28..offset + 32].copy_from_slice(&crc.to_le_bytes());
    let (ok, printed) = run(&reader, &image);
    assert!(!ok && printed.contains("\nend -8\n"), "{printed}");
}

#[test]
fn c_reader_skips_stray_magic_and_finds_the_slot() {
    let Some(reader) = build_reader() else { return };
    let (image, offset) = one_image(&mut Rng::new(10));
    // A copy of the magic string in "rodata" before the slot, with garbage after it.
    let mut with_stray = image.clone();
    with_stray[10..26].copy_from_slice(&MAGIC);
    with_stray[26..30].copy_from_slice(&[0xFF; 4]);
    let (ok, printed) = run(&reader, &with_stray);
    assert!(ok, "{printed}");
    assert!(printed.contains(&format!("offset {offset}\n")));
}

#[test]
fn c_reader_crc_matches_zlib_vector() {
    let Some(reader) = build_reader() else { return };
    let out = Command::new(&reader.exe).arg("--crc").output().unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "cbf43926\n");
}

#[test]
fn c_reader_object_does_not_contain_the_magic() {
    // Otherwise every firmware linking the reader would hold a stray magic.
    let Some(reader) = build_reader() else { return };
    let object = std::fs::read(&reader.object).unwrap();
    assert!(!object.windows(MAGIC.len()).any(|w| w == MAGIC));
}
