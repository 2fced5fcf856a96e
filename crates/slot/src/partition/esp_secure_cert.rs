//! The `esp_secure_cert` partition in Espressif's TLV format, as
//! `esp_secure_cert_mgr` reads it on the chip and its `configure_esp_secure_cert.py`
//! writes it.
//!
//! Each entry is a 12-byte header (magic `0xBA5EBA11`, flags, three reserved
//! bytes, type, subtype, 16-bit length; little-endian), the data, zero padding
//! to a multiple of 16 bytes, and a CRC-32 footer over header, data and
//! padding. PEM values are NUL-terminated. We write, in the order of
//! `configure_esp_secure_cert.py` (esp-secure-cert-tool 2.6.1), the CA
//! certificate, the device certificate, the private key (flags 0: plaintext)
//! and an integrity entry (SHA-256 of every byte before it). The tool writes
//! only those bytes; we fill the rest of the partition with erased flash
//! (0xFF), so that flashing the file also erases whatever an earlier
//! partition left after them (a reader stops at the first offset without the
//! magic).

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{esp_crc32, from_nul_terminated, nul_terminated, PemCredentials};
use crate::error::PartitionError;

/// The magic that starts every entry.
pub const TLV_MAGIC: u32 = 0xBA5E_BA11;
/// Header bytes before an entry's data.
pub const HEADER_LEN: usize = 12;
/// Footer bytes (the CRC-32) after an entry's padded data.
pub const FOOTER_LEN: usize = 4;
/// Data is padded to a multiple of this (flash-encryption write alignment).
pub const ALIGNMENT: usize = 16;
/// The partition size Espressif's tools write (8 KiB).
pub const DEFAULT_PARTITION_SIZE: usize = 0x2000;

/// An entry type (`esp_secure_cert_tlv_type_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TlvType(pub u8);

impl TlvType {
    /// `ESP_SECURE_CERT_CA_CERT_TLV`.
    pub const CA_CERT: Self = Self(0);
    /// `ESP_SECURE_CERT_DEV_CERT_TLV`.
    pub const DEV_CERT: Self = Self(1);
    /// `ESP_SECURE_CERT_PRIV_KEY_TLV`.
    pub const PRIV_KEY: Self = Self(2);
    /// `ESP_SECURE_CERT_DS_DATA_TLV`.
    pub const DS_DATA: Self = Self(3);
    /// `ESP_SECURE_CERT_DS_CONTEXT_TLV`.
    pub const DS_CONTEXT: Self = Self(4);
    /// `ESP_SECURE_CERT_HMAC_ECDSA_KEY_SALT`.
    pub const HMAC_ECDSA_KEY_SALT: Self = Self(5);
    /// `ESP_SECURE_CERT_TLV_SEC_CFG`.
    pub const SEC_CFG: Self = Self(6);
    /// `ESP_SECURE_CERT_TEE_SEC_STORAGE_KEY_TLV`.
    pub const TEE_SEC_STORAGE_KEY: Self = Self(7);
    /// `ESP_SECURE_CERT_SIGNATURE_BLOCK_TLV`.
    pub const SIGNATURE_BLOCK: Self = Self(8);
    /// `ESP_SECURE_CERT_INTEGRITY_TLV`: SHA-256 of the partition before it.
    pub const INTEGRITY: Self = Self(9);
    /// `ESP_SECURE_CERT_TLV_END`: only a lookup key on the chip, never stored.
    pub const END: Self = Self(50);
}

/// One entry of a parsed partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlvEntry<'a> {
    /// Offset of the entry's header in the partition.
    pub offset: usize,
    /// The flags byte (bits 7-6: HMAC encryption / derivation, 5-3: key flags).
    pub flags: u8,
    /// The entry type.
    pub tlv_type: TlvType,
    /// The subtype (an index among entries of one type).
    pub subtype: u8,
    /// The data, without padding.
    pub value: &'a [u8],
}

/// A parsed `esp_secure_cert` partition: every entry's CRC checked, and the
/// integrity entry, if there is one, checked against the bytes before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EspSecureCert<'a> {
    entries: Vec<TlvEntry<'a>>,
    end: usize,
}

impl<'a> EspSecureCert<'a> {
    /// Parses the entries from the start of `bytes` up to the first offset
    /// without the magic (erased flash, or the end of the bytes).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PartitionError> {
        let mut entries = Vec::new();
        let mut offset = 0usize;
        while let Some(header) = bytes.get(offset..offset + HEADER_LEN) {
            let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            if magic != TLV_MAGIC {
                break;
            }
            let len = usize::from(u16::from_le_bytes([header[10], header[11]]));
            let covered = HEADER_LEN + len + padding(len);
            let footer = bytes
                .get(offset + covered..offset + covered + FOOTER_LEN)
                .ok_or(PartitionError::Truncated { offset })?;
            let stored = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
            let computed = esp_crc32(&bytes[offset..offset + covered]);
            if stored != computed {
                return Err(PartitionError::CrcMismatch {
                    offset,
                    stored,
                    computed,
                });
            }
            let entry = TlvEntry {
                offset,
                flags: header[4],
                tlv_type: TlvType(header[8]),
                subtype: header[9],
                value: &bytes[offset + HEADER_LEN..offset + HEADER_LEN + len],
            };
            if entry.tlv_type == TlvType::INTEGRITY {
                let sha = Sha256::digest(&bytes[..offset]);
                if entry.value != sha.as_slice() {
                    return Err(PartitionError::IntegrityMismatch { offset });
                }
            }
            entries.push(entry);
            offset += covered + FOOTER_LEN;
        }
        Ok(Self {
            entries,
            end: offset,
        })
    }

    /// The entries, in partition order.
    pub fn entries(&self) -> &[TlvEntry<'a>] {
        &self.entries
    }

    /// Bytes used by the entries (where the erased flash starts).
    pub fn used_len(&self) -> usize {
        self.end
    }

    /// The entry of `tlv_type` with the highest subtype, as the chip's
    /// `esp_secure_cert_find_tlv(..., ESP_SECURE_CERT_SUBTYPE_MAX)` picks it.
    pub fn find(&self, tlv_type: TlvType) -> Option<&TlvEntry<'a>> {
        self.entries
            .iter()
            .filter(|e| e.tlv_type == tlv_type)
            .max_by_key(|e| e.subtype)
    }

    /// The PEM device certificate, CA certificate and plaintext private key.
    pub fn credentials(&self) -> Result<PemCredentials, PartitionError> {
        let text = |t: TlvType, what: &'static str, reason: &'static str| {
            let e = self.find(t).ok_or(PartitionError::Missing { what })?;
            from_nul_terminated(e.value, e.offset, reason)
        };
        let key = self
            .find(TlvType::PRIV_KEY)
            .ok_or(PartitionError::Missing {
                what: "private key entry",
            })?;
        if key.flags != 0 {
            return Err(PartitionError::Malformed {
                offset: key.offset,
                reason: "the private key is not plaintext (hardware key flags set)",
            });
        }
        let ca_cert = match self.find(TlvType::CA_CERT) {
            Some(e) => from_nul_terminated(e.value, e.offset, "CA certificate is not text")?,
            None => String::new(),
        };
        Ok(PemCredentials {
            device_cert: text(
                TlvType::DEV_CERT,
                "device certificate entry",
                "device certificate is not text",
            )?,
            private_key: Zeroizing::new(from_nul_terminated(
                key.value,
                key.offset,
                "private key is not text",
            )?),
            ca_cert,
        })
    }
}

/// Bytes one entry of `len` data bytes takes, header and footer included.
pub fn entry_len(len: usize) -> usize {
    HEADER_LEN + len + padding(len) + FOOTER_LEN
}

/// Checks that `size` can hold a partition at all.
pub(super) fn check_size(size: usize) -> Result<(), PartitionError> {
    if size == 0 || !size.is_multiple_of(4096) {
        return Err(PartitionError::BadSize {
            size,
            reason: "an esp_secure_cert partition is a non-zero multiple of 4096 bytes",
        });
    }
    Ok(())
}

/// The whole partition (`size` bytes): CA certificate (when there is one),
/// device certificate, private key, integrity entry, then 0xFF.
pub(super) fn encode(
    size: usize,
    creds: &PemCredentials,
) -> Result<Zeroizing<Vec<u8>>, PartitionError> {
    check_size(size)?;
    let dev = nul_terminated(&creds.device_cert);
    let ca = (!creds.ca_cert.is_empty()).then(|| nul_terminated(&creds.ca_cert));
    let key = nul_terminated(&creds.private_key);
    let needed = entry_len(dev.len())
        + ca.as_ref().map_or(0, |c| entry_len(c.len()))
        + entry_len(key.len())
        + entry_len(32);
    if needed > size {
        return Err(PartitionError::TooSmall {
            format: "esp-secure-cert",
            needed,
            size,
        });
    }
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    if let Some(ca) = &ca {
        push_entry(&mut out, TlvType::CA_CERT, 0, ca, "ca_cert")?;
    }
    push_entry(&mut out, TlvType::DEV_CERT, 0, &dev, "dev_cert")?;
    push_entry(&mut out, TlvType::PRIV_KEY, 0, &key, "priv_key")?;
    let sha = Sha256::digest(out.as_slice());
    push_entry(&mut out, TlvType::INTEGRITY, 0, sha.as_slice(), "integrity")?;
    out.resize(size, 0xFF);
    Ok(out)
}

fn push_entry(
    out: &mut Vec<u8>,
    tlv_type: TlvType,
    flags: u8,
    value: &[u8],
    what: &'static str,
) -> Result<(), PartitionError> {
    let len = u16::try_from(value.len()).map_err(|_| PartitionError::ValueTooLong {
        what,
        len: value.len(),
        max: usize::from(u16::MAX),
    })?;
    let start = out.len();
    out.extend_from_slice(&TLV_MAGIC.to_le_bytes());
    out.extend_from_slice(&[flags, 0, 0, 0, tlv_type.0, 0]);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + padding(value.len()), 0);
    let crc = esp_crc32(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn padding(len: usize) -> usize {
    (ALIGNMENT - len % ALIGNMENT) % ALIGNMENT
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
    fn round_trip_and_layout() {
        let bytes = encode(DEFAULT_PARTITION_SIZE, &sample()).unwrap();
        assert_eq!(bytes.len(), DEFAULT_PARTITION_SIZE);
        assert_eq!(&bytes[..4], &[0x11, 0xBA, 0x5E, 0xBA]);
        let p = EspSecureCert::parse(&bytes).unwrap();
        let types: Vec<u8> = p.entries().iter().map(|e| e.tlv_type.0).collect();
        assert_eq!(types, [0, 1, 2, 9]);
        for e in p.entries() {
            assert_eq!(e.offset % ALIGNMENT, 0, "entries stay 16-byte aligned");
        }
        assert_eq!(p.find(TlvType::DEV_CERT).unwrap().value.last(), Some(&0));
        assert!(bytes[p.used_len()..].iter().all(|&b| b == 0xFF));
        assert_eq!(p.credentials().unwrap(), sample());
    }

    #[test]
    fn a_flipped_bit_is_a_crc_error() {
        let mut bytes = encode(DEFAULT_PARTITION_SIZE, &sample()).unwrap();
        bytes[20] ^= 1;
        assert!(matches!(
            EspSecureCert::parse(&bytes),
            Err(PartitionError::CrcMismatch { offset: 0, .. })
        ));
    }

    #[test]
    fn too_small_is_refused() {
        let mut big = sample();
        big.device_cert = "x".repeat(9000);
        assert!(matches!(
            encode(DEFAULT_PARTITION_SIZE, &big),
            Err(PartitionError::TooSmall { .. })
        ));
        assert!(matches!(
            encode(100, &sample()),
            Err(PartitionError::BadSize { .. })
        ));
    }

    #[test]
    fn garbage_does_not_panic() {
        let mut g = TLV_MAGIC.to_le_bytes().to_vec();
        g.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0xFF, 0xFF]);
        assert!(matches!(
            EspSecureCert::parse(&g),
            Err(PartitionError::Truncated { offset: 0 })
        ));
        assert!(EspSecureCert::parse(&[]).unwrap().entries().is_empty());
        assert!(matches!(
            EspSecureCert::parse(&[0xFF; 64]).unwrap().credentials(),
            Err(PartitionError::Missing { .. })
        ));
    }
}
