//! Fuzz the TPM 2.0 structure parsers a device's attestation feeds
//! (TPM2B_PUBLIC / TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE) and what is
//! computed from them: any bytes give a value or a typed error, never a panic.
#![no_main]

use idmint_pki::tpm::{CertifyInfo, EndorsementKey, TpmPublic, TpmSignature};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for public in [TpmPublic::from_tpm2b(data), TpmPublic::from_tpmt(data)]
        .into_iter()
        .flatten()
    {
        let _ = public.name();
        let _ = public.spki_der();
        let _ = EndorsementKey::from_public(&public);
    }
    let _ = CertifyInfo::from_tpms_attest(data);
    let _ = TpmSignature::from_tpmt(data);
    let _ = EndorsementKey::from_certificate_der(data);
});
