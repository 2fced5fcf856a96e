//! Hashing and randomness for the whole workspace: certificate ids, key
//! fingerprints, image and bundle digests, token hashes, nonces and ids.
//! One place, one implementation (aws-lc-rs), so no other crate calls a
//! primitive itself.

use aws_lc_rs::digest;

use crate::PkiError;

/// Fills `out` from the system random generator.
pub fn random_fill(out: &mut [u8]) -> Result<(), PkiError> {
    aws_lc_rs::rand::fill(out).map_err(|_| PkiError::Randomness)
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
