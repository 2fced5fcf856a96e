//! Raw images (bin, and ELF files patched in place): the golden bytes with
//! the slot region replaced, everything else byte-identical.

use std::io::{self, Write};

/// Golden bytes and the offset of the slot in them.
#[derive(Clone)]
pub(crate) struct FlatImage {
    bytes: Vec<u8>,
    slot_offset: usize,
}

impl FlatImage {
    /// `slot_offset` plus the slot capacity must lie within `bytes`
    /// (guaranteed by the slot search, which checks capacity bounds).
    pub(crate) fn new(bytes: Vec<u8>, slot_offset: usize) -> Self {
        Self { bytes, slot_offset }
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Write the bytes before the slot, `slot`, then the bytes after it.
    pub(crate) fn write<W: Write + ?Sized>(&self, slot: &[u8], writer: &mut W) -> io::Result<()> {
        let (before, rest) = self.bytes.split_at(self.slot_offset.min(self.bytes.len()));
        let after = rest.get(slot.len()..).unwrap_or_default();
        writer.write_all(before)?;
        writer.write_all(slot)?;
        writer.write_all(after)
    }
}
