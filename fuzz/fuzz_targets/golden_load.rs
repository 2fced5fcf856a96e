//! Fuzz golden image loading in every format: the first byte picks the
//! format, the rest is the image. Loading must never panic, and an accepted
//! image must render a slot of its capacity to exactly `output_len` bytes.

#![no_main]

use idmint_slot::{GoldenImage, ImageFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    let format = match selector % 4 {
        0 => ImageFormat::Bin,
        1 => ImageFormat::Hex,
        2 => ImageFormat::Elf,
        _ => ImageFormat::Blob,
    };
    let Ok(golden) = GoldenImage::load(image.to_vec(), format) else {
        return;
    };
    let slot = vec![0xA5; golden.capacity()];
    let mut out = Vec::new();
    if golden.render(&slot, &mut out).is_err() {
        panic!("rendering a slot of the golden capacity failed");
    }
    assert_eq!(out.len(), golden.output_len());
});
