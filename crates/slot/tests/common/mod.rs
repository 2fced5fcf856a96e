//! Helpers shared by the integration tests: a seeded random generator,
//! sample credentials and golden image builders.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use idmint_slot::{empty_slot_header, Credentials};
use zeroize::Zeroizing;

/// xorshift64*: deterministic, dependency-free test randomness.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `min` plus up to `spread - 1` random bytes.
    pub fn bytes_up_to(&mut self, min: usize, spread: usize) -> Vec<u8> {
        let len = min + self.below(spread);
        self.bytes(len)
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// Credentials with random "certificates" and "key" of random sizes.
pub fn random_credentials(rng: &mut Rng, n: usize) -> Credentials {
    let chain_len = rng.below(3);
    let anchors = rng.below(3);
    Credentials {
        device_id: format!("dev-{n:06}"),
        thing_name: format!("sensor-{n:06}"),
        certificate: rng.bytes_up_to(300, 400),
        chain: (0..chain_len).map(|_| rng.bytes_up_to(200, 300)).collect(),
        private_key: Zeroizing::new(rng.bytes_up_to(100, 60)),
        endpoint: (rng.below(2) == 0).then(|| format!("mqtts://iot{n}.example.com:8883")),
        trust_anchors: (0..anchors).map(|_| rng.bytes_up_to(100, 300)).collect(),
    }
}

/// An empty (version 0) slot of `capacity` bytes.
pub fn empty_slot(capacity: usize) -> Vec<u8> {
    let mut slot = empty_slot_header(capacity as u32).to_vec();
    slot.resize(capacity, 0);
    slot
}

/// Random golden bytes of `len` with an empty slot of `capacity` at `offset`.
pub fn golden_bin(rng: &mut Rng, len: usize, offset: usize, capacity: usize) -> Vec<u8> {
    let mut image = rng.bytes(len);
    image[offset..offset + capacity].copy_from_slice(&empty_slot(capacity));
    image
}

/// The gcc on PATH, or `None` (after saying why) so the caller can skip.
pub fn gcc() -> Option<PathBuf> {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        Some(PathBuf::from("gcc"))
    } else {
        eprintln!("SKIPPED: gcc not found on PATH; the C reader and ELF tests need a C compiler");
        None
    }
}

/// The repository's `firmware/` directory.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../firmware")
}

/// Run gcc with strict flags, panicking with its output on failure.
pub fn compile(gcc: &Path, args: &[&std::ffi::OsStr]) {
    let out = Command::new(gcc)
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-std=c99",
            "-pedantic",
            "-O2",
        ])
        .args(args)
        .output()
        .expect("run gcc");
    assert!(
        out.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
