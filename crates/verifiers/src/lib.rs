//! Independent verifiers over every kind of object idmint emits, in the
//! manner of rcgen's own `tests/openssl.rs` and `tests/webpki.rs`: the root
//! and issuing CAs, device certificates (key generated here and issued from
//! a CSR), claim certificates, an offline batch CA with the OCSP responder
//! and CRL signer it signs for the maker, the online delegated OCSP
//! responder, CRLs, OCSP responses and the server's TLS certificate.
//!
//! Each object is made through the flows API, exactly as the CLI and the
//! server make it, and checked by three implementations that share no code
//! with idmint's own checks: the `openssl` command line, rustls-webpki
//! (what rustls-based brokers and gateways run) and x509-parser. The crate
//! holds nothing but its tests (`tests/every_object.rs`).
