//! Golden firmware images: find their one empty credential slot once, then
//! render any number of device images by copying the golden bytes and
//! patching the slot.

mod elf;
pub use elf::SLOT_SECTION as ELF_SECTION;
mod flat;
mod hex;
mod locate;
mod read;
pub use read::{slot_region, SlotRegion};

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use crate::error::{ImageError, RenderError, UnknownImageFormat};

/// The file format of a golden image and of the device images made from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageFormat {
    /// A raw binary image; the slot is found by its magic.
    Bin,
    /// Intel HEX (I8HEX, I16HEX or I32HEX records).
    Hex,
    /// An ELF file with a section named `.idmint_cred` holding the slot.
    Elf,
    /// Only the slot bytes, for programmers that write the slot region
    /// separately. The golden file is a raw image containing the slot.
    Blob,
}

impl ImageFormat {
    /// Guess the format from a file name: `.hex`, `.ihex`, `.ihx` are
    /// [`Hex`](Self::Hex), `.elf`, `.axf` are [`Elf`](Self::Elf), anything else
    /// [`Bin`](Self::Bin). Never guesses [`Blob`](Self::Blob).
    pub fn from_path(path: &Path) -> Self {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("hex" | "ihex" | "ihx") => Self::Hex,
            Some("elf" | "axf") => Self::Elf,
            _ => Self::Bin,
        }
    }

    /// Like [`from_path`](Self::from_path), but a file starting with the ELF
    /// magic `\x7fELF` is [`Elf`](Self::Elf) whatever its name.
    pub fn detect(path: &Path, contents: &[u8]) -> Self {
        if contents.starts_with(b"\x7fELF") {
            Self::Elf
        } else {
            Self::from_path(path)
        }
    }

    /// File extension for device images of this format, without the dot:
    /// `bin`, `hex`, `elf`, and `cred` for a blob (only the slot bytes, so it
    /// cannot be mistaken for a full image).
    pub fn extension(self) -> &'static str {
        match self {
            Self::Bin => "bin",
            Self::Hex => "hex",
            Self::Elf => "elf",
            Self::Blob => "cred",
        }
    }

    /// The name accepted by [`FromStr`]: `bin`, `hex`, `elf` or `blob`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bin => "bin",
            Self::Hex => "hex",
            Self::Elf => "elf",
            Self::Blob => "blob",
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ImageFormat {
    type Err = UnknownImageFormat;

    /// Parse `bin`, `hex`, `elf` or `blob` (ASCII case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "bin" => Ok(Self::Bin),
            "hex" => Ok(Self::Hex),
            "elf" => Ok(Self::Elf),
            "blob" => Ok(Self::Blob),
            _ => Err(UnknownImageFormat { name: s.to_owned() }),
        }
    }
}

/// A golden image whose single empty slot has been found and checked.
///
/// Loading parses the image once; [`render`](Self::render) then only copies
/// and patches, so rendering thousands of device images is as cheap as
/// copying them.
#[derive(Clone)]
pub struct GoldenImage {
    format: ImageFormat,
    capacity: usize,
    location: u64,
    layout: Layout,
}

#[derive(Clone)]
enum Layout {
    /// Bin and ELF: the golden bytes, the slot at a file offset.
    Flat(flat::FlatImage),
    /// Blob: only the slot is emitted.
    Blob,
    /// Intel HEX: the pre-rendered text around the records that hold the slot.
    Hex(hex::HexTemplate),
}

impl fmt::Debug for GoldenImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoldenImage")
            .field("format", &self.format)
            .field("capacity", &self.capacity)
            .field("location", &self.location)
            .field("output_len", &self.output_len())
            .finish()
    }
}

impl GoldenImage {
    /// Parse a golden image and locate its slot.
    ///
    /// There must be exactly one slot, and it must be empty (format version
    /// 0). For [`ImageFormat::Elf`] the slot must lie in the `.idmint_cred`
    /// section; for the others it is found by its magic.
    pub fn load(bytes: Vec<u8>, format: ImageFormat) -> Result<Self, ImageError> {
        let (location, capacity, layout) = match format {
            ImageFormat::Bin => {
                let found = locate::locate(&bytes, 0)?;
                let offset = found.offset;
                (
                    found.location,
                    found.capacity,
                    Layout::Flat(flat::FlatImage::new(bytes, offset)),
                )
            }
            ImageFormat::Blob => {
                let found = locate::locate(&bytes, 0)?;
                (found.location, found.capacity, Layout::Blob)
            }
            ImageFormat::Elf => {
                let section = elf::slot_section(&bytes)?;
                let found = locate::locate(section.contents(&bytes), section.offset as u64)?;
                let offset = section.offset + found.offset;
                (
                    found.location,
                    found.capacity,
                    Layout::Flat(flat::FlatImage::new(bytes, offset)),
                )
            }
            ImageFormat::Hex => {
                let template = hex::HexTemplate::parse(bytes)?;
                (
                    template.address(),
                    template.capacity(),
                    Layout::Hex(template),
                )
            }
        };
        Ok(Self {
            format,
            capacity,
            location,
            layout,
        })
    }

    /// The format of this image and of the images it renders.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// Size of the slot in bytes, header included: the `capacity` to pass
    /// to [`encode_slot`](crate::encode_slot).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Where the slot is: its file offset for bin, ELF and blob, its address
    /// for Intel HEX.
    pub fn location(&self) -> u64 {
        self.location
    }

    /// Length in bytes of every rendered device image.
    pub fn output_len(&self) -> usize {
        match &self.layout {
            Layout::Flat(image) => image.len(),
            Layout::Blob => self.capacity,
            Layout::Hex(template) => template.output_len(),
        }
    }

    /// Render the device image holding `slot` into `out` (cleared first).
    ///
    /// `slot` must be exactly [`capacity`](Self::capacity) bytes, as made by
    /// [`encode_slot`](crate::encode_slot). The output holds the private key:
    /// reuse one `out` buffer and wipe it when done.
    pub fn render(&self, slot: &[u8], out: &mut Vec<u8>) -> Result<(), RenderError> {
        out.clear();
        out.reserve(self.output_len());
        self.write_image(slot, out)
    }

    /// Write the device image holding `slot` to `writer`, without building
    /// it in memory first.
    pub fn write_image<W: Write + ?Sized>(
        &self,
        slot: &[u8],
        writer: &mut W,
    ) -> Result<(), RenderError> {
        if slot.len() != self.capacity {
            return Err(RenderError::SlotLength {
                expected: self.capacity,
                actual: slot.len(),
            });
        }
        match &self.layout {
            Layout::Flat(image) => image.write(slot, writer)?,
            Layout::Blob => writer.write_all(slot)?,
            Layout::Hex(template) => template.write(slot, writer)?,
        }
        Ok(())
    }
}
