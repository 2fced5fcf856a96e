//! Render throughput against a plain copy of the same bytes. A benchmark
//! (not part of `cargo test`, so the suite has no ignored tests), only
//! meaningful in release mode: `cargo bench -p idmint-slot --bench render`.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{empty_slot, golden_bin, random_credentials, Rng};
use idmint_slot::{encode_slot, GoldenImage, ImageFormat};

const ROUNDS: usize = 200;

/// Time `ROUNDS` runs of `f`, best of three, to ride out a busy machine.
fn time(mut f: impl FnMut(usize)) -> Duration {
    (0..3)
        .map(|_| {
            let start = Instant::now();
            for i in 0..ROUNDS {
                f(i);
            }
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Rendering + writing N device images against copying the golden file N
/// times with `std::fs::copy` (which is what `cp` does).
fn compare(name: &str, golden_bytes: Vec<u8>, format: ImageFormat, rng: &mut Rng) {
    let dir = tempfile::tempdir().unwrap();
    let golden_path = dir.path().join("golden");
    std::fs::write(&golden_path, &golden_bytes).unwrap();
    let golden = GoldenImage::load(golden_bytes, format).unwrap();
    let slot = encode_slot(golden.capacity(), &random_credentials(rng, 0)).unwrap();
    let mut out = Vec::with_capacity(golden.output_len());
    let copy = time(|i| {
        std::fs::copy(&golden_path, dir.path().join(format!("copy-{i}"))).unwrap();
    });
    let render = time(|i| {
        golden.render(&slot, &mut out).unwrap();
        std::fs::write(dir.path().join(format!("device-{i}")), &out).unwrap();
    });
    let ratio = render.as_secs_f64() / copy.as_secs_f64();
    println!("{name}: cp {copy:?}, render+write {render:?} for {ROUNDS} images: {ratio:.2}x");
    assert!(ratio < 2.0, "{name} render is {ratio:.2}x a plain copy");
}

fn main() {
    let mut rng = Rng::new(51);
    let bin = golden_bin(&mut rng, 1 << 20, 0x8_0000, 4096);
    let hex = {
        let mut records = vec![ihex::Record::ExtendedLinearAddress(0x0800)];
        let mut flash = rng.bytes(1 << 20);
        flash[0x8_0000..0x8_1000].copy_from_slice(&empty_slot(4096));
        for (i, chunk) in flash.chunks(16).enumerate() {
            if i % 4096 == 0 && i > 0 {
                records.push(ihex::Record::ExtendedLinearAddress(
                    0x0800 + (i / 4096) as u16,
                ));
            }
            records.push(ihex::Record::Data {
                offset: ((i * 16) & 0xFFFF) as u16,
                value: chunk.to_vec(),
            });
        }
        records.push(ihex::Record::EndOfFile);
        ihex::create_object_file_representation(&records)
            .unwrap()
            .into_bytes()
    };
    compare("bin 1 MiB", bin.clone(), ImageFormat::Bin, &mut rng);
    compare("hex 1 MiB", hex, ImageFormat::Hex, &mut rng);

    let golden = GoldenImage::load(bin, ImageFormat::Blob).unwrap();
    let creds = random_credentials(&mut rng, 0);
    let mut slot = Vec::new();
    let mut out = Vec::new();
    let start = Instant::now();
    for _ in 0..100_000 {
        idmint_slot::encode_slot_into(golden.capacity(), &creds, &mut slot).unwrap();
        golden.render(&slot, &mut out).unwrap();
    }
    let rate = 100_000.0 / start.elapsed().as_secs_f64();
    println!("blob: encode + render {rate:.0}/s");
    assert!(rate > 12_000.0);
}
