//! Hashing and randomness for the whole workspace: certificate ids, key
//! fingerprints, image and bundle digests, token hashes and their
//! constant-time comparison, nonces and ids, keys derived from a
//! passphrase and the MACs made with them.
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

/// A 32-byte key for `purpose`, derived from `secret` (a passphrase) with
/// HKDF-SHA256, so one secret gives unrelated keys for unrelated uses.
pub fn derive_key(secret: &[u8], purpose: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, PkiError> {
    use aws_lc_rs::hkdf;
    struct Len32;
    impl hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"idmint-derive-key-v1").extract(secret);
    let info = [purpose.as_bytes()];
    let failed = |_| PkiError::InvalidKey(format!("deriving the {purpose} key failed"));
    prk.expand(&info, Len32)
        .map_err(failed)?
        .fill(out.as_mut())
        .map_err(failed)?;
    Ok(out)
}

/// HMAC-SHA256 of `message` under `key`.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(aws_lc_rs::hmac::sign(&key, message).as_ref());
    out
}

/// Whether `tag` is the HMAC-SHA256 of `message` under `key` (compared in
/// constant time).
pub fn hmac_sha256_verify(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&key, message, tag).is_ok()
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
    fn hmac_known_answer_and_derived_keys() {
        // RFC 4231 test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let tag = hmac_sha256(b"k", b"m");
        assert!(hmac_sha256_verify(b"k", b"m", &tag));
        assert!(!hmac_sha256_verify(b"k", b"n", &tag));
        assert!(!hmac_sha256_verify(b"j", b"m", &tag));
        let key = |secret: &[u8], purpose| *derive_key(secret, purpose).unwrap();
        let a = key(b"passphrase", "audit checkpoint");
        assert_eq!(a, key(b"passphrase", "audit checkpoint"));
        assert_ne!(a, key(b"passphrase", "something else"));
        assert_ne!(a, key(b"other", "audit checkpoint"));
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn known_answer() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
