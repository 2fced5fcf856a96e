//! The credentials of one device and their encoding into a slot.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::SlotError;
use crate::slot::{crc32, Header, RecordType, Slot, HEADER_LEN, RECORD_HEADER_LEN, VERSION_1};

/// Everything one device needs to identify itself, as written into its slot.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Device id (record type 1).
    pub device_id: String,
    /// Thing name in the registry (record type 6).
    pub thing_name: String,
    /// Leaf certificate, DER (record type 2).
    pub certificate: Vec<u8>,
    /// Chain certificates, DER, the leaf's issuer first (record type 3).
    pub chain: Vec<Vec<u8>>,
    /// Private key, PKCS#8 DER (record type 4). Wiped from memory on drop.
    pub private_key: Zeroizing<Vec<u8>>,
    /// Endpoint URL the device connects to (record type 5).
    pub endpoint: Option<String>,
    /// CA certificates, DER, the device trusts for its server (record type 7).
    pub trust_anchors: Vec<Vec<u8>>,
}

impl fmt::Debug for Credentials {
    // The private key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("device_id", &self.device_id)
            .field("thing_name", &self.thing_name)
            .field("certificate_len", &self.certificate.len())
            .field("chain_len", &self.chain.len())
            .field("private_key", &"<redacted>")
            .field("endpoint", &self.endpoint)
            .field("trust_anchors_len", &self.trust_anchors.len())
            .finish()
    }
}

impl Credentials {
    /// Read the credentials out of a parsed slot.
    ///
    /// Device id, thing name, leaf certificate and private key are required
    /// and may appear once; the endpoint may appear at most once; unknown
    /// record types are skipped.
    pub fn from_slot(slot: &Slot<'_>) -> Result<Self, SlotError> {
        Ok(Self {
            device_id: required(RecordType::DeviceId, slot.device_id()?)?.to_owned(),
            thing_name: required(RecordType::ThingName, slot.thing_name()?)?.to_owned(),
            certificate: required(RecordType::Certificate, slot.certificate()?)?.to_vec(),
            chain: slot
                .values(RecordType::ChainCertificate)
                .map(<[u8]>::to_vec)
                .collect(),
            private_key: Zeroizing::new(
                required(RecordType::PrivateKey, slot.private_key()?)?.to_vec(),
            ),
            endpoint: slot.endpoint()?.map(str::to_owned),
            trust_anchors: slot
                .values(RecordType::TrustAnchor)
                .map(<[u8]>::to_vec)
                .collect(),
        })
    }

    /// The records in slot order: device id, leaf, chain (issuer first),
    /// key, endpoint, thing name, trust anchors.
    fn records(&self) -> impl Iterator<Item = (RecordType, &[u8])> {
        fn one(t: RecordType, v: &[u8]) -> std::iter::Once<(RecordType, &[u8])> {
            std::iter::once((t, v))
        }
        one(RecordType::DeviceId, self.device_id.as_bytes())
            .chain(one(RecordType::Certificate, &self.certificate))
            .chain(
                self.chain
                    .iter()
                    .map(|c| (RecordType::ChainCertificate, c.as_slice())),
            )
            .chain(one(RecordType::PrivateKey, &self.private_key))
            .chain(
                self.endpoint
                    .iter()
                    .map(|e| (RecordType::Endpoint, e.as_bytes())),
            )
            .chain(one(RecordType::ThingName, self.thing_name.as_bytes()))
            .chain(
                self.trust_anchors
                    .iter()
                    .map(|c| (RecordType::TrustAnchor, c.as_slice())),
            )
    }
}

/// A required record's value, or the error naming it.
fn required<T>(record_type: RecordType, value: Option<T>) -> Result<T, SlotError> {
    value.ok_or(SlotError::MissingRecord { record_type })
}

/// The smallest slot capacity, header included, that holds `creds`.
///
/// Cheap: sums lengths, encodes nothing.
pub fn required_capacity(creds: &Credentials) -> usize {
    HEADER_LEN
        + creds
            .records()
            .map(|(_, v)| RECORD_HEADER_LEN + v.len())
            .sum::<usize>()
}

/// Encode `creds` as a written (version 1) slot of exactly `capacity` bytes:
/// header, records, then zero padding.
///
/// The result holds the private key, so it is wiped from memory on drop.
pub fn encode_slot(capacity: usize, creds: &Credentials) -> Result<Zeroizing<Vec<u8>>, SlotError> {
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    encode_slot_into(capacity, creds, &mut out)?;
    Ok(out)
}

/// Like [`encode_slot`], but reuses `out` (cleared first) to avoid an
/// allocation per device. On error `out` is left empty.
pub fn encode_slot_into(
    capacity: usize,
    creds: &Credentials,
    out: &mut Vec<u8>,
) -> Result<(), SlotError> {
    // Overwrite the previous device's key before reuse shrinks the length.
    zeroize::Zeroize::zeroize(&mut *out);
    let capacity_field =
        u32::try_from(capacity).map_err(|_| SlotError::CapacityTooLarge { capacity })?;
    let needed = required_capacity(creds);
    if needed > capacity {
        return Err(SlotError::SlotTooSmall { needed, capacity });
    }
    out.reserve(capacity);
    out.resize(HEADER_LEN, 0);
    for (record_type, value) in creds.records() {
        // Cannot truncate: `value.len() < needed <= capacity <= u32::MAX`.
        let len = value.len() as u32;
        out.extend_from_slice(&record_type.as_u16().to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(value);
    }
    let payload = &out[HEADER_LEN..];
    let header = Header {
        capacity: capacity_field,
        version: VERSION_1,
        // `needed <= capacity <= u32::MAX`, so the payload length fits.
        payload_len: payload.len() as u32,
        crc: crc32(payload),
    };
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    out.resize(capacity, 0);
    Ok(())
}

/// The 32-byte header of an empty slot (version 0) of `capacity` bytes, as a
/// golden image carries it. Useful to build golden images and test fixtures.
pub fn empty_slot_header(capacity: u32) -> [u8; HEADER_LEN] {
    Header {
        capacity,
        version: crate::slot::VERSION_EMPTY,
        payload_len: 0,
        crc: 0,
    }
    .to_bytes()
}
