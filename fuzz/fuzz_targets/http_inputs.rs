//! Fuzz what an HTTP client can send `idmint serve`: EST request bodies
//! (base64 and PKCS#10, with and without a content type), `Authorization`
//! headers and OCSP requests must parse or give a typed error, never panic.
#![no_main]

use idmint_pki::ocsp::Request;
use idmint_server::{auth, est, ocsp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = est::decode_base64_body(data);
    for content_type in [None, Some("application/pkcs10"), Some("text/plain")] {
        let _ = est::parse_csr_body(content_type, data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_authorization(text);
    }
    let _ = Request::from_der(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Request::from_der(&ocsp::decode_get(text));
    }
});
