//! Protocol messages: the typed requests a station sends and the responses a
//! device returns, serialized as CBOR maps (see `docs/station-protocol.md`).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{DeviceError, FrameError};

/// Version of the agent protocol this crate speaks, carried as `v` in every
/// request and response. Version 2 made `prove` sign [`prove_message`]
/// instead of the bare nonce.
pub const PROTOCOL_VERSION: u16 = 2;

/// What every `prove` signature covers first: the domain-separation prefix
/// of [`prove_message`], 15 ASCII bytes and a zero byte.
pub const PROVE_CONTEXT: &[u8] = b"idmint-prove-v1\0";

/// The message a device signs in answer to `prove`:
/// [`PROVE_CONTEXT`] `||` `nonce`.
///
/// A device never signs the station's bytes alone: with the prefix, its key
/// (its TLS client identity) is no signing oracle for whoever can send it
/// frames (see `docs/station-protocol.md`, section 5).
pub fn prove_message(nonce: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(PROVE_CONTEXT.len() + nonce.len());
    message.extend_from_slice(PROVE_CONTEXT);
    message.extend_from_slice(nonce);
    message
}

/// Request id reserved for responses to frames the device could not parse
/// (bad CRC, bad CBOR): a station never sends it.
pub const UNPARSED_REQUEST_ID: u32 = 0;

/// A request from the station to the device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Protocol version of this message ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// Request id chosen by the station (never 0), echoed in the response.
    pub id: u32,
    /// What the station asks for.
    pub body: RequestBody,
}

/// The operation a [`Request`] asks for; the `op` key names it on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum RequestBody {
    /// Ask the device who it is and what it can do.
    Hello,
    /// Generate a fresh key pair on the device and return a CSR for it.
    Keygen {
        /// Which kind of key to generate.
        key_type: KeyType,
    },
    /// Store a certificate chain (DER, leaf first) for the device's key.
    Install {
        /// Certificate chain, DER, leaf first.
        chain: CertificateChain,
    },
    /// Store a station-made private key with its certificate chain.
    Inject {
        /// PKCS#8 DER private key; zeroized on drop.
        key: SecretBytes,
        /// Certificate chain, DER, leaf first.
        chain: CertificateChain,
    },
    /// Sign [`prove_message`]`(nonce)` with the installed key (proof of
    /// possession).
    Prove {
        /// Challenge chosen by the station (1 to [`MAX_NONCE_LEN`] bytes).
        #[serde(with = "serde_bytes")]
        nonce: Vec<u8>,
    },
    /// Make credential storage read-only for good.
    Lock,
}

/// Longest nonce a device must accept in [`RequestBody::Prove`].
pub const MAX_NONCE_LEN: usize = 1024;

impl RequestBody {
    /// The kind of this request, without its data.
    pub fn kind(&self) -> RequestKind {
        match self {
            Self::Hello => RequestKind::Hello,
            Self::Keygen { .. } => RequestKind::Keygen,
            Self::Install { .. } => RequestKind::Install,
            Self::Inject { .. } => RequestKind::Inject,
            Self::Prove { .. } => RequestKind::Prove,
            Self::Lock => RequestKind::Lock,
        }
    }
}

/// The kind of a request, without its data (used for logs and test knobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestKind {
    /// `hello`
    Hello,
    /// `keygen`
    Keygen,
    /// `install`
    Install,
    /// `inject`
    Inject,
    /// `prove`
    Prove,
    /// `lock`
    Lock,
}

impl RequestKind {
    /// The wire name (`op`) of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Keygen => "keygen",
            Self::Install => "install",
            Self::Inject => "inject",
            Self::Prove => "prove",
            Self::Lock => "lock",
        }
    }
}

impl fmt::Display for RequestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for RequestKind {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "hello" => Self::Hello,
            "keygen" => Self::Keygen,
            "install" => Self::Install,
            "inject" => Self::Inject,
            "prove" => Self::Prove,
            "lock" => Self::Lock,
            _ => return Err(FrameError::BadMessage),
        })
    }
}

/// A response from the device, echoing the request's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Protocol version of this message ([`PROTOCOL_VERSION`]).
    pub v: u16,
    /// The id of the request this answers ([`UNPARSED_REQUEST_ID`] if the
    /// request could not be parsed).
    pub id: u32,
    /// The answer.
    pub body: ResponseBody,
}

/// The answer in a [`Response`]; the `op` key names it on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ResponseBody {
    /// Answer to `hello`.
    Hello(HelloInfo),
    /// Answer to `keygen`: a PKCS#10 CSR (DER) signed by the new key.
    Csr {
        /// The CSR, DER.
        #[serde(with = "serde_bytes")]
        csr: Vec<u8>,
    },
    /// Answer to `install` and `inject`: the chain is stored.
    Installed,
    /// Answer to `prove`.
    Proof {
        /// Type of the key that signed.
        key_type: KeyType,
        /// The signature (see [`KeyType`] for the scheme).
        #[serde(with = "serde_bytes")]
        signature: Vec<u8>,
    },
    /// Answer to `lock`: credential storage is now read-only.
    Locked,
    /// The request failed.
    Error(DeviceError),
}

/// What a device says about itself in answer to `hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloInfo {
    /// Highest protocol version the device speaks.
    pub protocol: u16,
    /// Hardware unique id (serial number, chip id, ...).
    pub hw_id: String,
    /// Firmware version string.
    pub firmware: String,
    /// What the device can do.
    pub capabilities: Vec<Capability>,
    /// Whether credential storage is locked.
    #[serde(default)]
    pub locked: bool,
}

impl HelloInfo {
    /// Whether the device advertises `cap`.
    pub fn has(&self, cap: &Capability) -> bool {
        self.capabilities.contains(cap)
    }
}

/// A capability a device advertises in `hello`; unknown strings are kept as
/// [`Capability::Other`] so newer devices do not break older stations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `keygen-p256`: can generate ECDSA P-256 keys.
    KeygenP256,
    /// `keygen-ed25519`: can generate Ed25519 keys.
    KeygenEd25519,
    /// `key-inject`: accepts a station-made key (`inject`).
    KeyInject,
    /// `lock`: can make credential storage read-only.
    Lock,
    /// Any other capability string.
    Other(String),
}

impl Capability {
    /// The wire string of this capability.
    pub fn as_str(&self) -> &str {
        match self {
            Self::KeygenP256 => "keygen-p256",
            Self::KeygenEd25519 => "keygen-ed25519",
            Self::KeyInject => "key-inject",
            Self::Lock => "lock",
            Self::Other(s) => s,
        }
    }

    /// The keygen capability for `key_type`.
    pub fn keygen(key_type: KeyType) -> Self {
        match key_type {
            KeyType::P256 => Self::KeygenP256,
            KeyType::Ed25519 => Self::KeygenEd25519,
        }
    }

    fn from_wire(s: &str) -> Self {
        match s {
            "keygen-p256" => Self::KeygenP256,
            "keygen-ed25519" => Self::KeygenEd25519,
            "key-inject" => Self::KeyInject,
            "lock" => Self::Lock,
            other => Self::Other(String::from(other)),
        }
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::from_wire(&s))
    }
}

/// The kind of key a device generates or holds.
///
/// Proof signatures (`prove`):
/// - `p256`: ECDSA over P-256 with SHA-256, the signature DER-encoded as
///   `Ecdsa-Sig-Value` (as X.509 uses);
/// - `ed25519`: pure Ed25519 (RFC 8032), 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum KeyType {
    /// ECDSA on NIST P-256 with SHA-256.
    P256,
    /// Ed25519.
    Ed25519,
}

impl KeyType {
    /// The wire name of this key type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::P256 => "p256",
            Self::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::str::FromStr for KeyType {
    type Err = FrameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "p256" => Ok(Self::P256),
            "ed25519" => Ok(Self::Ed25519),
            _ => Err(FrameError::BadMessage),
        }
    }
}

/// A certificate chain: DER certificates, leaf first. On the wire a CBOR
/// array of byte strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertificateChain(pub Vec<Vec<u8>>);

impl CertificateChain {
    /// The leaf certificate, if any.
    pub fn leaf(&self) -> Option<&[u8]> {
        self.0.first().map(Vec::as_slice)
    }
}

impl From<&[Vec<u8>]> for CertificateChain {
    fn from(chain: &[Vec<u8>]) -> Self {
        Self(chain.to_vec())
    }
}

impl Serialize for CertificateChain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for cert in &self.0 {
            seq.serialize_element(serde_bytes::Bytes::new(cert))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for CertificateChain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let certs = Vec::<serde_bytes::ByteBuf>::deserialize(d)?;
        Ok(Self(certs.into_iter().map(|c| c.into_vec()).collect()))
    }
}

/// Secret bytes (a private key): a CBOR byte string on the wire, zeroized
/// when dropped, and never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SecretBytes {}

impl SecretBytes {
    /// Wrap secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes)", self.0.len())
    }
}

impl Serialize for SecretBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let buf = serde_bytes::ByteBuf::deserialize(d)?;
        Ok(Self(buf.into_vec()))
    }
}

/// The header every request carries; used to echo the id of a request whose
/// body could not be understood.
#[derive(Deserialize)]
pub(crate) struct RequestHeader {
    pub(crate) id: u32,
}
