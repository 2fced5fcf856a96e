//! Unit tests over structures a real TPM made (swtpm through tpm2-tools, in
//! `testdata/`: the AK and an identity key's public areas and Names as the
//! tools printed them, a `TPM2_Certify` of the identity key by the AK over the
//! nonce 00112233445566778899aabbccddeeff, and the TPM's RSA EK certificate
//! with the swtpm local CA that signed it). MakeCredential is checked against
//! a real TPM in `tests/tpm_swtpm.rs`.

use super::*;

const AK_PUB: &[u8] = include_bytes!("testdata/ak.pub");
const AK_NAME: &[u8] = include_bytes!("testdata/ak.name");
const ID_PUB: &[u8] = include_bytes!("testdata/id.pub");
const ID_NAME: &[u8] = include_bytes!("testdata/id.name");
const ATTEST: &[u8] = include_bytes!("testdata/certify.attest");
const SIG: &[u8] = include_bytes!("testdata/certify.sig");
const EK_PUB: &[u8] = include_bytes!("testdata/ek-rsa.pub");
const EK_CERT: &[u8] = include_bytes!("testdata/ek-rsa2048.der");
const EK_CA: &[u8] = include_bytes!("testdata/ek-ca.pem");

#[test]
fn names_match_the_tpms() {
    let ak = TpmPublic::from_tpm2b(AK_PUB).unwrap();
    assert_eq!(ak.name(), AK_NAME);
    assert!(ak.attributes().has(
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN
    ));
    let id = TpmPublic::from_tpm2b(ID_PUB).unwrap();
    assert_eq!(id.name(), ID_NAME);
    assert!(matches!(
        id.key(),
        TpmKey::Ecc {
            curve: EccCurve::P256,
            ..
        }
    ));
    assert!(!id.attributes().has(ObjectAttributes::RESTRICTED));
}

#[test]
fn a_real_certify_verifies_and_names_the_key() {
    let ak = TpmPublic::from_tpm2b(AK_PUB).unwrap();
    let id = TpmPublic::from_tpm2b(ID_PUB).unwrap();
    let info = CertifyInfo::from_tpms_attest(ATTEST).unwrap();
    assert_eq!(
        info.extra_data,
        hex::decode("00112233445566778899aabbccddeeff").unwrap()
    );
    assert_eq!(info.certified_name, id.name());
    let sig = TpmSignature::from_tpmt(SIG).unwrap();
    verify_attestation_signature(&ak, &info, &sig).unwrap();

    // One changed byte anywhere in the attestation breaks the signature.
    let mut forged = ATTEST.to_vec();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged = CertifyInfo::from_tpms_attest(&forged).unwrap();
    assert_eq!(
        verify_attestation_signature(&ak, &forged, &sig),
        Err(TpmError::BadSignature)
    );
    // The identity key (not the AK) does not verify the AK's signature.
    assert!(verify_attestation_signature(&id, &info, &sig).is_err());
}

#[test]
fn wrong_magic_type_and_trailing_bytes_are_refused() {
    let mut bad = ATTEST.to_vec();
    bad[0] = 0;
    assert_eq!(
        CertifyInfo::from_tpms_attest(&bad),
        Err(TpmError::NotTpmGenerated)
    );
    let mut quote = ATTEST.to_vec();
    quote[5] = 0x18; // TPM_ST_ATTEST_QUOTE
    assert!(matches!(
        CertifyInfo::from_tpms_attest(&quote),
        Err(TpmError::NotACertify {
            attest_type: 0x8018
        })
    ));
    let mut long = AK_PUB.to_vec();
    long.push(0);
    assert!(matches!(
        TpmPublic::from_tpm2b(&long),
        Err(TpmError::Malformed { .. })
    ));
}

#[test]
fn no_prefix_or_mutation_panics() {
    for input in [AK_PUB, ID_PUB, ATTEST, SIG, EK_PUB] {
        for len in 0..input.len() {
            let _ = TpmPublic::from_tpm2b(&input[..len]);
            let _ = TpmPublic::from_tpmt(&input[..len]);
            let _ = CertifyInfo::from_tpms_attest(&input[..len]);
            let _ = TpmSignature::from_tpmt(&input[..len]);
        }
        for i in 0..input.len() {
            let mut m = input.to_vec();
            m[i] ^= 0xff;
            let _ = TpmPublic::from_tpm2b(&m);
            let _ = CertifyInfo::from_tpms_attest(&m);
            let _ = TpmSignature::from_tpmt(&m);
        }
    }
}

#[test]
fn kdfs_match_an_independent_implementation() {
    // Vectors from Python's hmac/hashlib following Part 1 §11.4.10.
    let key: Vec<u8> = (0..32).collect();
    let mut name = vec![0x00, 0x0b];
    name.extend(0..32u8);
    assert_eq!(
        hex::encode(&*kdfa(HashAlg::Sha256, &key, b"STORAGE\0", &name, &[], 128).unwrap()),
        "8b9746d9cde648e20ad34f7c5099ae8f"
    );
    assert_eq!(
        hex::encode(&*kdfa(HashAlg::Sha256, &key, b"INTEGRITY\0", &[], &[], 512).unwrap()),
        "d46791dd29362215dde127cc788fa5429ca2b999d5b065c0d7c2035dd1537d43\
         278aad03e3b43947cb849dde7b8648d07baafa38888e2000759a5ebe1a2a65a2"
    );
    let z: Vec<u8> = (32..64).collect();
    let u: Vec<u8> = (64..96).collect();
    let v: Vec<u8> = (96..128).collect();
    assert_eq!(
        hex::encode(&*kdfe(HashAlg::Sha256, &z, b"IDENTITY\0", &u, &v, 384)),
        "7a3d66b8361d31a579138f457be8811efd507fd2e74dd5cf37c97af525bd6bea\
         54af1ce82afe75290da2b2684b0cccab"
    );
}

#[test]
fn the_ek_from_its_certificate_is_the_ek_from_the_tpm() {
    let from_tpm = EndorsementKey::from_public(&TpmPublic::from_tpm2b(EK_PUB).unwrap()).unwrap();
    let cert = x509_parser::parse_x509_certificate(EK_CERT).unwrap().1;
    let from_cert = EndorsementKey::from_certificate_spki(cert.public_key().raw).unwrap();
    assert_eq!(from_tpm, from_cert);
    let made = make_credential(&from_cert, AK_NAME, &[7u8; 32]).unwrap();
    // TPM2B_ID_OBJECT: size, TPM2B_DIGEST(HMAC-SHA256), encIdentity (2 + 32).
    assert_eq!(made.credential_blob.len(), 2 + 2 + 32 + 34);
    assert_eq!(made.encrypted_secret.len(), 2 + 256);
    // An AK is not an EK.
    let ak = TpmPublic::from_tpm2b(AK_PUB).unwrap();
    assert!(EndorsementKey::from_public(&ak).is_err());
}

#[test]
fn a_tcg_ek_certificate_chains_to_its_vendor_ca() {
    // Critical SAN of TCG directoryName attributes, EKU 2.23.133.8.1 only.
    let ca = pem::parse(EK_CA).unwrap();
    let now = time::OffsetDateTime::now_utc();
    verify_ek_chain_at(EK_CERT, &[], &[ca.contents()], now).unwrap();
    // The usual TLS client check refuses it (EKU is not clientAuth).
    assert!(crate::verify_chain(EK_CERT, &[], &[ca.contents()]).is_err());
    // Another CA does not anchor it.
    let other = crate::CaBuilder::root("Other TPM vendor", crate::KeyType::P256)
        .build()
        .unwrap();
    assert!(verify_ek_chain_at(EK_CERT, &[], &[other.certificate_der()], now).is_err());
}

#[test]
fn the_spki_of_a_tpm_key_round_trips() {
    let id = TpmPublic::from_tpm2b(ID_PUB).unwrap();
    let spki = id.spki_der();
    crate::PublicKey::from_spki_der(&spki).unwrap();
    assert_eq!(spki::key_from_spki(&spki).unwrap(), *id.key());
    let ek = TpmPublic::from_tpm2b(EK_PUB).unwrap();
    assert_eq!(spki::key_from_spki(&ek.spki_der()).unwrap(), *ek.key());
}
