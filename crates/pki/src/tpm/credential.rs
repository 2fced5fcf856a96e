//! `MakeCredential` done by the verifier (TPM 2.0 Part 1 §24, Part 3
//! `TPM2_MakeCredential`): a secret wrapped so that only the TPM holding the
//! endorsement key, and only for an object with the given Name, can recover it
//! with `TPM2_ActivateCredential`. The seed goes to the EK with RSA-OAEP
//! (label `IDENTITY`) or ECDH + KDFe; KDFa derives the AES-CFB key and the
//! HMAC key (Part 1 §11.4.9–11.4.10, Annex B and C).

use aws_lc_rs::{agreement, cipher, hmac, rsa};
use zeroize::Zeroizing;

use super::spki::key_from_spki;
use super::{EccCurve, HashAlg, ObjectAttributes, TpmError, TpmKey, TpmPublic};

/// The label binding a seed to credential protection (with its NUL).
const IDENTITY: &[u8] = b"IDENTITY\0";
/// The label of the symmetric key derived from the seed.
const STORAGE: &[u8] = b"STORAGE\0";
/// The label of the HMAC key derived from the seed.
const INTEGRITY: &[u8] = b"INTEGRITY\0";

/// What `MakeCredential` needs of an endorsement key: its public key, its
/// Name hash and its symmetric key size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndorsementKey {
    key: TpmKey,
    name_alg: HashAlg,
    aes_bits: u16,
}

impl EndorsementKey {
    /// From an EK's public area: a restricted decryption key with AES-CFB.
    pub fn from_public(ek: &TpmPublic) -> Result<Self, TpmError> {
        let attributes = ek.attributes();
        if !attributes.has(ObjectAttributes::RESTRICTED | ObjectAttributes::DECRYPT)
            || attributes.has(ObjectAttributes::SIGN)
        {
            return Err(TpmError::UnusableEndorsementKey(
                "not a restricted decryption key",
            ));
        }
        let aes = ek
            .symmetric()
            .ok_or(TpmError::UnusableEndorsementKey("no symmetric algorithm"))?;
        Ok(EndorsementKey {
            key: ek.key().clone(),
            name_alg: ek.name_alg(),
            aes_bits: aes.key_bits,
        })
    }

    /// From the SubjectPublicKeyInfo of an EK certificate, assuming the TCG EK
    /// Credential Profile's default templates the key was made from: RSA-2048
    /// and P-256 use SHA-256 and AES-128 (templates L-1, L-2, H-1, H-2);
    /// RSA-3072 and P-384 use SHA-384 and AES-256 (H-3, H-4).
    pub fn from_certificate_spki(spki_der: &[u8]) -> Result<Self, TpmError> {
        let key = key_from_spki(spki_der)?;
        let (name_alg, aes_bits) = match &key {
            TpmKey::Rsa { modulus, .. } if modulus.len() == 256 => (HashAlg::Sha256, 128),
            TpmKey::Rsa { modulus, .. } if modulus.len() == 384 => (HashAlg::Sha384, 256),
            TpmKey::Ecc {
                curve: EccCurve::P256,
                ..
            } => (HashAlg::Sha256, 128),
            TpmKey::Ecc {
                curve: EccCurve::P384,
                ..
            } => (HashAlg::Sha384, 256),
            TpmKey::Rsa { .. } => {
                return Err(TpmError::UnusableEndorsementKey(
                    "an RSA EK must have 2048 or 3072 bits",
                ))
            }
        };
        Ok(EndorsementKey {
            key,
            name_alg,
            aes_bits,
        })
    }

    /// From an EK certificate (DER), with the certificate's
    /// SubjectPublicKeyInfo (DER), which identifies the TPM.
    pub fn from_certificate_der(der: &[u8]) -> Result<(Self, Vec<u8>), TpmError> {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).map_err(|_| {
            TpmError::Malformed {
                structure: "EK certificate",
                reason: "not an X.509 certificate",
            }
        })?;
        let spki = cert.public_key().raw.to_vec();
        Ok((Self::from_certificate_spki(&spki)?, spki))
    }

    /// The public key.
    pub fn key(&self) -> &TpmKey {
        &self.key
    }
}

/// The output of `MakeCredential`, marshalled as `TPM2_ActivateCredential`
/// takes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MadeCredential {
    /// `TPM2B_ID_OBJECT`: the integrity HMAC and the encrypted credential.
    pub credential_blob: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET`: the seed, encrypted to the EK.
    pub encrypted_secret: Vec<u8>,
}

/// Wraps `credential` (at most the EK's Name-hash size) for the object named
/// `object_name` (the AK's Name) in the TPM holding `ek`.
pub fn make_credential(
    ek: &EndorsementKey,
    object_name: &[u8],
    credential: &[u8],
) -> Result<MadeCredential, TpmError> {
    let hash = ek.name_alg;
    if credential.is_empty() || credential.len() > hash.len() {
        return Err(TpmError::UnusableEndorsementKey(
            "the credential must be 1 to nameAlg-size bytes",
        ));
    }
    let (seed, encrypted_secret) = match &ek.key {
        TpmKey::Rsa { modulus, exponent } => rsa_seed(hash, modulus, *exponent)?,
        TpmKey::Ecc { curve, x, y } => ecc_seed(hash, *curve, x, y)?,
    };
    let aes_key = kdfa(
        hash,
        &seed,
        STORAGE,
        object_name,
        &[],
        usize::from(ek.aes_bits),
    )?;
    let hmac_key = kdfa(hash, &seed, INTEGRITY, &[], &[], hash.len() * 8)?;

    // encIdentity = CFB(symKey, IV = 0, TPM2B_DIGEST(credential)).
    let mut enc_identity = Zeroizing::new(Vec::with_capacity(credential.len() + 2));
    enc_identity.extend_from_slice(&(credential.len() as u16).to_be_bytes());
    enc_identity.extend_from_slice(credential);
    let algorithm = match ek.aes_bits {
        128 => &cipher::AES_128,
        _ => &cipher::AES_256,
    };
    let key = cipher::UnboundCipherKey::new(algorithm, &aes_key)
        .map_err(|_| TpmError::Crypto("AES key"))?;
    cipher::EncryptingKey::cfb128(key)
        .and_then(|k| {
            k.less_safe_encrypt(
                &mut enc_identity,
                cipher::EncryptionContext::Iv128(aws_lc_rs::iv::FixedLength::from([0u8; 16])),
            )
        })
        .map_err(|_| TpmError::Crypto("AES-CFB"))?;

    // outerHMAC = HMAC(hmacKey, encIdentity || Name).
    let tag = {
        let key = hmac::Key::new(hash.hmac_alg(), &hmac_key);
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&enc_identity);
        ctx.update(object_name);
        ctx.sign()
    };
    let tag = tag.as_ref();
    let inner_len = 2 + tag.len() + enc_identity.len();
    let mut credential_blob = Vec::with_capacity(2 + inner_len);
    credential_blob.extend_from_slice(&(inner_len as u16).to_be_bytes());
    credential_blob.extend_from_slice(&(tag.len() as u16).to_be_bytes());
    credential_blob.extend_from_slice(tag);
    credential_blob.extend_from_slice(&enc_identity);
    Ok(MadeCredential {
        credential_blob,
        encrypted_secret,
    })
}

/// RSA EK: a random seed of the hash's size, RSA-OAEP encrypted with the
/// EK's Name hash and the label `IDENTITY\0`.
fn rsa_seed(
    hash: HashAlg,
    modulus: &[u8],
    exponent: u32,
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), TpmError> {
    let mut seed = Zeroizing::new(vec![0u8; hash.len()]);
    crate::random_fill(&mut seed).map_err(|_| TpmError::Crypto("random"))?;
    let spki = super::spki::spki_der(&TpmKey::Rsa {
        modulus: modulus.to_vec(),
        exponent,
    });
    let public = rsa::PublicEncryptingKey::from_der(&spki)
        .map_err(|_| TpmError::UnusableEndorsementKey("the RSA key is not usable for OAEP"))?;
    let oaep =
        rsa::OaepPublicEncryptingKey::new(public).map_err(|_| TpmError::Crypto("OAEP key"))?;
    let algorithm = match hash {
        HashAlg::Sha1 => &rsa::OAEP_SHA1_MGF1SHA1,
        HashAlg::Sha256 => &rsa::OAEP_SHA256_MGF1SHA256,
        HashAlg::Sha384 => &rsa::OAEP_SHA384_MGF1SHA384,
        HashAlg::Sha512 => &rsa::OAEP_SHA512_MGF1SHA512,
    };
    let mut ciphertext = vec![0u8; oaep.ciphertext_size()];
    let len = oaep
        .encrypt(algorithm, &seed, &mut ciphertext, Some(IDENTITY))
        .map_err(|_| TpmError::Crypto("RSA-OAEP"))?
        .len();
    ciphertext.truncate(len);
    let mut encrypted = (len as u16).to_be_bytes().to_vec();
    encrypted.extend_from_slice(&ciphertext);
    Ok((seed, encrypted))
}

/// ECC EK: an ephemeral key on the EK's curve; seed = KDFe(Z, `IDENTITY`,
/// ephemeral x, EK x); the encrypted secret is the ephemeral point.
fn ecc_seed(
    hash: HashAlg,
    curve: EccCurve,
    x: &[u8],
    y: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>), TpmError> {
    let algorithm = match curve {
        EccCurve::P256 => &agreement::ECDH_P256,
        EccCurve::P384 => &agreement::ECDH_P384,
    };
    let ephemeral =
        agreement::EphemeralPrivateKey::generate(algorithm, &aws_lc_rs::rand::SystemRandom::new())
            .map_err(|_| TpmError::Crypto("ephemeral ECDH key"))?;
    let ephemeral_public = ephemeral
        .compute_public_key()
        .map_err(|_| TpmError::Crypto("ephemeral ECDH public key"))?;
    let ephemeral_point = ephemeral_public.as_ref();
    let len = curve.coordinate_len();
    if ephemeral_point.len() != 1 + 2 * len {
        return Err(TpmError::Crypto("ephemeral point size"));
    }
    let (ex, ey) = ephemeral_point[1..].split_at(len);
    let peer = [&[0x04][..], x, y].concat();
    let z = agreement::agree_ephemeral(
        ephemeral,
        agreement::UnparsedPublicKey::new(algorithm, &peer),
        TpmError::UnusableEndorsementKey("the EK's point is not on its curve"),
        |z| Ok(Zeroizing::new(z.to_vec())),
    )?;
    let seed = kdfe(hash, &z, IDENTITY, ex, x, hash.len() * 8);
    // TPMS_ECC_POINT in a TPM2B_ENCRYPTED_SECRET.
    let mut point = Vec::with_capacity(4 + 2 * len);
    for coordinate in [ex, ey] {
        point.extend_from_slice(&(len as u16).to_be_bytes());
        point.extend_from_slice(coordinate);
    }
    let mut encrypted = (point.len() as u16).to_be_bytes().to_vec();
    encrypted.extend_from_slice(&point);
    Ok((seed, encrypted))
}

/// KDFa (Part 1 §11.4.10.2): SP 800-108 counter-mode HMAC, with `label`
/// passed as written (include its NUL), `bits` of output.
pub fn kdfa(
    hash: HashAlg,
    key: &[u8],
    label: &[u8],
    context_u: &[u8],
    context_v: &[u8],
    bits: usize,
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let bits32 = u32::try_from(bits).map_err(|_| TpmError::Crypto("KDFa size"))?;
    let key = hmac::Key::new(hash.hmac_alg(), key);
    let bytes = bits.div_ceil(8);
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + hash.len()));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(context_u);
        ctx.update(context_v);
        ctx.update(&bits32.to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    Ok(out)
}

/// KDFe (Part 1 §11.4.10.3): SP 800-56A concatenation KDF over the shared
/// x-coordinate `z`, with `label` passed as written (include its NUL).
pub fn kdfe(
    hash: HashAlg,
    z: &[u8],
    label: &[u8],
    party_u: &[u8],
    party_v: &[u8],
    bits: usize,
) -> Zeroizing<Vec<u8>> {
    let bytes = bits.div_ceil(8);
    let mut out = Zeroizing::new(Vec::with_capacity(bytes + hash.len()));
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut input = Zeroizing::new(Vec::with_capacity(
            4 + z.len() + label.len() + party_u.len() + party_v.len(),
        ));
        input.extend_from_slice(&counter.to_be_bytes());
        input.extend_from_slice(z);
        input.extend_from_slice(label);
        input.extend_from_slice(party_u);
        input.extend_from_slice(party_v);
        out.extend_from_slice(&Zeroizing::new(hash.digest(&input)));
        counter += 1;
    }
    out.truncate(bytes);
    out
}
