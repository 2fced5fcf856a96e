//! Reading a device image back (`idmint slot show`): the bytes in which its
//! written credential slot lies, for each image format.

use std::borrow::Cow;

use crate::error::ImageError;
use crate::image::{elf, hex, ImageFormat};
use crate::slot::magic_offsets;

/// The part of a device image that holds its credential slot, and where
/// that part starts: a file offset for bin, ELF and blob, an address for
/// Intel HEX. Pass the bytes to [`find_slot`](crate::find_slot) and add the
/// offset it returns to `base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRegion<'a> {
    /// File offset or address of `bytes[0]`.
    pub base: u64,
    /// The bytes to search: the whole file (bin, blob), the `.idmint_cred`
    /// section (ELF), or the contiguous run of data holding the slot magic
    /// (Intel HEX, decoded).
    pub bytes: Cow<'a, [u8]>,
}

/// Finds the region of `image` (a file in `format`) that holds the slot,
/// written or empty. Fails when the image cannot be parsed in that format,
/// or (Intel HEX) when no run of data holds the slot magic.
pub fn slot_region(image: &[u8], format: ImageFormat) -> Result<SlotRegion<'_>, ImageError> {
    match format {
        ImageFormat::Bin | ImageFormat::Blob => Ok(SlotRegion {
            base: 0,
            bytes: Cow::Borrowed(image),
        }),
        ImageFormat::Elf => {
            let section = elf::slot_section(image)?;
            Ok(SlotRegion {
                base: section.offset as u64,
                bytes: Cow::Borrowed(section.contents(image)),
            })
        }
        ImageFormat::Hex => {
            let segment = hex::memory(image)?
                .into_iter()
                .find(|(_, bytes)| magic_offsets(bytes).next().is_some())
                .ok_or(ImageError::NoSlot)?;
            Ok(SlotRegion {
                base: segment.0,
                bytes: Cow::Owned(segment.1),
            })
        }
    }
}
