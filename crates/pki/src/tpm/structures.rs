//! TPM 2.0 wire structures a device sends (TPM2B_PUBLIC / TPMT_PUBLIC,
//! TPMS_ATTEST of a `TPM2_Certify`, TPMT_SIGNATURE), parsed strictly: every
//! length is bounds-checked against the input, unknown algorithms and trailing
//! bytes are refused, and nothing panics on any input.
//!
//! Why not a crate: the pure-Rust marshalling crate on crates.io
//! (`tpm2-protocol`) changed its public API in ten minor releases within a
//! year, and a key's Name must be computed over the exact bytes the device
//! sent, which a parse-then-remarshal library does not promise; `tss-esapi`
//! links the C TSS. The subset idmint reads is small (TPM 2.0 Part 2 §12.2,
//! §10.12, §11.3), so it is written out here against the specification.

use super::{HashAlg, TpmError};

/// `TPM_ALG_RSA`.
pub(crate) const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_AES`.
const ALG_AES: u16 = 0x0006;
/// `TPM_ALG_KEYEDHASH`.
const ALG_KEYEDHASH: u16 = 0x0008;
/// `TPM_ALG_NULL`.
const ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_RSASSA`.
const ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_RSAES`.
const ALG_RSAES: u16 = 0x0015;
/// `TPM_ALG_RSAPSS`.
const ALG_RSAPSS: u16 = 0x0016;
/// `TPM_ALG_OAEP`.
const ALG_OAEP: u16 = 0x0017;
/// `TPM_ALG_ECDSA`.
const ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_ECDH`.
const ALG_ECDH: u16 = 0x0019;
/// `TPM_ALG_ECDAA`.
const ALG_ECDAA: u16 = 0x001A;
/// `TPM_ALG_ECC`.
pub(crate) const ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_SYMCIPHER`.
const ALG_SYMCIPHER: u16 = 0x0025;
/// `TPM_ALG_CFB`.
const ALG_CFB: u16 = 0x0043;
/// `TPM_ECC_NIST_P256`.
const ECC_NIST_P256: u16 = 0x0003;
/// `TPM_ECC_NIST_P384`.
const ECC_NIST_P384: u16 = 0x0004;
/// `TPM_GENERATED_VALUE`, the magic of every TPMS_ATTEST.
const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_CERTIFY`.
const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;

/// The largest structure idmint reads (TPM2B sizes are 16-bit; a public
/// area or an attestation is far smaller than this on every TPM).
const MAX_STRUCTURE: usize = 4096;

/// `TPMA_OBJECT`: the attributes of a TPM object (Part 2 §8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`: the object cannot be duplicated out of this TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// `fixedParent`: the object cannot be duplicated to another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// `sensitiveDataOrigin`: the TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// `restricted`: signs only TPM-generated digests (an AK) or decrypts
    /// only TPM-formatted blobs (an EK).
    pub const RESTRICTED: u32 = 1 << 16;
    /// `decrypt`.
    pub const DECRYPT: u32 = 1 << 17;
    /// `sign` (`encrypt` for a symmetric key).
    pub const SIGN: u32 = 1 << 18;

    /// Whether every bit of `mask` is set.
    pub fn has(self, mask: u32) -> bool {
        self.0 & mask == mask
    }
}

/// The curve of an ECC TPM key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EccCurve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
}

impl EccCurve {
    /// Bytes of a coordinate.
    pub fn coordinate_len(self) -> usize {
        match self {
            EccCurve::P256 => 32,
            EccCurve::P384 => 48,
        }
    }
}

/// The public key in a TPM public area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmKey {
    /// An RSA key.
    Rsa {
        /// The modulus, big-endian, as the TPM sent it.
        modulus: Vec<u8>,
        /// The public exponent (the TPM's 0 already replaced by 65537).
        exponent: u32,
    },
    /// An ECC key.
    Ecc {
        /// The curve.
        curve: EccCurve,
        /// The x coordinate, left-padded to the curve's size.
        x: Vec<u8>,
        /// The y coordinate, left-padded to the curve's size.
        y: Vec<u8>,
    },
}

/// `TPMT_SYM_DEF_OBJECT` of a storage key (an EK): the only one idmint can
/// make a credential for is AES in CFB mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymmetricAes {
    /// 128 or 256.
    pub key_bits: u16,
}

/// A signing or decryption scheme (`TPMT_RSA_SCHEME` / `TPMT_ECC_SCHEME`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheme {
    /// The `TPM_ALG_ID` of the scheme (`TPM_ALG_NULL` when the caller chooses).
    pub alg: u16,
    /// The scheme's hash, when it has one.
    pub hash: Option<u16>,
}

/// A parsed `TPMT_PUBLIC`, with the exact bytes it was parsed from (a Name
/// is a hash over those).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TpmPublic {
    raw: Vec<u8>,
    name_alg: HashAlg,
    attributes: ObjectAttributes,
    symmetric: Option<SymmetricAes>,
    scheme: Scheme,
    key: TpmKey,
}

impl TpmPublic {
    /// Parses a `TPM2B_PUBLIC` (a 16-bit size, then the `TPMT_PUBLIC`), as
    /// `tpm2_createak -u` and `tpm2_create -u` write it.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut reader = Reader::new(bytes, "TPM2B_PUBLIC")?;
        let inner = reader.tpm2b()?;
        reader.finish()?;
        Self::from_tpmt(inner)
    }

    /// Parses a `TPMT_PUBLIC`.
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_PUBLIC")?;
        let object_type = r.u16()?;
        let name_alg = HashAlg::from_id(r.u16()?)?;
        let attributes = ObjectAttributes(r.u32()?);
        let _auth_policy = r.tpm2b()?;
        let (symmetric, scheme, key) = match object_type {
            ALG_RSA => {
                let symmetric = r.symmetric()?;
                let scheme = r.scheme(true)?;
                let key_bits = r.u16()?;
                let exponent = match r.u32()? {
                    0 => 65537,
                    e => e,
                };
                let modulus = r.tpm2b()?.to_vec();
                if modulus.len() * 8 != usize::from(key_bits) || modulus.first() == Some(&0) {
                    return Err(TpmError::Malformed {
                        structure: "TPMT_PUBLIC",
                        reason: "the RSA modulus does not have the declared size",
                    });
                }
                (symmetric, scheme, TpmKey::Rsa { modulus, exponent })
            }
            ALG_ECC => {
                let symmetric = r.symmetric()?;
                let scheme = r.scheme(false)?;
                let curve = match r.u16()? {
                    ECC_NIST_P256 => EccCurve::P256,
                    ECC_NIST_P384 => EccCurve::P384,
                    other => {
                        return Err(TpmError::UnsupportedAlgorithm {
                            what: "ECC curve",
                            id: other,
                        })
                    }
                };
                // TPMT_KDF_SCHEME: must be NULL for the keys idmint reads,
                // otherwise a hash follows.
                if r.u16()? != ALG_NULL {
                    let _kdf_hash = r.u16()?;
                }
                let x = pad(r.tpm2b()?, curve.coordinate_len())?;
                let y = pad(r.tpm2b()?, curve.coordinate_len())?;
                (symmetric, scheme, TpmKey::Ecc { curve, x, y })
            }
            ALG_KEYEDHASH | ALG_SYMCIPHER => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "object type (not an asymmetric key)",
                    id: object_type,
                })
            }
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "object type",
                    id: other,
                })
            }
        };
        r.finish()?;
        Ok(TpmPublic {
            raw: bytes.to_vec(),
            name_alg,
            attributes,
            symmetric,
            scheme,
            key,
        })
    }

    /// The marshalled `TPMT_PUBLIC`, exactly as received.
    pub fn tpmt_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The key's Name: `nameAlg || H_nameAlg(TPMT_PUBLIC)` (Part 1 §16).
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.id().to_be_bytes().to_vec();
        name.extend_from_slice(&self.name_alg.digest(&self.raw));
        name
    }

    /// The hash of the Name.
    pub fn name_alg(&self) -> HashAlg {
        self.name_alg
    }

    /// `objectAttributes`.
    pub fn attributes(&self) -> ObjectAttributes {
        self.attributes
    }

    /// The symmetric algorithm of a storage key, if any.
    pub fn symmetric(&self) -> Option<SymmetricAes> {
        self.symmetric
    }

    /// The signing or decryption scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The public key.
    pub fn key(&self) -> &TpmKey {
        &self.key
    }

    /// The public key as an X.509 SubjectPublicKeyInfo (DER), to compare
    /// with a CSR's key or to issue a certificate for it.
    pub fn spki_der(&self) -> Vec<u8> {
        super::spki::spki_der(&self.key)
    }

    /// Whether a DER SubjectPublicKeyInfo (a CSR's) holds this key.
    pub fn same_key_as(&self, spki_der: &[u8]) -> bool {
        super::spki::key_from_spki(spki_der).is_ok_and(|key| key == self.key)
    }
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_CERTIFY`, the structure an AK
/// signs in `TPM2_Certify` (Part 2 §10.12.8), with its exact bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifyInfo {
    raw: Vec<u8>,
    /// The Name of the signing key (the AK), qualified.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data the verifier chose (its nonce).
    pub extra_data: Vec<u8>,
    /// The Name of the certified object.
    pub certified_name: Vec<u8>,
    /// The qualified Name of the certified object.
    pub certified_qualified_name: Vec<u8>,
    /// The TPM's firmware version.
    pub firmware_version: u64,
}

impl CertifyInfo {
    /// Parses a marshalled `TPMS_ATTEST` (what `tpm2_certify -o` writes),
    /// refusing a wrong magic, any type other than certify, and trailing bytes.
    pub fn from_tpms_attest(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMS_ATTEST")?;
        if r.u32()? != TPM_GENERATED_VALUE {
            return Err(TpmError::NotTpmGenerated);
        }
        let attest_type = r.u16()?;
        if attest_type != TPM_ST_ATTEST_CERTIFY {
            return Err(TpmError::NotACertify { attest_type });
        }
        let qualified_signer = r.tpm2b()?.to_vec();
        let extra_data = r.tpm2b()?.to_vec();
        // TPMS_CLOCK_INFO: clock, resetCount, restartCount, safe.
        let _clock = r.bytes(8 + 4 + 4 + 1)?;
        let firmware_version = r.u64()?;
        let certified_name = r.tpm2b()?.to_vec();
        let certified_qualified_name = r.tpm2b()?.to_vec();
        r.finish()?;
        Ok(CertifyInfo {
            raw: bytes.to_vec(),
            qualified_signer,
            extra_data,
            certified_name,
            certified_qualified_name,
            firmware_version,
        })
    }

    /// The marshalled `TPMS_ATTEST`, exactly as received (what was signed).
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }
}

/// A parsed `TPMT_SIGNATURE` (Part 2 §11.3.4): the schemes an AK signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TpmSignature {
    /// RSASSA-PKCS1-v1_5.
    RsaSsa {
        /// `TPM_ALG_ID` of the hash.
        hash: u16,
        /// The signature.
        signature: Vec<u8>,
    },
    /// ECDSA.
    Ecdsa {
        /// `TPM_ALG_ID` of the hash.
        hash: u16,
        /// r, as sent.
        r: Vec<u8>,
        /// s, as sent.
        s: Vec<u8>,
    },
}

impl TpmSignature {
    /// Parses a marshalled `TPMT_SIGNATURE` (what `tpm2_certify -s` writes
    /// in its default `tss` format).
    pub fn from_tpmt(bytes: &[u8]) -> Result<Self, TpmError> {
        let mut r = Reader::new(bytes, "TPMT_SIGNATURE")?;
        let alg = r.u16()?;
        let signature = match alg {
            ALG_RSASSA => {
                let hash = r.u16()?;
                let signature = r.tpm2b()?.to_vec();
                TpmSignature::RsaSsa { hash, signature }
            }
            ALG_ECDSA => {
                let hash = r.u16()?;
                let rr = r.tpm2b()?.to_vec();
                let s = r.tpm2b()?.to_vec();
                TpmSignature::Ecdsa { hash, r: rr, s }
            }
            other => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "signature scheme",
                    id: other,
                })
            }
        };
        r.finish()?;
        Ok(signature)
    }
}

/// Left-pads an ECC coordinate to the curve's size; refuses a longer one.
fn pad(coordinate: &[u8], len: usize) -> Result<Vec<u8>, TpmError> {
    if coordinate.len() > len || coordinate.is_empty() {
        return Err(TpmError::Malformed {
            structure: "TPMS_ECC_POINT",
            reason: "a coordinate does not fit the curve",
        });
    }
    let mut out = vec![0u8; len - coordinate.len()];
    out.extend_from_slice(coordinate);
    Ok(out)
}

/// A bounds-checked big-endian reader over one structure.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], structure: &'static str) -> Result<Self, TpmError> {
        if buf.len() > MAX_STRUCTURE {
            return Err(TpmError::Malformed {
                structure,
                reason: "longer than any TPM structure idmint reads",
            });
        }
        Ok(Reader {
            buf,
            pos: 0,
            structure,
        })
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], TpmError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or(TpmError::Malformed {
                structure: self.structure,
                reason: "truncated",
            })?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, TpmError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, TpmError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, TpmError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A `TPM2B_*`: a 16-bit size and that many bytes.
    fn tpm2b(&mut self) -> Result<&'a [u8], TpmError> {
        let size = self.u16()?;
        self.bytes(usize::from(size))
    }

    /// `TPMT_SYM_DEF_OBJECT`: NULL, or AES-128/256 in CFB mode.
    fn symmetric(&mut self) -> Result<Option<SymmetricAes>, TpmError> {
        match self.u16()? {
            ALG_NULL => Ok(None),
            ALG_AES => {
                let key_bits = self.u16()?;
                let mode = self.u16()?;
                if !matches!(key_bits, 128 | 256) {
                    return Err(TpmError::UnsupportedAlgorithm {
                        what: "AES key size",
                        id: key_bits,
                    });
                }
                if mode != ALG_CFB {
                    return Err(TpmError::UnsupportedAlgorithm {
                        what: "symmetric mode",
                        id: mode,
                    });
                }
                Ok(Some(SymmetricAes { key_bits }))
            }
            other => Err(TpmError::UnsupportedAlgorithm {
                what: "symmetric algorithm",
                id: other,
            }),
        }
    }

    /// `TPMT_RSA_SCHEME` or `TPMT_ECC_SCHEME`.
    fn scheme(&mut self, rsa: bool) -> Result<Scheme, TpmError> {
        let alg = self.u16()?;
        let hash = match (rsa, alg) {
            (_, ALG_NULL) | (true, ALG_RSAES) => None,
            (true, ALG_RSASSA | ALG_RSAPSS | ALG_OAEP) | (false, ALG_ECDSA | ALG_ECDH) => {
                Some(self.u16()?)
            }
            (false, ALG_ECDAA) => {
                let hash = self.u16()?;
                let _count = self.u16()?;
                Some(hash)
            }
            (_, other) => {
                return Err(TpmError::UnsupportedAlgorithm {
                    what: "key scheme",
                    id: other,
                })
            }
        };
        Ok(Scheme { alg, hash })
    }

    fn finish(&self) -> Result<(), TpmError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(TpmError::Malformed {
                structure: self.structure,
                reason: "trailing bytes",
            })
        }
    }
}
