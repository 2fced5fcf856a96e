//! Hashing and randomness for the whole workspace: certificate ids, key
//! fingerprints, image and bundle digests, token hashes and their
//! constant-time comparison, nonces and ids.
//! One place, one implementation (aws-lc-rs), so no other crate calls a
//! primitive itself.

use aws_lc_rs::digest;

use crate::PkiError;

/// Fills `out` from the system random generator.
pub fn random_fill(out: &mut [u8]) -> Result<(), PkiError> {
    aws_lc_rs::rand::fill(out).map_err(|_| PkiError::Randomness)
}

/// Whether `a` and `b` are equal, in time that depends only on their
/// lengths (for comparing secrets and their hashes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// SHA-1 of `bytes`, for the one place a standard still names it: the
/// certificate ids of RFC 5019 OCSP requests and a responder's key hash.
/// Never for anything that must resist collisions.
pub(crate) fn sha1_legacy(bytes: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, bytes).as_ref());
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
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
