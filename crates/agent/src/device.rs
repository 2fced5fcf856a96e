//! The [`Device`] trait: what a device's firmware implements to answer the
//! station. The [`Agent`](crate::agent::Agent) handles framing, versions and
//! request ids; a `Device` only deals with credentials.

use alloc::vec::Vec;

use crate::error::DeviceError;
use crate::message::{CertificateChain, HelloInfo, KeyType, SecretBytes};

/// A device's credential store and key operations.
///
/// Every method returns a typed [`DeviceError`] on failure; the agent carries
/// it to the station. After [`Device::lock`] succeeds, `keygen`, `install`
/// and `inject` must fail with [`ErrorCode::Locked`](crate::ErrorCode::Locked).
pub trait Device {
    /// Identify the device: hardware id, firmware version, capabilities.
    fn hello(&mut self) -> Result<HelloInfo, DeviceError>;

    /// Generate a key pair of `key_type` (replacing any key not yet locked)
    /// and return a PKCS#10 CSR (DER) signed by it. The private key never
    /// leaves the device.
    fn keygen(&mut self, key_type: KeyType) -> Result<Vec<u8>, DeviceError>;

    /// Store `chain` (DER, leaf first, not empty) if the leaf certifies the
    /// device's current key; otherwise fail with
    /// [`ErrorCode::KeyMismatch`](crate::ErrorCode::KeyMismatch) and store nothing.
    fn install(&mut self, chain: &CertificateChain) -> Result<(), DeviceError>;

    /// Store a station-made PKCS#8 DER key and its chain (leaf first). The
    /// leaf must certify that key.
    fn inject(&mut self, key: &SecretBytes, chain: &CertificateChain) -> Result<(), DeviceError>;

    /// Sign `message` with the installed key; see [`KeyType`] for the
    /// schemes. The [`Agent`](crate::agent::Agent) passes
    /// [`prove_message`](crate::message::prove_message) of the station's
    /// nonce, never the nonce alone; a device signs exactly what it is given.
    fn prove(&mut self, message: &[u8]) -> Result<Proof, DeviceError>;

    /// Make credential storage read-only.
    fn lock(&mut self) -> Result<(), DeviceError>;
}

/// A proof of possession: a signature over the prove message built from the
/// station's nonce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proof {
    /// Type of the signing key.
    pub key_type: KeyType,
    /// The signature.
    pub signature: Vec<u8>,
}
