//! Fuzz the PKCS#10 parser: any bytes, PEM or DER, must give a `Csr` or a
//! typed error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = idmint_pki::Csr::from_pem_or_der(data);
    let _ = idmint_pki::CertificateInfo::from_der(data);
});
