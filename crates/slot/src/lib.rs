//! The idmint credential slot: format v1 and the golden image formats.
//!
//! A golden firmware image reserves an empty *credential slot*: a region
//! starting with the magic `IDMINT-CRED-SLOT`, read by the firmware at boot.
//! This crate encodes a device's [`Credentials`] into a slot
//! ([`encode_slot`]), reads a slot back ([`parse_slot`], [`find_slot`],
//! [`Credentials::from_slot`]), and turns one [`GoldenImage`] (raw binary,
//! Intel HEX, ELF, or a bare blob) into any number of device images by
//! copying it and patching the slot. For ESP32 devices, [`partition`] writes
//! the same credentials as a flash partition of their own
//! (`esp_secure_cert`, or an ESP-IDF NVS partition), flashed beside one
//! application image. The format is described in
//! `docs/credential-slot.md`; `firmware/` holds the matching C reader.
//!
//! ```
//! use idmint_slot::{encode_slot, empty_slot_header, find_slot, Credentials, GoldenImage, ImageFormat};
//! use zeroize::Zeroizing;
//!
//! // A tiny golden "firmware": code bytes, an empty 512-byte slot, more code.
//! let mut golden = vec![0xAA; 100];
//! golden.extend_from_slice(&empty_slot_header(512));
//! golden.resize(100 + 512, 0);
//! golden.extend_from_slice(&[0xBB; 50]);
//!
//! let image = GoldenImage::load(golden, ImageFormat::Bin)?;
//! let creds = Credentials {
//!     device_id: "dev-0001".into(),
//!     thing_name: "sensor-0001".into(),
//!     certificate: vec![0x30, 0x03, 0x02, 0x01, 0x01],
//!     chain: vec![],
//!     private_key: Zeroizing::new(vec![0x30, 0x00]),
//!     endpoint: Some("mqtts://iot.example.com:8883".into()),
//!     trust_anchors: vec![],
//! };
//! let slot = encode_slot(image.capacity(), &creds)?;
//! let mut device_image = Vec::new();
//! image.render(&slot, &mut device_image)?;
//!
//! let (offset, slot) = find_slot(&device_image)?;
//! assert_eq!(offset, 100);
//! assert_eq!(Credentials::from_slot(&slot)?, creds);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod credentials;
mod error;
mod image;
pub mod partition;
mod slot;

pub use credentials::{
    empty_slot_header, encode_slot, encode_slot_into, required_capacity, Credentials,
};
pub use error::{ImageError, PartitionError, RenderError, SlotError, UnknownImageFormat};
pub use image::{slot_region, GoldenImage, ImageFormat, SlotRegion, ELF_SECTION};
pub use partition::{ChipKeyProtection, PartitionFormat, PartitionKind, PemCredentials};
/// Re-exported: the private key and encoded slots are wrapped in it.
pub use zeroize::Zeroizing;

pub use slot::{
    crc32, find_slot, parse_slot, Record, RecordType, Slot, HEADER_LEN, MAGIC, RECORD_HEADER_LEN,
    VERSION_1, VERSION_EMPTY,
};
