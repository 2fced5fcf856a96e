//! ESP32 credential partitions: one flash partition per device holding its
//! certificate, key and CA, flashed beside one application image for all
//! devices, laid out as Espressif's own tools write them: [`esp_secure_cert`]
//! (the TLV partition `esp_secure_cert_mgr` reads) and [`nvs`] (an ESP-IDF
//! NVS partition with the strings `dev_cert`, `priv_key` and `ca_cert`).

pub mod esp_secure_cert;
pub mod nvs;

use std::fmt;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::credentials::Credentials;
use crate::error::PartitionError;

/// Which ESP32 partition layout a device's credentials go into.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PartitionFormat {
    /// An `esp_secure_cert` TLV partition of `size` bytes.
    EspSecureCert {
        /// Partition size in bytes (default 0x2000).
        size: usize,
    },
    /// An ESP-IDF NVS partition of `size` bytes with the credentials as
    /// strings in `namespace`.
    EspNvs {
        /// Partition size in bytes (default 0x6000).
        size: usize,
        /// The namespace (default `esp_secure_cert`).
        namespace: String,
    },
}

/// The name of a partition kind, as the `--format` flag spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionKind {
    /// `esp-secure-cert`.
    EspSecureCert,
    /// `esp-nvs`.
    EspNvs,
}

impl PartitionKind {
    /// The flag spelling: `esp-secure-cert` or `esp-nvs`.
    pub fn name(self) -> &'static str {
        match self {
            Self::EspSecureCert => "esp-secure-cert",
            Self::EspNvs => "esp-nvs",
        }
    }

    /// The default partition size: 0x2000 for `esp_secure_cert`, 0x6000 for
    /// NVS.
    pub fn default_size(self) -> usize {
        match self {
            Self::EspSecureCert => esp_secure_cert::DEFAULT_PARTITION_SIZE,
            Self::EspNvs => nvs::DEFAULT_PARTITION_SIZE,
        }
    }

    /// The partition format of this kind with `size` bytes (the default
    /// when `None`) and, for NVS, `namespace` (default `esp_secure_cert`;
    /// ignored for `esp_secure_cert`).
    pub fn format(self, size: Option<usize>, namespace: Option<&str>) -> PartitionFormat {
        let size = size.unwrap_or(self.default_size());
        match self {
            Self::EspSecureCert => PartitionFormat::EspSecureCert { size },
            Self::EspNvs => PartitionFormat::EspNvs {
                size,
                namespace: namespace.unwrap_or(nvs::DEFAULT_NAMESPACE).to_string(),
            },
        }
    }
}

impl fmt::Display for PartitionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PartitionKind {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "esp-secure-cert" => Ok(Self::EspSecureCert),
            "esp-nvs" => Ok(Self::EspNvs),
            _ => Err(()),
        }
    }
}

impl PartitionFormat {
    /// Which kind of partition this is.
    pub fn kind(&self) -> PartitionKind {
        match self {
            Self::EspSecureCert { .. } => PartitionKind::EspSecureCert,
            Self::EspNvs { .. } => PartitionKind::EspNvs,
        }
    }

    /// The partition size in bytes.
    pub fn size(&self) -> usize {
        match self {
            Self::EspSecureCert { size } | Self::EspNvs { size, .. } => *size,
        }
    }

    /// Checks the size and namespace, before anything is minted.
    pub fn validate(&self) -> Result<(), PartitionError> {
        match self {
            Self::EspSecureCert { size } => esp_secure_cert::check_size(*size),
            Self::EspNvs { size, namespace } => {
                nvs::check_size(*size)?;
                nvs::check_name(namespace)
            }
        }
    }

    /// Writes `creds` into a whole partition image (`size` bytes).
    pub fn encode(&self, creds: &Credentials) -> Result<Zeroizing<Vec<u8>>, PartitionError> {
        self.encode_pem(&PemCredentials::from_credentials(creds))
    }

    /// Writes credentials already in PEM form into a whole partition image.
    pub fn encode_pem(&self, pem: &PemCredentials) -> Result<Zeroizing<Vec<u8>>, PartitionError> {
        match self {
            Self::EspSecureCert { size } => esp_secure_cert::encode(*size, pem),
            Self::EspNvs { size, namespace } => nvs::encode(*size, namespace, pem),
        }
    }

    /// Reads the PEM credentials back out of a partition image.
    pub fn decode(&self, bytes: &[u8]) -> Result<PemCredentials, PartitionError> {
        match self {
            Self::EspSecureCert { .. } => {
                esp_secure_cert::EspSecureCert::parse(bytes)?.credentials()
            }
            Self::EspNvs { namespace, .. } => {
                nvs::NvsPartition::parse(bytes)?.credentials(namespace)
            }
        }
    }
}

/// Key protection that needs the chip itself, asked for at mint time and
/// carried out on the production line (`configure_esp_secure_cert.py` and
/// `espefuse.py` with the device attached): idmint records the choice and
/// the eFuse key block in the manifest and still writes the plaintext key
/// into the partition, for the line to convert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChipKeyProtection {
    /// The key stays in the partition as plaintext PEM (flags 0).
    #[default]
    None,
    /// RSA key for the Digital Signature peripheral (ESP32-S2, -S3, -C3, -C6,
    /// -H2): the line burns an HMAC key into eFuse and writes the encrypted
    /// key (`DS_DATA`, `DS_CONTEXT` entries) in place of the plaintext one.
    Ds,
    /// The key encrypted with a key derived from an eFuse HMAC key
    /// (`ESP_SECURE_CERT_HMAC_ENCRYPTED_KEY`, flags bit 7).
    HmacEncrypted,
    /// An ECDSA key the chip derives from an eFuse HMAC key and a salt
    /// (`ESP_SECURE_CERT_HMAC_DERIVED_ECDSA_KEY`, flags bit 6): the
    /// certificate must then be issued for the derived key, on the line.
    HmacDerived,
    /// An ECDSA P-256 key burned into eFuse for the ECDSA peripheral
    /// (ESP32-C2, -C6, -H2, -P4; `ESP_SECURE_CERT_ECDSA_PERIPHERAL_KEY`,
    /// flags bit 3).
    EcdsaPeripheral,
}

impl ChipKeyProtection {
    /// Every choice, in flag spelling.
    pub const NAMES: [&'static str; 5] = [
        "none",
        "ds",
        "hmac-encrypted",
        "hmac-derived",
        "ecdsa-peripheral",
    ];

    /// The flag spelling (`none`, `ds`, `hmac-encrypted`, `hmac-derived`,
    /// `ecdsa-peripheral`).
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ds => "ds",
            Self::HmacEncrypted => "hmac-encrypted",
            Self::HmacDerived => "hmac-derived",
            Self::EcdsaPeripheral => "ecdsa-peripheral",
        }
    }

    /// Whether the chip has to do something on the line.
    pub fn needs_chip(self) -> bool {
        self != Self::None
    }
}

impl fmt::Display for ChipKeyProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ChipKeyProtection {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "none" => Self::None,
            "ds" => Self::Ds,
            "hmac-encrypted" => Self::HmacEncrypted,
            "hmac-derived" => Self::HmacDerived,
            "ecdsa-peripheral" => Self::EcdsaPeripheral,
            _ => return Err(()),
        })
    }
}

/// A device's credentials as the ESP32 readers want them: PEM text, each
/// value NUL-terminated when written.
#[derive(Clone, PartialEq, Eq)]
pub struct PemCredentials {
    /// The device certificate, then any intermediate CA certificates.
    pub device_cert: String,
    /// The private key, PKCS#8 PEM (`PRIVATE KEY`). Wiped on drop.
    pub private_key: Zeroizing<String>,
    /// The CA certificates the device trusts (empty when there are none).
    pub ca_cert: String,
}

impl fmt::Debug for PemCredentials {
    // The private key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PemCredentials")
            .field("device_cert", &self.device_cert)
            .field("private_key", &"<redacted>")
            .field("ca_cert", &self.ca_cert)
            .finish()
    }
}

impl PemCredentials {
    /// The PEM form of `creds`: the leaf and the chain certificates that are
    /// not trust anchors go into the device certificate, the trust anchors
    /// into the CA certificate.
    pub fn from_credentials(creds: &Credentials) -> Self {
        let mut device_cert = pem_block("CERTIFICATE", &creds.certificate);
        for c in &creds.chain {
            if !creds.trust_anchors.contains(c) {
                device_cert.push_str(&pem_block("CERTIFICATE", c));
            }
        }
        let ca_cert = creds
            .trust_anchors
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect();
        let private_key = Zeroizing::new(pem_block("PRIVATE KEY", &creds.private_key));
        Self {
            device_cert,
            private_key,
            ca_cert,
        }
    }
}

fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Text plus its NUL terminator, as the ESP32 readers expect PEM.
fn nul_terminated(text: &str) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(text.len() + 1));
    v.extend_from_slice(text.as_bytes());
    v.push(0);
    v
}

/// Text from a NUL-terminated value (the NUL and anything after it dropped).
/// `offset` and `reason` describe the value when it is not UTF-8.
fn from_nul_terminated(
    value: &[u8],
    offset: usize,
    reason: &'static str,
) -> Result<String, PartitionError> {
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8(value[..end].to_vec())
        .map_err(|_| PartitionError::Malformed { offset, reason })
}

/// CRC-32 as Espressif computes it: `zlib.crc32(data, 0xFFFFFFFF)` in the
/// Python tools, `esp_crc32_le(UINT32_MAX, ...)` on the chip (the IEEE CRC
/// with the running value started at 0xFFFFFFFF instead of 0).
pub fn esp_crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(0xFFFF_FFFF);
    h.update(bytes);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_crc32_matches_zlib_with_seed() {
        // python3 -c "import zlib; print(hex(zlib.crc32(b'123456789', 0xffffffff)))"
        assert_eq!(esp_crc32(b"123456789"), 0xd202_d277);
    }
}
