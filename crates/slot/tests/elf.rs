//! ELF golden images built by gcc: the slot lives in `.idmint_cred`; only
//! that section's file bytes change, the result still parses with readelf,
//! and the patched executable reads its own credentials with the C reader.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{compile, firmware_dir, gcc, hex, random_credentials, Rng};
use idmint_slot::{encode_slot, GoldenImage, ImageError, ImageFormat, ELF_SECTION, HEADER_LEN};

const CAPACITY: usize = 4096;

/// A "firmware" whose slot is a const array in `.idmint_cred`, and whose
/// main prints the records it finds there with the C reader.
fn firmware_source(with_section: bool) -> String {
    // The header bytes as a C initialiser: magic, capacity, version 0, 0, 0.
    let mut header: Vec<String> = "IDMINT-CRED-SLOT"
        .chars()
        .map(|c| format!("'{c}'"))
        .collect();
    header.extend(
        (CAPACITY as u32)
            .to_le_bytes()
            .iter()
            .chain(&[0u8; 12])
            .map(|b| b.to_string()),
    );
    let attribute = if with_section {
        "__attribute__((section(\".idmint_cred\"), used))"
    } else {
        ""
    };
    format!(
        r#"
#include <stdio.h>
#include "idmint_cred.h"

{attribute} const unsigned char idmint_slot[{CAPACITY}] = {{ {header} }};
const char banner[] = "golden firmware v1.2.3";

int main(void)
{{
    idmint_cred_iter it;
    uint16_t type;
    const uint8_t *value;
    uint32_t len, i;
    idmint_cred_status st = idmint_cred_open(&it, idmint_slot, sizeof(idmint_slot));
    printf("%s open %d\n", banner, (int)st);
    if (st != IDMINT_CRED_OK) return 1;
    while ((st = idmint_cred_next(&it, &type, &value, &len)) == IDMINT_CRED_OK) {{
        printf("%u ", (unsigned)type);
        for (i = 0; i < len; i++) printf("%02x", value[i]);
        printf("\n");
    }}
    return st == IDMINT_CRED_END ? 0 : 1;
}}
"#,
        header = header.join(", ")
    )
}

/// Compile the firmware; `link` false gives a relocatable object.
fn build(gcc: &Path, dir: &Path, with_section: bool, link: bool) -> PathBuf {
    let src = dir.join(format!("fw_{with_section}.c"));
    std::fs::write(&src, firmware_source(with_section)).unwrap();
    let fw = firmware_dir();
    let out = dir.join(format!("fw_{with_section}_{link}"));
    let reader = fw.join("idmint_cred.c");
    let mut args = vec!["-I".as_ref(), fw.as_os_str(), src.as_os_str()];
    if link {
        args.push(reader.as_os_str());
    } else {
        args.push("-c".as_ref());
    }
    args.extend(["-o".as_ref(), out.as_os_str()]);
    compile(gcc, &args);
    out
}

fn readelf(args: &[&str], file: &Path) -> Option<String> {
    let out = Command::new("readelf").args(args).arg(file).output().ok()?;
    assert!(
        out.status.success(),
        "readelf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "readelf warned: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn patched_executable_reads_its_own_credentials() {
    let Some(gcc) = gcc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exe = build(&gcc, dir.path(), true, true);
    let golden_bytes = std::fs::read(&exe).unwrap();
    assert_eq!(ImageFormat::detect(&exe, &golden_bytes), ImageFormat::Elf);

    let golden = GoldenImage::load(golden_bytes.clone(), ImageFormat::Elf).unwrap();
    assert_eq!(golden.capacity(), CAPACITY);
    let offset = golden.location() as usize;

    let mut rng = Rng::new(31);
    let creds = random_credentials(&mut rng, 7);
    let slot = encode_slot(golden.capacity(), &creds).unwrap();
    let mut image = Vec::new();
    golden.render(&slot, &mut image).unwrap();

    // Only the section's bytes changed.
    assert_eq!(image.len(), golden_bytes.len());
    assert_eq!(image[..offset], golden_bytes[..offset]);
    assert_eq!(
        image[offset + CAPACITY..],
        golden_bytes[offset + CAPACITY..]
    );
    assert_eq!(&image[offset..offset + CAPACITY], &slot[..]);

    let device = dir.path().join("device.elf");
    std::fs::write(&device, &image).unwrap();

    // Still a well-formed ELF, with the same headers as the golden one.
    if let (Some(before), Some(after)) = (
        readelf(&["-a", "-W"], &exe),
        readelf(&["-a", "-W"], &device),
    ) {
        assert_eq!(before, after);
        assert!(after.contains(ELF_SECTION));
    } else {
        idmint_testkit::skip("readelf", "apt-get install binutils");
    }

    // The patched program finds its credentials with the C reader.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&device, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = Command::new(&device).output().unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.starts_with("golden firmware v1.2.3 open 0\n"),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("\n2 {}\n", hex(&creds.certificate))));
        assert!(stdout.contains(&format!("\n4 {}\n", hex(&creds.private_key))));
        assert!(stdout.contains(&format!("\n1 {}\n", hex(creds.device_id.as_bytes()))));
        // The golden program itself reports an empty slot.
        let out = Command::new(&exe).output().unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "golden firmware v1.2.3 open -4\n"
        );
    }
}

#[test]
fn object_file_works_too() {
    let Some(gcc) = gcc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let obj = build(&gcc, dir.path(), true, false);
    let golden_bytes = std::fs::read(&obj).unwrap();
    let golden = GoldenImage::load(golden_bytes.clone(), ImageFormat::Elf).unwrap();
    let slot = encode_slot(CAPACITY, &random_credentials(&mut Rng::new(32), 0)).unwrap();
    let mut image = Vec::new();
    golden.render(&slot, &mut image).unwrap();
    let offset = golden.location() as usize;
    assert_eq!(image[..offset], golden_bytes[..offset]);
    assert_eq!(
        image[offset + CAPACITY..],
        golden_bytes[offset + CAPACITY..]
    );
    assert_eq!(image[offset..offset + HEADER_LEN], slot[..HEADER_LEN]);
    let device = dir.path().join("device.o");
    std::fs::write(&device, &image).unwrap();
    if let Some(sections) = readelf(&["-S", "-W"], &device) {
        assert!(sections.contains(".idmint_cred"));
    }
}

#[test]
fn elf_without_the_section_is_rejected() {
    let Some(gcc) = gcc() else { return };
    let dir = tempfile::tempdir().unwrap();
    let exe = build(&gcc, dir.path(), false, true);
    let bytes = std::fs::read(&exe).unwrap();
    let err = GoldenImage::load(bytes.clone(), ImageFormat::Elf).unwrap_err();
    assert_eq!(err, ImageError::ElfNoSlotSection);
    assert!(err.to_string().contains(".idmint_cred"));
    // As a raw binary, the same file does have a findable slot in .rodata.
    assert!(GoldenImage::load(bytes, ImageFormat::Bin).is_ok());
}

#[test]
fn not_an_elf() {
    let err = GoldenImage::load(b"\x7fELF but not really".to_vec(), ImageFormat::Elf).unwrap_err();
    assert!(matches!(err, ImageError::Elf { .. }), "{err}");
    let err = GoldenImage::load(Vec::new(), ImageFormat::Elf).unwrap_err();
    assert!(matches!(err, ImageError::Elf { .. }), "{err}");
}
