//! An ESP-IDF NVS partition, byte for byte as Espressif's
//! `esp-idf-nvs-partition-gen` (`nvs_partition_gen.py`, format version 2)
//! writes it, and a reader for what it and the chip's `nvs_flash` write.
//!
//! A partition is 4096-byte pages. Each page starts with a 32-byte header
//! (state, sequence number, version 0xFE, CRC-32 over bytes 4..28), a 32-byte
//! bitmap (two bits per entry: 0b11 empty, 0b10 written, 0b00 erased) and 126
//! entries of 32 bytes: namespace index, type, span, chunk index, CRC-32 over
//! the rest of the entry, a NUL-padded key of at most 15 characters and eight
//! bytes of data. A namespace is a `u8` entry in namespace 0 whose value is
//! the index its keys carry. Strings (NUL included) follow their entry in the
//! next `span - 1` entries of the same page; blobs are split into
//! `BLOB_DATA` chunks across pages and described by one `BLOB_IDX` entry.
//! The generator's own rules are kept, quirks included: a string starts a new
//! page unless its entries end before the last entry of the page, a page left
//! behind is marked full, the unused pages are erased flash (0xFF), and the
//! last page of the partition is kept free for the chip's garbage collector.
//!
//! The credentials go in as Espressif's `configure_esp_secure_cert.py
//! --secure_cert_type nvs` writes them: namespace `esp_secure_cert`, then the
//! strings `ca_cert` (when there is one), `dev_cert` and `priv_key`, read on
//! the chip with `nvs_get_str`.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{esp_crc32, PemCredentials};
use crate::error::PartitionError;

/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;
/// Bytes in an entry.
pub const ENTRY_SIZE: usize = 32;
/// Entries in a page (after the 32-byte header and the 32-byte bitmap).
pub const ENTRIES_PER_PAGE: usize = 126;
/// The longest namespace or key, in bytes (a NUL ends it in 16).
pub const MAX_NAME_LEN: usize = 15;
/// The longest string the generator writes, NUL included: its entry and 124
/// data entries, so that it ends before the last entry of a fresh page.
pub const MAX_STRING_LEN: usize = 124 * ENTRY_SIZE;
/// The partition size Espressif's tools use for credentials (24 KiB).
pub const DEFAULT_PARTITION_SIZE: usize = 0x6000;
/// The smallest read/write NVS partition: two pages and the spare page.
pub const MIN_PARTITION_SIZE: usize = 0x3000;
/// The namespace `esp_secure_cert_mgr` reads.
pub const DEFAULT_NAMESPACE: &str = "esp_secure_cert";
/// Key of the CA certificate string.
pub const CA_CERT_KEY: &str = "ca_cert";
/// Key of the device certificate string.
pub const DEV_CERT_KEY: &str = "dev_cert";
/// Key of the private key string.
pub const PRIV_KEY_KEY: &str = "priv_key";

const BITMAP_OFFSET: usize = 32;
const FIRST_ENTRY_OFFSET: usize = 64;
const STATE_ACTIVE: u32 = 0xFFFF_FFFE;
const STATE_FULL: u32 = 0xFFFF_FFFC;
const STATE_FREEING: u32 = 0xFFFF_FFF8;
const STATE_UNINITIALIZED: u32 = 0xFFFF_FFFF;
/// Format version 2 (multi-page blobs), as the page header stores it.
const VERSION_2: u8 = 0xFE;
/// Format version 1 (single-page blobs).
const VERSION_1: u8 = 0xFF;
const CHUNK_ANY: u8 = 0xFF;
/// The largest blob chunk the reader accepts in one entry's data (a page's
/// entries less the chunk's own).
const MAX_CHUNK: usize = (ENTRIES_PER_PAGE - 1) * ENTRY_SIZE;

/// An entry's type byte (`ItemType` in `nvs_flash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemType {
    /// `u8`.
    U8,
    /// `i8`.
    I8,
    /// `u16`.
    U16,
    /// `i16`.
    I16,
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `u64`.
    U64,
    /// `i64`.
    I64,
    /// A NUL-terminated string.
    Str,
    /// A version 1 blob (one page).
    Blob,
    /// One chunk of a version 2 blob.
    BlobData,
    /// The index of a version 2 blob.
    BlobIndex,
}

impl ItemType {
    /// The byte stored in the entry.
    pub fn code(self) -> u8 {
        match self {
            Self::U8 => 0x01,
            Self::I8 => 0x11,
            Self::U16 => 0x02,
            Self::I16 => 0x12,
            Self::U32 => 0x04,
            Self::I32 => 0x14,
            Self::U64 => 0x08,
            Self::I64 => 0x18,
            Self::Str => 0x21,
            Self::Blob => 0x41,
            Self::BlobData => 0x42,
            Self::BlobIndex => 0x48,
        }
    }

    /// The type of a stored byte, if it is one.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::U8,
            0x11 => Self::I8,
            0x02 => Self::U16,
            0x12 => Self::I16,
            0x04 => Self::U32,
            0x14 => Self::I32,
            0x08 => Self::U64,
            0x18 => Self::I64,
            0x21 => Self::Str,
            0x41 => Self::Blob,
            0x42 => Self::BlobData,
            0x48 => Self::BlobIndex,
            _ => return None,
        })
    }

    fn is_variable(self) -> bool {
        matches!(self, Self::Str | Self::Blob | Self::BlobData)
    }
}

/// A value read from a partition.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NvsValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// A string, without its NUL. Wiped on drop (it may be a private key).
    Str(Zeroizing<String>),
    /// A blob (its chunks joined). Wiped on drop.
    Blob(Zeroizing<Vec<u8>>),
}

impl NvsValue {
    /// The type its entry is stored as (a blob as version 2 chunks).
    pub fn item_type(&self) -> ItemType {
        match self {
            Self::U8(_) => ItemType::U8,
            Self::I8(_) => ItemType::I8,
            Self::U16(_) => ItemType::U16,
            Self::I16(_) => ItemType::I16,
            Self::U32(_) => ItemType::U32,
            Self::I32(_) => ItemType::I32,
            Self::U64(_) => ItemType::U64,
            Self::I64(_) => ItemType::I64,
            Self::Str(_) => ItemType::Str,
            Self::Blob(_) => ItemType::BlobData,
        }
    }

    /// The value's size in bytes (a string's without its NUL).
    pub fn size(&self) -> usize {
        match self {
            Self::U8(_) | Self::I8(_) => 1,
            Self::U16(_) | Self::I16(_) => 2,
            Self::U32(_) | Self::I32(_) => 4,
            Self::U64(_) | Self::I64(_) => 8,
            Self::Str(s) => s.len(),
            Self::Blob(b) => b.len(),
        }
    }
}

impl std::fmt::Debug for NvsValue {
    // Strings and blobs may be key material: only their length is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::U8(v) => write!(f, "U8({v})"),
            Self::I8(v) => write!(f, "I8({v})"),
            Self::U16(v) => write!(f, "U16({v})"),
            Self::I16(v) => write!(f, "I16({v})"),
            Self::U32(v) => write!(f, "U32({v})"),
            Self::I32(v) => write!(f, "I32({v})"),
            Self::U64(v) => write!(f, "U64({v})"),
            Self::I64(v) => write!(f, "I64({v})"),
            Self::Str(s) => write!(f, "Str({} bytes)", s.len()),
            Self::Blob(b) => write!(f, "Blob({} bytes)", b.len()),
        }
    }
}

/// One key of a parsed partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvsEntry {
    /// The namespace name.
    pub namespace: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: NvsValue,
}

/// A parsed NVS partition: every page header, entry and data CRC checked,
/// namespaces resolved and blob chunks joined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvsPartition {
    entries: Vec<NvsEntry>,
}

impl NvsPartition {
    /// Parses a whole partition image (a multiple of 4096 bytes).
    pub fn parse(bytes: &[u8]) -> Result<Self, PartitionError> {
        if !bytes.len().is_multiple_of(PAGE_SIZE) {
            return Err(PartitionError::Truncated {
                offset: bytes.len() - bytes.len() % PAGE_SIZE,
            });
        }
        let mut raw = Vec::new();
        for (n, page) in bytes.chunks_exact(PAGE_SIZE).enumerate() {
            read_page(page, n * PAGE_SIZE, &mut raw)?;
        }
        assemble(raw)
    }

    /// The keys, in the order their entries (or blob indexes) were found.
    pub fn entries(&self) -> &[NvsEntry] {
        &self.entries
    }

    /// The first value stored under `namespace` and `key`.
    pub fn get(&self, namespace: &str, key: &str) -> Option<&NvsValue> {
        self.entries
            .iter()
            .find(|e| e.namespace == namespace && e.key == key)
            .map(|e| &e.value)
    }

    /// The string stored under `namespace` and `key`, if it is a string.
    pub fn string(&self, namespace: &str, key: &str) -> Option<&str> {
        match self.get(namespace, key)? {
            NvsValue::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The PEM credentials in `namespace`: `dev_cert`, `priv_key` and (if
    /// present) `ca_cert`.
    pub fn credentials(&self, namespace: &str) -> Result<PemCredentials, PartitionError> {
        let device_cert = self
            .string(namespace, DEV_CERT_KEY)
            .ok_or(PartitionError::Missing { what: DEV_CERT_KEY })?;
        let private_key = self
            .string(namespace, PRIV_KEY_KEY)
            .ok_or(PartitionError::Missing { what: PRIV_KEY_KEY })?;
        Ok(PemCredentials {
            device_cert: device_cert.to_string(),
            private_key: Zeroizing::new(private_key.to_string()),
            ca_cert: self
                .string(namespace, CA_CERT_KEY)
                .unwrap_or_default()
                .to_string(),
        })
    }
}

/// Writes an NVS partition as `nvs_partition_gen.py` does (version 2): one
/// call per CSV row, in the same order, gives the same bytes.
#[derive(Debug)]
pub struct NvsWriter {
    size: usize,
    pages: Vec<Page>,
    namespaces: Vec<String>,
    /// Index the next keys are written under (0: no namespace yet).
    namespace: u8,
}

impl NvsWriter {
    /// A writer for a partition of `size` bytes: a multiple of 4096, at least
    /// 0x3000 (the generator makes a smaller one read-only).
    pub fn new(size: usize) -> Result<Self, PartitionError> {
        check_size(size)?;
        Ok(Self {
            size,
            pages: vec![Page::new(0)],
            namespaces: Vec::new(),
            namespace: 0,
        })
    }

    /// Starts (or, if written before, goes back to) namespace `name`: the
    /// keys written next belong to it. (Going back is where we differ from
    /// `nvs_partition_gen` 0.3.0, which writes a CSV's later keys under the
    /// newest namespace whatever the row names; one namespace, as in the
    /// credentials partition, is the same in both.)
    pub fn namespace(&mut self, name: &str) -> Result<(), PartitionError> {
        check_name(name)?;
        if let Some(i) = self.namespaces.iter().position(|n| n == name) {
            self.namespace = index_u8(i + 1)?;
            return Ok(());
        }
        let index = index_u8(self.namespaces.len() + 1)?;
        let mut entry = entry_header(0, ItemType::U8, 1, CHUNK_ANY, name);
        entry[24] = index;
        seal(&mut entry);
        if self.page().entries >= ENTRIES_PER_PAGE {
            self.new_page();
        }
        self.page().push(&entry, &[]);
        self.namespaces.push(name.to_string());
        self.namespace = index;
        Ok(())
    }

    /// Writes a string (the NUL is added) under `key` in the current
    /// namespace (CSV encoding `string`).
    pub fn string(&mut self, key: &str, value: &str) -> Result<(), PartitionError> {
        let ns = self.current_namespace()?;
        check_name(key)?;
        let mut data = Zeroizing::new(Vec::with_capacity(value.len() + 1));
        data.extend_from_slice(value.as_bytes());
        data.push(0);
        if data.len() > MAX_STRING_LEN {
            return Err(PartitionError::ValueTooLong {
                what: "an NVS string (NUL included)",
                len: data.len(),
                max: MAX_STRING_LEN,
            });
        }
        let data_entries = data.len().div_ceil(ENTRY_SIZE);
        // The generator's rule: the string and its entry must end before
        // the page's last entry, else it goes to a new page.
        if self.page().entries + data_entries + 1 >= ENTRIES_PER_PAGE {
            self.new_page();
        }
        let span = span_u8(data_entries + 1)?;
        let mut entry = entry_header(ns, ItemType::Str, span, CHUNK_ANY, key);
        set_data_size_and_crc(&mut entry, &data)?;
        seal(&mut entry);
        self.page().push(&entry, &data);
        Ok(())
    }

    /// Writes a blob under `key` in the current namespace, in chunks across
    /// pages (CSV encodings `hex2bin`, `base64`, `binary`).
    pub fn blob(&mut self, key: &str, value: &[u8]) -> Result<(), PartitionError> {
        let ns = self.current_namespace()?;
        check_name(key)?;
        let total = u32::try_from(value.len()).map_err(|_| PartitionError::ValueTooLong {
            what: "an NVS blob",
            len: value.len(),
            max: u32::MAX as usize,
        })?;
        if self.page().entries >= ENTRIES_PER_PAGE {
            self.new_page();
        }
        // The generator reuses one entry buffer: bytes 26..28 of a chunk
        // entry stay 0xFF.
        let mut entry = entry_header(ns, ItemType::BlobData, 0, CHUNK_ANY, key);
        let mut offset = 0usize;
        let mut chunks = 0u8;
        loop {
            let tailroom = (ENTRIES_PER_PAGE - self.page().entries - 1) * ENTRY_SIZE;
            let len = tailroom.min(value.len() - offset);
            let chunk = &value[offset..offset + len];
            let data_entries = len.div_ceil(ENTRY_SIZE);
            entry[1] = ItemType::BlobData.code();
            entry[2] = span_u8(data_entries + 1)?;
            entry[3] = chunks;
            set_data_size_and_crc(&mut entry, chunk)?;
            seal(&mut entry);
            self.page().push(&entry, chunk);
            chunks = chunks.checked_add(1).filter(|&c| c < CHUNK_ANY).ok_or(
                PartitionError::ValueTooLong {
                    what: "an NVS blob (in chunks)",
                    len: value.len(),
                    max: 254 * MAX_CHUNK,
                },
            )?;
            offset += len;
            let remaining = value.len() - offset;
            if remaining > 0 || tailroom - len < ENTRY_SIZE {
                self.new_page();
            }
            if remaining == 0 {
                break;
            }
        }
        entry[1] = ItemType::BlobIndex.code();
        entry[2] = 1;
        entry[3] = CHUNK_ANY;
        entry[24..32].fill(0xFF);
        entry[24..28].copy_from_slice(&total.to_le_bytes());
        entry[28] = chunks;
        entry[29] = 0; // chunk start
        seal(&mut entry);
        self.page().push(&entry, &[]);
        Ok(())
    }

    /// The whole partition: the written pages, then erased flash.
    pub fn finish(self) -> Result<Zeroizing<Vec<u8>>, PartitionError> {
        // One page stays free for the chip's garbage collector.
        let needed = (self.pages.len() + 1) * PAGE_SIZE;
        if needed > self.size {
            return Err(PartitionError::TooSmall {
                format: "esp-nvs",
                needed,
                size: self.size,
            });
        }
        let mut out = Zeroizing::new(Vec::with_capacity(self.size));
        for page in &self.pages {
            out.extend_from_slice(&page.bytes);
        }
        out.resize(self.size, 0xFF);
        Ok(out)
    }

    fn current_namespace(&self) -> Result<u8, PartitionError> {
        match self.namespace {
            0 => Err(PartitionError::Missing {
                what: "namespace before the first key",
            }),
            n => Ok(n),
        }
    }

    fn page(&mut self) -> &mut Page {
        let n = self.pages.len() - 1;
        &mut self.pages[n]
    }

    /// Marks the current page full and starts the next one.
    fn new_page(&mut self) {
        let page = self.page();
        if page.state() == STATE_ACTIVE {
            page.bytes[..4].copy_from_slice(&STATE_FULL.to_le_bytes());
        }
        // Sequence numbers are page numbers: a partition has far fewer than
        // 2^32 pages.
        let seq = u32::try_from(self.pages.len()).unwrap_or(u32::MAX);
        self.pages.push(Page::new(seq));
    }
}

/// The credentials partition, as `configure_esp_secure_cert.py
/// --secure_cert_type nvs` writes it: `ca_cert` (when there is one),
/// `dev_cert`, `priv_key`, strings in `namespace`.
pub(super) fn encode(
    size: usize,
    namespace: &str,
    creds: &PemCredentials,
) -> Result<Zeroizing<Vec<u8>>, PartitionError> {
    let mut w = NvsWriter::new(size)?;
    w.namespace(namespace)?;
    if !creds.ca_cert.is_empty() {
        w.string(CA_CERT_KEY, &creds.ca_cert)?;
    }
    w.string(DEV_CERT_KEY, &creds.device_cert)?;
    w.string(PRIV_KEY_KEY, &creds.private_key)?;
    w.finish()
}

/// Checks that `size` is a read/write NVS partition size.
pub(super) fn check_size(size: usize) -> Result<(), PartitionError> {
    if size < MIN_PARTITION_SIZE || !size.is_multiple_of(PAGE_SIZE) {
        return Err(PartitionError::BadSize {
            size,
            reason: "an NVS partition is a multiple of 4096 bytes, at least 0x3000",
        });
    }
    Ok(())
}

/// Checks a namespace or key: 1 to 15 printable ASCII characters.
pub fn check_name(name: &str) -> Result<(), PartitionError> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    {
        return Err(PartitionError::BadName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// One page being written.
#[derive(Debug)]
struct Page {
    bytes: Zeroizing<Vec<u8>>,
    /// Entries used.
    entries: usize,
}

impl Page {
    fn new(seq: u32) -> Self {
        let mut bytes = Zeroizing::new(vec![0xFF; PAGE_SIZE]);
        bytes[..4].copy_from_slice(&STATE_ACTIVE.to_le_bytes());
        bytes[4..8].copy_from_slice(&seq.to_le_bytes());
        bytes[8] = VERSION_2;
        let crc = esp_crc32(&bytes[4..28]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        Self { bytes, entries: 0 }
    }

    fn state(&self) -> u32 {
        u32::from_le_bytes([self.bytes[0], self.bytes[1], self.bytes[2], self.bytes[3]])
    }

    /// Writes an entry and its data (in the entries after it) and marks them
    /// written in the bitmap. The callers check that they fit.
    fn push(&mut self, entry: &[u8; ENTRY_SIZE], data: &[u8]) {
        let at = FIRST_ENTRY_OFFSET + self.entries * ENTRY_SIZE;
        self.bytes[at..at + ENTRY_SIZE].copy_from_slice(entry);
        self.bytes[at + ENTRY_SIZE..at + ENTRY_SIZE + data.len()].copy_from_slice(data);
        for _ in 0..1 + data.len().div_ceil(ENTRY_SIZE) {
            let bit = self.entries * 2;
            self.bytes[BITMAP_OFFSET + bit / 8] &= !(1 << (bit % 8));
            self.entries += 1;
        }
    }
}

/// An entry's first 24 bytes; the data bytes are 0xFF.
fn entry_header(ns: u8, t: ItemType, span: u8, chunk: u8, key: &str) -> [u8; ENTRY_SIZE] {
    let mut e = [0xFF; ENTRY_SIZE];
    e[0] = ns;
    e[1] = t.code();
    e[2] = span;
    e[3] = chunk;
    e[8..24].fill(0);
    e[8..8 + key.len()].copy_from_slice(key.as_bytes());
    e
}

/// The data field of a string or blob chunk: 16-bit size, CRC-32 of the data.
fn set_data_size_and_crc(entry: &mut [u8; ENTRY_SIZE], data: &[u8]) -> Result<(), PartitionError> {
    let len = u16::try_from(data.len()).map_err(|_| PartitionError::ValueTooLong {
        what: "an NVS entry's data",
        len: data.len(),
        max: usize::from(u16::MAX),
    })?;
    entry[24..26].copy_from_slice(&len.to_le_bytes());
    entry[28..32].copy_from_slice(&esp_crc32(data).to_le_bytes());
    Ok(())
}

/// Writes the entry CRC (bytes 4..8) over bytes 0..4 and 8..32.
fn seal(entry: &mut [u8; ENTRY_SIZE]) {
    let crc = entry_crc(entry);
    entry[4..8].copy_from_slice(&crc.to_le_bytes());
}

fn entry_crc(entry: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(0xFFFF_FFFF);
    h.update(&entry[0..4]);
    h.update(&entry[8..32]);
    h.finalize()
}

fn index_u8(i: usize) -> Result<u8, PartitionError> {
    u8::try_from(i)
        .ok()
        .filter(|&i| i < 0xFF)
        .ok_or(PartitionError::ValueTooLong {
            what: "the namespace list",
            len: i,
            max: 254,
        })
}

fn span_u8(span: usize) -> Result<u8, PartitionError> {
    u8::try_from(span).map_err(|_| PartitionError::ValueTooLong {
        what: "an NVS entry's span",
        len: span,
        max: ENTRIES_PER_PAGE,
    })
}

/// An entry as found on a page, before namespaces and blobs are resolved.
struct RawItem {
    offset: usize,
    ns: u8,
    item_type: ItemType,
    chunk: u8,
    key: String,
    /// The eight data bytes of the entry.
    field: [u8; 8],
    /// Variable-length data (strings, blob chunks), checked against its CRC.
    data: Zeroizing<Vec<u8>>,
}

/// Reads the written entries of one page.
fn read_page(page: &[u8], base: usize, out: &mut Vec<RawItem>) -> Result<(), PartitionError> {
    let state = u32::from_le_bytes([page[0], page[1], page[2], page[3]]);
    match state {
        STATE_UNINITIALIZED => return Ok(()),
        STATE_ACTIVE | STATE_FULL | STATE_FREEING => {}
        _ => {
            return Err(PartitionError::Malformed {
                offset: base,
                reason: "page state is not active, full or freeing",
            })
        }
    }
    let stored = u32::from_le_bytes([page[28], page[29], page[30], page[31]]);
    let computed = esp_crc32(&page[4..28]);
    if stored != computed {
        return Err(PartitionError::CrcMismatch {
            offset: base,
            stored,
            computed,
        });
    }
    if page[8] != VERSION_2 && page[8] != VERSION_1 {
        return Err(PartitionError::Malformed {
            offset: base,
            reason: "unknown NVS page version",
        });
    }
    let bitmap = &page[BITMAP_OFFSET..BITMAP_OFFSET + 32];
    let entry_state = |i: usize| (bitmap[i * 2 / 8] >> (i * 2 % 8)) & 0b11;
    let mut i = 0usize;
    while i < ENTRIES_PER_PAGE {
        let at = FIRST_ENTRY_OFFSET + i * ENTRY_SIZE;
        let offset = base + at;
        match entry_state(i) {
            0b11 => break,
            0b00 => {
                i += 1;
                continue;
            }
            0b10 => {}
            _ => {
                return Err(PartitionError::Malformed {
                    offset,
                    reason: "entry state in the bitmap is invalid",
                })
            }
        }
        let e = &page[at..at + ENTRY_SIZE];
        let stored = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let computed = entry_crc(e);
        if stored != computed {
            return Err(PartitionError::CrcMismatch {
                offset,
                stored,
                computed,
            });
        }
        let item_type = ItemType::from_code(e[1]).ok_or(PartitionError::Malformed {
            offset,
            reason: "unknown entry type",
        })?;
        let span = usize::from(e[2]);
        if span == 0 || i + span > ENTRIES_PER_PAGE || (!item_type.is_variable() && span != 1) {
            return Err(PartitionError::Malformed {
                offset,
                reason: "entry span does not fit the page or its type",
            });
        }
        let key_bytes = &e[8..24];
        let key_end = key_bytes.iter().position(|&b| b == 0).unwrap_or(16);
        let key = std::str::from_utf8(&key_bytes[..key_end])
            .map_err(|_| PartitionError::Malformed {
                offset,
                reason: "key is not UTF-8",
            })?
            .to_string();
        let mut field = [0u8; 8];
        field.copy_from_slice(&e[24..32]);
        let mut data = Zeroizing::new(Vec::new());
        if item_type.is_variable() {
            let len = usize::from(u16::from_le_bytes([e[24], e[25]]));
            if len > (span - 1) * ENTRY_SIZE {
                return Err(PartitionError::Malformed {
                    offset,
                    reason: "data size exceeds the entry's span",
                });
            }
            data.extend_from_slice(&page[at + ENTRY_SIZE..at + ENTRY_SIZE + len]);
            let stored = u32::from_le_bytes([e[28], e[29], e[30], e[31]]);
            let computed = esp_crc32(&data);
            if stored != computed {
                return Err(PartitionError::CrcMismatch {
                    offset,
                    stored,
                    computed,
                });
            }
        }
        out.push(RawItem {
            offset,
            ns: e[0],
            item_type,
            chunk: e[3],
            key,
            field,
            data,
        });
        i += span;
    }
    Ok(())
}

/// Resolves namespaces and joins blob chunks.
fn assemble(raw: Vec<RawItem>) -> Result<NvsPartition, PartitionError> {
    let mut names: BTreeMap<u8, String> = BTreeMap::new();
    for item in raw.iter().filter(|r| r.ns == 0) {
        if item.item_type != ItemType::U8 || item.field[0] == 0 || item.field[0] == 0xFF {
            return Err(PartitionError::Malformed {
                offset: item.offset,
                reason: "namespace entry is not a u8 index from 1 to 254",
            });
        }
        names.insert(item.field[0], item.key.clone());
    }
    let mut chunks: BTreeMap<(u8, &str, u8), &RawItem> = BTreeMap::new();
    for item in raw.iter().filter(|r| r.item_type == ItemType::BlobData) {
        chunks
            .entry((item.ns, &item.key, item.chunk))
            .or_insert(item);
    }
    let mut entries = Vec::new();
    for item in raw.iter().filter(|r| r.ns != 0) {
        let f = item.field;
        let value = match item.item_type {
            ItemType::U8 => NvsValue::U8(f[0]),
            ItemType::I8 => NvsValue::I8(i8::from_le_bytes([f[0]])),
            ItemType::U16 => NvsValue::U16(u16::from_le_bytes([f[0], f[1]])),
            ItemType::I16 => NvsValue::I16(i16::from_le_bytes([f[0], f[1]])),
            ItemType::U32 => NvsValue::U32(u32::from_le_bytes([f[0], f[1], f[2], f[3]])),
            ItemType::I32 => NvsValue::I32(i32::from_le_bytes([f[0], f[1], f[2], f[3]])),
            ItemType::U64 => NvsValue::U64(u64::from_le_bytes(f)),
            ItemType::I64 => NvsValue::I64(i64::from_le_bytes(f)),
            ItemType::Str => {
                let text = item
                    .data
                    .strip_suffix(&[0])
                    .ok_or(PartitionError::Malformed {
                        offset: item.offset,
                        reason: "string is not NUL-terminated",
                    })?;
                let text = std::str::from_utf8(text).map_err(|_| PartitionError::Malformed {
                    offset: item.offset,
                    reason: "string is not UTF-8",
                })?;
                NvsValue::Str(Zeroizing::new(text.to_string()))
            }
            ItemType::Blob => NvsValue::Blob(item.data.clone()),
            // Chunks are read through their index; a chunk without one is
            // left over from an interrupted write, which the chip ignores.
            ItemType::BlobData => continue,
            ItemType::BlobIndex => {
                let size = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize;
                let (count, start) = (f[4], f[5]);
                let mut blob = Zeroizing::new(Vec::new());
                for c in 0..count {
                    let n = start.checked_add(c).ok_or(PartitionError::Malformed {
                        offset: item.offset,
                        reason: "blob index chunk range overflows",
                    })?;
                    let chunk = chunks.get(&(item.ns, item.key.as_str(), n)).ok_or(
                        PartitionError::Malformed {
                            offset: item.offset,
                            reason: "blob index names a chunk that is not there",
                        },
                    )?;
                    blob.extend_from_slice(&chunk.data);
                }
                if blob.len() != size {
                    return Err(PartitionError::Malformed {
                        offset: item.offset,
                        reason: "blob chunks do not add up to the index's size",
                    });
                }
                NvsValue::Blob(blob)
            }
        };
        let namespace = names
            .get(&item.ns)
            .ok_or(PartitionError::Malformed {
                offset: item.offset,
                reason: "entry in a namespace that has no namespace entry",
            })?
            .clone();
        entries.push(NvsEntry {
            namespace,
            key: item.key.clone(),
            value,
        });
    }
    Ok(NvsPartition { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PemCredentials {
        PemCredentials {
            device_cert: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
            private_key: Zeroizing::new(
                "-----BEGIN PRIVATE KEY-----\nBBBB\n-----END PRIVATE KEY-----\n".into(),
            ),
            ca_cert: "-----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n".into(),
        }
    }

    #[test]
    fn credentials_round_trip_and_layout() {
        let bytes = encode(DEFAULT_PARTITION_SIZE, DEFAULT_NAMESPACE, &sample()).unwrap();
        assert_eq!(bytes.len(), DEFAULT_PARTITION_SIZE);
        // Page 0: active, sequence 0, version 2, header CRC.
        assert_eq!(&bytes[..4], &STATE_ACTIVE.to_le_bytes());
        assert_eq!(&bytes[4..8], &[0, 0, 0, 0]);
        assert_eq!(bytes[8], VERSION_2);
        assert_eq!(
            u32::from_le_bytes(bytes[28..32].try_into().unwrap()),
            esp_crc32(&bytes[4..28])
        );
        // The namespace entry first: namespace 0, u8, index 1.
        let ns = &bytes[64..96];
        assert_eq!(&ns[..4], &[0, 0x01, 1, 0xFF]);
        assert_eq!(&ns[8..24], b"esp_secure_cert\0");
        assert_eq!(ns[24], 1);
        // Then ca_cert: a string in namespace 1.
        let ca = &bytes[96..128];
        assert_eq!(&ca[..2], &[1, 0x21]);
        assert_eq!(&ca[8..16], b"ca_cert\0");
        // The rest of the partition is erased flash.
        assert!(bytes[PAGE_SIZE..].iter().all(|&b| b == 0xFF));
        let p = NvsPartition::parse(&bytes).unwrap();
        let keys: Vec<&str> = p.entries().iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["ca_cert", "dev_cert", "priv_key"]);
        assert_eq!(p.credentials(DEFAULT_NAMESPACE).unwrap(), sample());
    }

    #[test]
    fn bitmap_marks_each_entry_written() {
        let creds = sample();
        let bytes = encode(0x3000, "creds", &creds).unwrap();
        let string_entries = |s: &str| 1 + (s.len() + 1).div_ceil(ENTRY_SIZE);
        let used = 1
            + string_entries(&creds.ca_cert)
            + string_entries(&creds.device_cert)
            + string_entries(&creds.private_key);
        let state = |i: usize| (bytes[BITMAP_OFFSET + i * 2 / 8] >> (i * 2 % 8)) & 0b11;
        assert!((0..used).all(|i| state(i) == 0b10));
        assert!((used..ENTRIES_PER_PAGE).all(|i| state(i) == 0b11));
    }

    #[test]
    fn strings_that_do_not_fit_start_a_new_page_and_mark_the_old_one_full() {
        let mut w = NvsWriter::new(0x6000).unwrap();
        w.namespace("ns").unwrap();
        let long = "x".repeat(3000); // 94 data entries
        w.string("a", &long).unwrap();
        w.string("b", &long).unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(&bytes[..4], &STATE_FULL.to_le_bytes());
        assert_eq!(
            &bytes[PAGE_SIZE..PAGE_SIZE + 4],
            &STATE_ACTIVE.to_le_bytes()
        );
        assert_eq!(&bytes[PAGE_SIZE + 4..PAGE_SIZE + 8], &[1, 0, 0, 0]);
        let p = NvsPartition::parse(&bytes).unwrap();
        assert_eq!(p.string("ns", "b"), Some(long.as_str()));
    }

    #[test]
    fn multi_page_blob_round_trips() {
        let mut w = NvsWriter::new(0x6000).unwrap();
        w.namespace("ns").unwrap();
        let blob: Vec<u8> = (0..9000u32).map(|i| (i * 31 % 251) as u8).collect();
        w.blob("big", &blob).unwrap();
        w.blob("empty", &[]).unwrap();
        let bytes = w.finish().unwrap();
        let p = NvsPartition::parse(&bytes).unwrap();
        assert_eq!(
            p.get("ns", "big"),
            Some(&NvsValue::Blob(Zeroizing::new(blob)))
        );
        assert_eq!(
            p.get("ns", "empty"),
            Some(&NvsValue::Blob(Zeroizing::new(Vec::new())))
        );
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(matches!(
            encode(0x6000, "a_namespace_too_long", &sample()),
            Err(PartitionError::BadName { .. })
        ));
        assert!(matches!(
            encode(0x6000, "", &sample()),
            Err(PartitionError::BadName { .. })
        ));
        assert!(matches!(
            encode(0x2000, "ns", &sample()),
            Err(PartitionError::BadSize { .. })
        ));
        assert!(matches!(
            encode(0x6100, "ns", &sample()),
            Err(PartitionError::BadSize { .. })
        ));
        let mut big = sample();
        big.device_cert = "x".repeat(MAX_STRING_LEN);
        assert!(matches!(
            encode(0x6000, "ns", &big),
            Err(PartitionError::ValueTooLong { .. })
        ));
        // Three strings of most of a page each need three pages and the spare.
        let mut w = NvsWriter::new(0x3000).unwrap();
        w.namespace("ns").unwrap();
        for k in ["a", "b", "c"] {
            w.string(k, &"y".repeat(3000)).unwrap();
        }
        assert!(matches!(
            w.finish(),
            Err(PartitionError::TooSmall { needed: 0x4000, .. })
        ));
        let mut w = NvsWriter::new(0x3000).unwrap();
        assert!(matches!(
            w.string("k", "v"),
            Err(PartitionError::Missing { .. })
        ));
    }

    #[test]
    fn corruption_is_detected() {
        let good = encode(0x3000, "ns", &sample()).unwrap();
        let mut b = good.clone();
        b[150] ^= 1; // inside ca_cert's data
        assert!(matches!(
            NvsPartition::parse(&b),
            Err(PartitionError::CrcMismatch { .. })
        ));
        let mut b = good.clone();
        b[100] ^= 1; // ca_cert's entry
        assert!(matches!(
            NvsPartition::parse(&b),
            Err(PartitionError::CrcMismatch { offset: 96, .. })
        ));
        let mut b = good.clone();
        b[5] ^= 1; // page header
        assert!(matches!(
            NvsPartition::parse(&b),
            Err(PartitionError::CrcMismatch { offset: 0, .. })
        ));
        assert!(matches!(
            NvsPartition::parse(&good[..100]),
            Err(PartitionError::Truncated { offset: 0 })
        ));
        assert!(NvsPartition::parse(&[0xFF; PAGE_SIZE])
            .unwrap()
            .entries()
            .is_empty());
    }
}
