//! The credential slot format v1: header constants, the record types, and a
//! reader that turns untrusted slot bytes into a checked [`Slot`].

use std::fmt;

use crate::error::SlotError;

/// The 16 ASCII bytes every slot starts with.
pub const MAGIC: [u8; 16] = *b"IDMINT-CRED-SLOT";
/// Size of the slot header in bytes; the payload starts here.
pub const HEADER_LEN: usize = 32;
/// Size of a record header (`type: u16`, `length: u32`).
pub const RECORD_HEADER_LEN: usize = 6;
/// Version field of an empty slot in a golden image.
pub const VERSION_EMPTY: u32 = 0;
/// Version field of a slot that holds credentials in format v1.
pub const VERSION_1: u32 = 1;

const CAPACITY_AT: usize = 16;
const VERSION_AT: usize = 20;
const PAYLOAD_LEN_AT: usize = 24;
const CRC_AT: usize = 28;

/// The record types of format v1. Readers skip types they do not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u16)]
pub enum RecordType {
    /// Device id, UTF-8.
    DeviceId = 1,
    /// Leaf certificate, DER.
    Certificate = 2,
    /// Chain certificate, DER; repeatable, the leaf's issuer first.
    ChainCertificate = 3,
    /// Private key, PKCS#8 DER.
    PrivateKey = 4,
    /// Endpoint URL, UTF-8.
    Endpoint = 5,
    /// Thing name, UTF-8.
    ThingName = 6,
    /// CA trust anchor for the server, DER; repeatable.
    TrustAnchor = 7,
}

impl RecordType {
    /// The type for a wire value, or `None` for a type this version does not know.
    pub fn from_u16(value: u16) -> Option<Self> {
        Some(match value {
            1 => Self::DeviceId,
            2 => Self::Certificate,
            3 => Self::ChainCertificate,
            4 => Self::PrivateKey,
            5 => Self::Endpoint,
            6 => Self::ThingName,
            7 => Self::TrustAnchor,
            _ => return None,
        })
    }

    /// The wire value of this type.
    pub fn as_u16(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::DeviceId => "device id",
            Self::Certificate => "leaf certificate",
            Self::ChainCertificate => "chain certificate",
            Self::PrivateKey => "private key",
            Self::Endpoint => "endpoint",
            Self::ThingName => "thing name",
            Self::TrustAnchor => "trust anchor",
        };
        write!(f, "{name} (type {})", self.as_u16())
    }
}

/// One record of a slot's payload. The type is kept as the raw wire value so
/// records of types unknown to this version can still be seen.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The wire type.
    pub tag: u16,
    /// The value bytes.
    pub value: &'a [u8],
}

impl Record<'_> {
    /// The record's type, or `None` if this version does not know it.
    pub fn record_type(&self) -> Option<RecordType> {
        RecordType::from_u16(self.tag)
    }
}

impl fmt::Debug for Record<'_> {
    // Never print values: one of them is a private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("tag", &self.tag)
            .field("len", &self.value.len())
            .finish()
    }
}

/// A checked, written credential slot: magic, capacity, version 1, payload
/// length, CRC and record framing have all been verified.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Slot<'a> {
    capacity: u32,
    payload: &'a [u8],
}

impl fmt::Debug for Slot<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("capacity", &self.capacity)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Parse a written slot that starts at `bytes[0]`.
///
/// `bytes` may extend past the slot; only `capacity` bytes are looked at.
/// Checks magic, capacity bounds, version (1), payload length, CRC-32 and that
/// every record lies within the payload. Never panics.
pub fn parse_slot(bytes: &[u8]) -> Result<Slot<'_>, SlotError> {
    let header = Header::parse(bytes)?;
    match header.version {
        VERSION_1 => {}
        VERSION_EMPTY => return Err(SlotError::Empty),
        version => return Err(SlotError::UnsupportedVersion { version }),
    }
    let start = HEADER_LEN;
    let payload = bytes
        .get(start..start + header.payload_len as usize)
        .ok_or(SlotError::Truncated { len: bytes.len() })?;
    let actual = crc32(payload);
    if actual != header.crc {
        return Err(SlotError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    let slot = Slot {
        capacity: header.capacity,
        payload,
    };
    // Check the framing once so `records()` can be infallible.
    let mut records = RecordIter {
        rest: payload,
        offset: 0,
    };
    for record in &mut records {
        record?;
    }
    Ok(slot)
}

/// Find and parse the written slot in a memory region, the way the C reader
/// does: the first occurrence of [`MAGIC`] followed by a plausible header
/// (capacity inside the region, version 0 or 1) is the slot.
///
/// Returns the slot's offset in `region` and the parsed slot. If no magic is
/// followed by a plausible header, the error is that of the first rejected
/// header, or [`SlotError::BadMagic`] if there is no magic at all.
pub fn find_slot(region: &[u8]) -> Result<(usize, Slot<'_>), SlotError> {
    let mut first_rejection = None;
    for offset in magic_offsets(region) {
        let rest = &region[offset..];
        match Header::parse(rest).and_then(Header::check_version) {
            Ok(_) => return parse_slot(rest).map(|slot| (offset, slot)),
            Err(reason) => {
                first_rejection.get_or_insert(reason);
            }
        }
    }
    Err(first_rejection.unwrap_or(SlotError::BadMagic))
}

impl<'a> Slot<'a> {
    /// Total size of the slot, header included.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The payload: the records, without the header or the zero padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// All records in order, including types this version does not know.
    pub fn records(&self) -> impl Iterator<Item = Record<'a>> + 'a {
        // Framing was checked in `parse_slot`, so no item is an error.
        RecordIter {
            rest: self.payload,
            offset: 0,
        }
        .map_while(Result::ok)
    }

    /// The values of all records of one type, in order.
    pub fn values(&self, record_type: RecordType) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.records()
            .filter(move |r| r.tag == record_type.as_u16())
            .map(|r| r.value)
    }

    /// The value of the only record of a type that may appear once: `Ok(None)`
    /// if absent, an error if repeated.
    pub fn single(&self, record_type: RecordType) -> Result<Option<&'a [u8]>, SlotError> {
        let mut values = self.values(record_type);
        let first = values.next();
        if values.next().is_some() {
            return Err(SlotError::DuplicateRecord { record_type });
        }
        Ok(first)
    }

    /// The device id (type 1), if present and unique.
    pub fn device_id(&self) -> Result<Option<&'a str>, SlotError> {
        self.text(RecordType::DeviceId)
    }

    /// The thing name (type 6), if present and unique.
    pub fn thing_name(&self) -> Result<Option<&'a str>, SlotError> {
        self.text(RecordType::ThingName)
    }

    /// The endpoint URL (type 5), if present and unique.
    pub fn endpoint(&self) -> Result<Option<&'a str>, SlotError> {
        self.text(RecordType::Endpoint)
    }

    /// The leaf certificate DER (type 2), if present and unique.
    pub fn certificate(&self) -> Result<Option<&'a [u8]>, SlotError> {
        self.single(RecordType::Certificate)
    }

    /// The PKCS#8 DER private key (type 4), if present and unique.
    pub fn private_key(&self) -> Result<Option<&'a [u8]>, SlotError> {
        self.single(RecordType::PrivateKey)
    }

    fn text(&self, record_type: RecordType) -> Result<Option<&'a str>, SlotError> {
        self.single(record_type)?
            .map(|v| std::str::from_utf8(v).map_err(|_| SlotError::InvalidUtf8 { record_type }))
            .transpose()
    }
}

/// The fixed 32-byte header, parsed but not yet judged by version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) capacity: u32,
    pub(crate) version: u32,
    pub(crate) payload_len: u32,
    pub(crate) crc: u32,
}

impl Header {
    /// Parse the header at `bytes[0]` and check magic, capacity bounds
    /// (against `bytes.len()`) and payload length.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, SlotError> {
        let head: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(SlotError::Truncated { len: bytes.len() })?;
        if head[..16] != MAGIC {
            return Err(SlotError::BadMagic);
        }
        let header = Self {
            capacity: le32(head, CAPACITY_AT),
            version: le32(head, VERSION_AT),
            payload_len: le32(head, PAYLOAD_LEN_AT),
            crc: le32(head, CRC_AT),
        };
        if (header.capacity as usize) < HEADER_LEN {
            return Err(SlotError::CapacityTooSmall {
                capacity: header.capacity,
            });
        }
        if header.capacity as usize > bytes.len() {
            return Err(SlotError::CapacityExceedsInput {
                capacity: header.capacity,
                available: bytes.len(),
            });
        }
        let room = header.capacity - HEADER_LEN as u32;
        if header.payload_len > room {
            return Err(SlotError::PayloadTooLong {
                payload_len: header.payload_len,
                room,
            });
        }
        Ok(header)
    }

    /// Reject versions other than empty (0) and v1.
    pub(crate) fn check_version(self) -> Result<Self, SlotError> {
        match self.version {
            VERSION_EMPTY | VERSION_1 => Ok(self),
            version => Err(SlotError::UnsupportedVersion { version }),
        }
    }

    /// The 32 header bytes.
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..16].copy_from_slice(&MAGIC);
        out[CAPACITY_AT..][..4].copy_from_slice(&self.capacity.to_le_bytes());
        out[VERSION_AT..][..4].copy_from_slice(&self.version.to_le_bytes());
        out[PAYLOAD_LEN_AT..][..4].copy_from_slice(&self.payload_len.to_le_bytes());
        out[CRC_AT..][..4].copy_from_slice(&self.crc.to_le_bytes());
        out
    }
}

/// Offsets of every occurrence of [`MAGIC`] in `region`, in order.
pub(crate) fn magic_offsets(region: &[u8]) -> impl Iterator<Item = usize> + '_ {
    region
        .windows(MAGIC.len())
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .map(|(i, _)| i)
}

/// CRC-32 as in IEEE 802.3 and zlib's `crc32` (reflected polynomial
/// 0xEDB88320, initial value and final XOR 0xFFFFFFFF).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

fn le32(bytes: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Walks the records of a payload, reporting the first framing error.
struct RecordIter<'a> {
    rest: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, SlotError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let truncated = SlotError::TruncatedRecord {
            offset: self.offset,
        };
        let parsed = match self.rest {
            [t0, t1, l0, l1, l2, l3, tail @ ..] => {
                let tag = u16::from_le_bytes([*t0, *t1]);
                let len = u32::from_le_bytes([*l0, *l1, *l2, *l3]) as usize;
                (len <= tail.len()).then(|| (tag, tail.split_at(len)))
            }
            _ => None,
        };
        match parsed {
            Some((tag, (value, rest))) => {
                self.rest = rest;
                self.offset += RECORD_HEADER_LEN + value.len();
                Some(Ok(Record { tag, value }))
            }
            None => {
                self.rest = &[];
                Some(Err(truncated))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    /// A written slot with the given payload, its header fields overridable.
    fn slot_with(payload: &[u8], capacity: usize) -> Vec<u8> {
        let header = Header {
            capacity: capacity as u32,
            version: VERSION_1,
            payload_len: payload.len() as u32,
            crc: crc32(payload),
        };
        let mut out = header.to_bytes().to_vec();
        out.extend_from_slice(payload);
        out.resize(capacity, 0);
        out
    }

    fn record(tag: u16, value: &[u8]) -> Vec<u8> {
        let mut out = tag.to_le_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
        out
    }

    fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
        bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    #[test]
    fn crc32_matches_zlib() {
        // Python: zlib.crc32(b"123456789") == 0xCBF43926
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Python: zlib.crc32(b"The quick brown fox jumps over the lazy dog") == 0x414FA339
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn header_layout_is_little_endian_at_fixed_offsets() {
        let bytes = Header {
            capacity: 0x0102_0304,
            version: 1,
            payload_len: 0x0A0B_0C0D,
            crc: 0xCBF4_3926,
        }
        .to_bytes();
        assert_eq!(&bytes[..16], b"IDMINT-CRED-SLOT");
        assert_eq!(bytes[16..20], [4, 3, 2, 1]);
        assert_eq!(bytes[20..24], [1, 0, 0, 0]);
        assert_eq!(bytes[24..28], [0x0D, 0x0C, 0x0B, 0x0A]);
        assert_eq!(bytes[28..32], [0x26, 0x39, 0xF4, 0xCB]);
    }

    #[test]
    fn parses_records_and_skips_unknown_types() {
        let mut payload = record(1, b"dev-1");
        payload.extend(record(0x7777, b"from the future"));
        payload.extend(record(3, b"chain-a"));
        payload.extend(record(3, b"chain-b"));
        payload.extend(record(6, b""));
        let bytes = slot_with(&payload, 256);
        let slot = parse_slot(&bytes).unwrap();
        assert_eq!(slot.capacity(), 256);
        assert_eq!(slot.payload(), &payload[..]);
        let tags: Vec<u16> = slot.records().map(|r| r.tag).collect();
        assert_eq!(tags, [1, 0x7777, 3, 3, 6]);
        assert_eq!(slot.records().nth(1).unwrap().record_type(), None);
        assert_eq!(slot.device_id().unwrap(), Some("dev-1"));
        assert_eq!(slot.thing_name().unwrap(), Some(""));
        assert_eq!(slot.endpoint().unwrap(), None);
        let chain: Vec<&[u8]> = slot.values(RecordType::ChainCertificate).collect();
        assert_eq!(chain, [&b"chain-a"[..], &b"chain-b"[..]]);
    }

    #[test]
    fn input_may_extend_past_the_slot() {
        let mut bytes = slot_with(&record(1, b"x"), 64);
        bytes.extend_from_slice(&[0xFF; 100]);
        assert_eq!(parse_slot(&bytes).unwrap().capacity(), 64);
    }

    #[test]
    fn rejects_short_input() {
        assert_eq!(parse_slot(&MAGIC), Err(SlotError::Truncated { len: 16 }));
        assert_eq!(parse_slot(&[]), Err(SlotError::Truncated { len: 0 }));
    }

    #[test]
    fn rejects_bad_magic() {
        let mut bytes = slot_with(&[], 64);
        bytes[0] = b'i';
        assert_eq!(parse_slot(&bytes), Err(SlotError::BadMagic));
    }

    #[test]
    fn rejects_capacity_out_of_bounds() {
        let mut bytes = slot_with(&[], 64);
        set_u32(&mut bytes, 16, 31);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::CapacityTooSmall { capacity: 31 })
        );
        set_u32(&mut bytes, 16, 65);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::CapacityExceedsInput {
                capacity: 65,
                available: 64
            })
        );
        // A truncated slot: header intact, tail missing.
        let bytes = slot_with(&record(1, b"abc"), 64);
        assert!(matches!(
            parse_slot(&bytes[..40]),
            Err(SlotError::CapacityExceedsInput {
                capacity: 64,
                available: 40
            })
        ));
    }

    #[test]
    fn rejects_empty_and_unknown_versions() {
        let mut bytes = slot_with(&[], 64);
        set_u32(&mut bytes, 20, 0);
        assert_eq!(parse_slot(&bytes), Err(SlotError::Empty));
        set_u32(&mut bytes, 20, 2);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::UnsupportedVersion { version: 2 })
        );
    }

    #[test]
    fn rejects_payload_longer_than_capacity() {
        let mut bytes = slot_with(&[], 64);
        set_u32(&mut bytes, 24, 33);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::PayloadTooLong {
                payload_len: 33,
                room: 32
            })
        );
        set_u32(&mut bytes, 24, u32::MAX);
        assert!(matches!(
            parse_slot(&bytes),
            Err(SlotError::PayloadTooLong { .. })
        ));
    }

    #[test]
    fn rejects_crc_mismatch() {
        let mut bytes = slot_with(&record(1, b"dev"), 64);
        bytes[HEADER_LEN + 6] ^= 0x01;
        let expected = crc32(&record(1, b"dev"));
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::CrcMismatch {
                expected,
                actual: crc32(&bytes[HEADER_LEN..HEADER_LEN + 9]),
            })
        );
    }

    #[test]
    fn rejects_truncated_records() {
        // A record whose length runs past the payload.
        let mut payload = record(1, b"ok");
        payload.extend(record(2, b"abcdef"));
        payload.truncate(payload.len() - 1);
        let bytes = slot_with(&payload, 128);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::TruncatedRecord { offset: 8 })
        );
        // A partial record header.
        let bytes = slot_with(&[1, 0, 0], 64);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::TruncatedRecord { offset: 0 })
        );
        // A length near u32::MAX must not overflow.
        let mut payload = 2u16.to_le_bytes().to_vec();
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        let bytes = slot_with(&payload, 64);
        assert_eq!(
            parse_slot(&bytes),
            Err(SlotError::TruncatedRecord { offset: 0 })
        );
    }

    #[test]
    fn typed_accessors_reject_duplicates_and_bad_utf8() {
        let mut payload = record(1, b"a");
        payload.extend(record(1, b"b"));
        payload.extend(record(5, &[0xFF, 0xFE]));
        let bytes = slot_with(&payload, 128);
        let slot = parse_slot(&bytes).unwrap();
        assert_eq!(
            slot.device_id(),
            Err(SlotError::DuplicateRecord {
                record_type: RecordType::DeviceId
            })
        );
        assert_eq!(
            slot.endpoint(),
            Err(SlotError::InvalidUtf8 {
                record_type: RecordType::Endpoint
            })
        );
    }

    #[test]
    fn find_slot_skips_stray_magic() {
        let mut region = b"some code IDMINT-CRED-SLOT\0\xff\xff\xff\xff\xff\xff\xff more".to_vec();
        let at = region.len();
        region.extend(slot_with(&record(1, b"dev"), 64));
        let (offset, slot) = find_slot(&region).unwrap();
        assert_eq!(offset, at);
        assert_eq!(slot.device_id().unwrap(), Some("dev"));
        assert_eq!(find_slot(b"nothing here"), Err(SlotError::BadMagic));
        assert!(matches!(
            find_slot(&region[..at + 40]),
            Err(SlotError::CapacityExceedsInput { .. })
        ));
    }

    #[test]
    fn record_types_round_trip() {
        for tag in 1..=7 {
            assert_eq!(RecordType::from_u16(tag).unwrap().as_u16(), tag);
        }
        assert_eq!(RecordType::from_u16(0), None);
        assert_eq!(RecordType::from_u16(8), None);
        assert_eq!(RecordType::PrivateKey.to_string(), "private key (type 4)");
    }

    #[test]
    fn debug_output_never_shows_values() {
        let bytes = slot_with(&record(4, b"SECRETKEY"), 64);
        let slot = parse_slot(&bytes).unwrap();
        let shown = format!("{slot:?} {:?}", slot.records().collect::<Vec<_>>());
        assert!(!shown.contains("SECRETKEY") && !shown.contains("83, 69, 67"));
    }
}
