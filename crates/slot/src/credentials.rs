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
    let mut out = Zeroizing::new(Vec::new());
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::slot::parse_slot;

    fn sample() -> Credentials {
        Credentials {
            device_id: "dev-0042".into(),
            thing_name: "thermostat-0042".into(),
            certificate: vec![0x30, 0x82, 0x01, 0x0A, 1, 2, 3],
            chain: vec![b"issuer".to_vec(), b"root-ish".to_vec()],
            private_key: Zeroizing::new(b"pkcs8-key-bytes".to_vec()),
            endpoint: Some("mqtts://iot.example.com:8883".into()),
            trust_anchors: vec![b"anchor-1".to_vec(), b"anchor-2".to_vec()],
        }
    }

    #[test]
    fn round_trip() {
        let creds = sample();
        let bytes = encode_slot(1024, &creds).unwrap();
        assert_eq!(bytes.len(), 1024);
        let slot = parse_slot(&bytes).unwrap();
        assert_eq!(Credentials::from_slot(&slot).unwrap(), creds);
        // Zero padding after the payload.
        assert!(bytes[HEADER_LEN + slot.payload().len()..]
            .iter()
            .all(|&b| b == 0));
        // Records in the documented order, chain order kept.
        let tags: Vec<u16> = slot.records().map(|r| r.tag).collect();
        assert_eq!(tags, [1, 2, 3, 3, 4, 5, 6, 7, 7]);
        assert_eq!(
            slot.values(RecordType::ChainCertificate).next(),
            Some(&b"issuer"[..])
        );
    }

    #[test]
    fn round_trip_without_optional_parts() {
        let creds = Credentials {
            chain: vec![],
            endpoint: None,
            trust_anchors: vec![],
            ..sample()
        };
        let bytes = encode_slot(required_capacity(&creds), &creds).unwrap();
        let slot = parse_slot(&bytes).unwrap();
        assert_eq!(slot.payload().len() + HEADER_LEN, bytes.len());
        assert_eq!(Credentials::from_slot(&slot).unwrap(), creds);
    }

    #[test]
    fn required_capacity_is_exact() {
        let creds = sample();
        let needed = required_capacity(&creds);
        assert!(encode_slot(needed, &creds).is_ok());
        assert_eq!(
            encode_slot(needed - 1, &creds).unwrap_err(),
            SlotError::SlotTooSmall {
                needed,
                capacity: needed - 1
            }
        );
        assert!(matches!(
            encode_slot(0, &creds),
            Err(SlotError::SlotTooSmall { .. })
        ));
    }

    #[test]
    fn rejects_capacity_beyond_u32() {
        let too_big = u32::MAX as usize + 1;
        assert_eq!(
            encode_slot(too_big, &sample()).unwrap_err(),
            SlotError::CapacityTooLarge { capacity: too_big }
        );
    }

    #[test]
    fn encode_into_reuses_and_wipes_the_buffer() {
        let mut buf = vec![0xEE; 4096];
        encode_slot_into(512, &sample(), &mut buf).unwrap();
        assert_eq!(buf.len(), 512);
        assert_eq!(parse_slot(&buf).unwrap().capacity(), 512);
        assert!(encode_slot_into(8, &sample(), &mut buf).is_err());
        assert!(buf.is_empty());
    }

    #[test]
    fn from_slot_requires_the_mandatory_records() {
        for missing in [
            RecordType::DeviceId,
            RecordType::ThingName,
            RecordType::Certificate,
            RecordType::PrivateKey,
        ] {
            let bytes = encode_slot(1024, &sample()).unwrap();
            let slot = parse_slot(&bytes).unwrap();
            // Re-encode the payload without the records of one type.
            let mut payload = Vec::new();
            for r in slot.records().filter(|r| r.tag != missing.as_u16()) {
                payload.extend_from_slice(&r.tag.to_le_bytes());
                payload.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
                payload.extend_from_slice(r.value);
            }
            let header = Header {
                capacity: 1024,
                version: VERSION_1,
                payload_len: payload.len() as u32,
                crc: crc32(&payload),
            };
            let mut bytes = header.to_bytes().to_vec();
            bytes.extend_from_slice(&payload);
            bytes.resize(1024, 0);
            let slot = parse_slot(&bytes).unwrap();
            assert_eq!(
                Credentials::from_slot(&slot).unwrap_err(),
                SlotError::MissingRecord {
                    record_type: missing
                }
            );
        }
    }

    #[test]
    fn empty_header_is_a_version_0_slot() {
        let mut bytes = empty_slot_header(64).to_vec();
        bytes.resize(64, 0);
        assert_eq!(parse_slot(&bytes).unwrap_err(), SlotError::Empty);
    }

    #[test]
    fn debug_redacts_the_key() {
        let shown = format!("{:?}", sample());
        assert!(shown.contains("<redacted>") && !shown.contains("107, 101, 121"));
    }
}
