//! The typed errors of this crate: [`SlotError`] for the slot bytes themselves,
//! [`ImageError`] for golden images and [`RenderError`] for writing device images.

use crate::slot::RecordType;

/// Something is wrong with the bytes of a credential slot, or the credentials
/// do not fit into one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    /// The encoded credentials need more room than the slot has.
    #[error("credentials need {needed} bytes but the slot holds only {capacity}")]
    SlotTooSmall {
        /// Bytes needed, header included.
        needed: usize,
        /// Capacity of the slot, header included.
        capacity: usize,
    },
    /// A capacity that cannot be written into the 32-bit capacity field.
    #[error("slot capacity {capacity} does not fit the 32-bit capacity field")]
    CapacityTooLarge {
        /// The requested capacity.
        capacity: usize,
    },
    /// Fewer bytes than a slot header.
    #[error("{len} bytes is shorter than the 32-byte slot header")]
    Truncated {
        /// Number of bytes available.
        len: usize,
    },
    /// The bytes do not start with the `IDMINT-CRED-SLOT` magic.
    #[error("slot magic `IDMINT-CRED-SLOT` not found")]
    BadMagic,
    /// The capacity field is smaller than the header itself.
    #[error("slot capacity {capacity} is smaller than the 32-byte header")]
    CapacityTooSmall {
        /// The capacity field.
        capacity: u32,
    },
    /// The capacity field reaches past the end of the available bytes.
    #[error("slot capacity {capacity} exceeds the {available} bytes available")]
    CapacityExceedsInput {
        /// The capacity field.
        capacity: u32,
        /// Bytes available from the start of the slot.
        available: usize,
    },
    /// The slot is still empty (format version 0, as in a golden image).
    #[error("the slot is empty (format version 0): no credentials were written")]
    Empty,
    /// A format version this reader does not know.
    #[error("unsupported slot format version {version}")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// The payload length field does not fit inside the capacity.
    #[error("payload length {payload_len} exceeds the {room} bytes of room in the slot")]
    PayloadTooLong {
        /// The payload length field.
        payload_len: u32,
        /// Capacity minus header.
        room: u32,
    },
    /// The CRC-32 of the payload does not match the header.
    #[error("payload CRC-32 is {actual:#010x}, header says {expected:#010x}")]
    CrcMismatch {
        /// CRC-32 stored in the header.
        expected: u32,
        /// CRC-32 computed over the payload.
        actual: u32,
    },
    /// A record header or value runs past the end of the payload.
    #[error("record at payload offset {offset} runs past the end of the payload")]
    TruncatedRecord {
        /// Offset of the record within the payload.
        offset: usize,
    },
    /// A record every credential set needs is missing.
    #[error("the slot has no {record_type} record")]
    MissingRecord {
        /// The missing type.
        record_type: RecordType,
    },
    /// A record that may appear only once appears more than once.
    #[error("the slot has more than one {record_type} record")]
    DuplicateRecord {
        /// The repeated type.
        record_type: RecordType,
    },
    /// A text record is not valid UTF-8.
    #[error("the {record_type} record is not valid UTF-8")]
    InvalidUtf8 {
        /// The record type.
        record_type: RecordType,
    },
}

/// A golden image cannot be used: it is malformed, or it does not contain
/// exactly one empty credential slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// No slot magic at all in the image.
    #[error("no credential slot (magic `IDMINT-CRED-SLOT`) found in the golden image")]
    NoSlot,
    /// The slot magic occurs, but nowhere followed by a usable slot header.
    #[error("slot magic found at {location:#x}, but its header is invalid: {reason}")]
    InvalidSlotHeader {
        /// File offset (bin, ELF, blob) or address (HEX) of the first magic.
        location: u64,
        /// Why the header was rejected.
        reason: SlotError,
    },
    /// More than one slot: the image is ambiguous.
    #[error("two credential slots found, at {first:#x} and {second:#x}; a golden image must have exactly one")]
    MultipleSlots {
        /// Location of the first slot.
        first: u64,
        /// Location of the second slot.
        second: u64,
    },
    /// The slot already holds credentials (format version 1): this is not a
    /// golden image but a device image.
    #[error("the credential slot at {location:#x} already holds credentials; use the golden image, not a device image")]
    AlreadyProvisioned {
        /// Location of the slot.
        location: u64,
    },
    /// An Intel HEX record whose checksum is wrong.
    #[error("Intel HEX line {line}: checksum is {stored:#04x}, should be {computed:#04x}")]
    HexChecksum {
        /// 1-based line number.
        line: usize,
        /// Checksum written in the file.
        stored: u8,
        /// Checksum computed from the record.
        computed: u8,
    },
    /// An Intel HEX line that is not a valid record.
    #[error("Intel HEX line {line}: malformed record: {reason}")]
    HexRecord {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// An Intel HEX data record that crosses a 64 KiB boundary of its
    /// segment or linear base (its address would wrap).
    #[error("Intel HEX line {line}: data record at {address:#x} crosses a 64 KiB boundary")]
    HexRecordWraps {
        /// 1-based line number.
        line: usize,
        /// Absolute address of the record.
        address: u64,
    },
    /// Two Intel HEX data records write the same address.
    #[error("Intel HEX data records overlap at address {address:#x}")]
    HexOverlap {
        /// First address written twice.
        address: u64,
    },
    /// No end-of-file record (type 01).
    #[error("Intel HEX file has no end-of-file record")]
    HexMissingEof,
    /// Records after the end-of-file record.
    #[error("Intel HEX line {line}: record after the end-of-file record")]
    HexDataAfterEof {
        /// 1-based line number.
        line: usize,
    },
    /// The bytes are not a well-formed ELF file.
    #[error("malformed ELF file: {reason}")]
    Elf {
        /// What the ELF parser reported.
        reason: String,
    },
    /// The ELF file has no section named `.idmint_cred`.
    #[error("ELF file has no `.idmint_cred` section; put the slot there with __attribute__((section(\".idmint_cred\")))")]
    ElfNoSlotSection,
    /// The ELF file has more than one section named `.idmint_cred`.
    #[error("ELF file has more than one `.idmint_cred` section")]
    ElfMultipleSlotSections,
    /// The `.idmint_cred` section occupies no bytes in the file (e.g. NOBITS).
    #[error("ELF section `.idmint_cred` has no contents in the file (is it NOBITS / .bss?); make it a const initialised array")]
    ElfSectionWithoutData,
}

/// A device image could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The slot bytes are not exactly the golden slot's capacity.
    #[error("slot is {actual} bytes but the golden image's slot holds exactly {expected}")]
    SlotLength {
        /// The golden slot capacity.
        expected: usize,
        /// Length of the slot passed in.
        actual: usize,
    },
    /// Writing the image failed.
    #[error("writing the device image failed")]
    Io(#[from] std::io::Error),
}

/// A name that is not one of the image formats `bin`, `hex`, `elf`, `blob`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown image format `{name}`; expected one of bin, hex, elf, blob")]
pub struct UnknownImageFormat {
    /// The name that was given.
    pub name: String,
}

/// An ESP32 credential partition cannot be written, or its bytes are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The credentials need more room than the partition has.
    #[error("the credentials need {needed} bytes but the {format} partition holds only {size}")]
    TooSmall {
        /// The partition format (`esp-secure-cert` or `esp-nvs`).
        format: &'static str,
        /// Bytes needed.
        needed: usize,
        /// The partition size.
        size: usize,
    },
    /// A partition size the format cannot have.
    #[error("partition size {size:#x} is invalid: {reason}")]
    BadSize {
        /// The requested size.
        size: usize,
        /// What the format requires.
        reason: &'static str,
    },
    /// One value is longer than its field can say.
    #[error("{what} is {len} bytes, more than the {max} one entry can hold")]
    ValueTooLong {
        /// Which value (`dev_cert`, `priv_key`, ...).
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An NVS namespace or key that NVS cannot store.
    #[error("NVS name {name:?} is invalid: use 1 to 15 printable ASCII characters")]
    BadName {
        /// The name.
        name: String,
    },
    /// The bytes end inside an entry or header.
    #[error("truncated at offset {offset:#x}")]
    Truncated {
        /// Offset of the entry or page that is cut short.
        offset: usize,
    },
    /// A CRC-32 does not match what it covers.
    #[error("CRC-32 at offset {offset:#x} is {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// Offset of the entry (or page header) the CRC protects.
        offset: usize,
        /// The stored CRC.
        stored: u32,
        /// The CRC over the covered bytes.
        computed: u32,
    },
    /// The esp_secure_cert integrity entry does not match the partition.
    #[error("integrity entry at offset {offset:#x} does not match the SHA-256 of the partition before it")]
    IntegrityMismatch {
        /// Offset of the integrity entry.
        offset: usize,
    },
    /// An entry's fields are inconsistent (bad span, size or type).
    #[error("malformed entry at offset {offset:#x}: {reason}")]
    Malformed {
        /// Offset of the entry.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value every device needs is missing.
    #[error("the partition has no {what}")]
    Missing {
        /// What is missing (`dev_cert`, `priv_key`, ...).
        what: &'static str,
    },
}
