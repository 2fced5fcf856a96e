//! Private keys at rest: PKCS#8 encrypted with PBES2 (scrypt + AES-256-CBC),
//! as `ENCRYPTED PRIVATE KEY` PEM that openssl reads too.

use pkcs8::pkcs5::{pbes2, scrypt};
use pkcs8::{EncryptedPrivateKeyInfo, LineEnding, PrivateKeyInfo};
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::PkiError;

/// How hard the passphrase-based key derivation works.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyProtection {
    /// scrypt cost as log2(N).
    pub scrypt_log_n: u8,
}

impl Default for KeyProtection {
    /// scrypt N = 2^14, r = 8, p = 1 (16 MiB, tens of milliseconds): CA keys
    /// are decrypted once per process. These are OpenSSL's own scrypt
    /// defaults, and OpenSSL refuses to decrypt anything needing more than
    /// 32 MiB, so `openssl pkcs8` can open an exported CA key.
    fn default() -> Self {
        KeyProtection { scrypt_log_n: 14 }
    }
}

/// Encrypts PKCS#8 DER under `passphrase`, returning PEM.
pub fn encrypt_private_key(
    pkcs8_der: &[u8],
    passphrase: &[u8],
    protection: KeyProtection,
) -> Result<Zeroizing<String>, PkiError> {
    let info =
        PrivateKeyInfo::try_from(pkcs8_der).map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    OsRng.fill_bytes(&mut salt);
    OsRng.fill_bytes(&mut iv);
    let params = scrypt::Params::new(protection.scrypt_log_n, 8, 1, 32)
        .map_err(|e| PkiError::InvalidKey(format!("scrypt parameters: {e}")))?;
    let pbes2 = pbes2::Parameters::scrypt_aes256cbc(params, &salt, &iv)
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let doc = info
        .encrypt_with_params(pbes2, passphrase)
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let pem = doc
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    Ok(Zeroizing::new(pem.to_string()))
}

/// Decrypts an `ENCRYPTED PRIVATE KEY` PEM to PKCS#8 DER.
pub fn decrypt_private_key(
    pem_text: &str,
    passphrase: &[u8],
) -> Result<Zeroizing<Vec<u8>>, PkiError> {
    let block = pem::parse(pem_text).map_err(|e| PkiError::BadPem {
        expected: "ENCRYPTED PRIVATE KEY",
        reason: e.to_string(),
    })?;
    if block.tag() != "ENCRYPTED PRIVATE KEY" {
        return Err(PkiError::BadPem {
            expected: "ENCRYPTED PRIVATE KEY",
            reason: format!("found a {} block", block.tag()),
        });
    }
    let info = EncryptedPrivateKeyInfo::try_from(block.contents())
        .map_err(|e| PkiError::InvalidKey(e.to_string()))?;
    let doc = info
        .decrypt(passphrase)
        .map_err(|_| PkiError::KeyDecryption)?;
    Ok(Zeroizing::new(doc.as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKey, KeyType};

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let key = DeviceKey::generate(KeyType::P256).unwrap();
        let weak = KeyProtection { scrypt_log_n: 10 };
        let pem = encrypt_private_key(&key.pkcs8_der(), b"secret", weak).unwrap();
        assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let der = decrypt_private_key(&pem, b"secret").unwrap();
        assert_eq!(&*der, &*key.pkcs8_der());
        assert!(matches!(
            decrypt_private_key(&pem, b"wrong"),
            Err(PkiError::KeyDecryption)
        ));
    }
}
