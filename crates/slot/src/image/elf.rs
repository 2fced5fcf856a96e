//! ELF golden images: the slot is the file contents of the section named
//! `.idmint_cred`, found with the `object` crate (read-only).

use object::{Object, ObjectSection};

use crate::error::ImageError;

/// Name of the ELF section that holds the slot in an ELF golden image.
pub const SLOT_SECTION: &str = ".idmint_cred";

/// Where the slot section's contents are in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SectionRange {
    pub(crate) offset: usize,
    pub(crate) size: usize,
}

impl SectionRange {
    /// The section's bytes; bounds were checked by [`slot_section`].
    pub(crate) fn contents<'a>(&self, file: &'a [u8]) -> &'a [u8] {
        file.get(self.offset..self.offset + self.size)
            .unwrap_or_default()
    }
}

/// Parse `bytes` as ELF and return the file range of its one `.idmint_cred`
/// section.
pub(crate) fn slot_section(bytes: &[u8]) -> Result<SectionRange, ImageError> {
    let file = object::File::parse(bytes).map_err(|e| ImageError::Elf {
        reason: e.to_string(),
    })?;
    if file.format() != object::BinaryFormat::Elf {
        return Err(ImageError::Elf {
            reason: format!("not an ELF file but {:?}", file.format()),
        });
    }
    let mut sections = file
        .sections()
        .filter(|s| s.name_bytes().ok() == Some(SLOT_SECTION.as_bytes()));
    let section = sections.next().ok_or(ImageError::ElfNoSlotSection)?;
    if sections.next().is_some() {
        return Err(ImageError::ElfMultipleSlotSections);
    }
    let (offset, size) = section
        .file_range()
        .ok_or(ImageError::ElfSectionWithoutData)?;
    let range = usize::try_from(offset)
        .ok()
        .zip(usize::try_from(size).ok())
        .filter(|(o, s)| o.checked_add(*s).is_some_and(|end| end <= bytes.len()));
    match range {
        Some((offset, size)) => Ok(SectionRange { offset, size }),
        None => Err(ImageError::Elf {
            reason: format!("section {SLOT_SECTION} at offset {offset:#x}, size {size:#x} lies outside the file"),
        }),
    }
}
