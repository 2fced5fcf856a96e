//! Fuzz the batch authorization bundle reader (`Authorization::parse`): a
//! station reads a bundle that crossed the factory floor; any bytes give a
//! verified authorization or a typed error, never a panic.
#![no_main]

use std::path::Path;

use idmint_station::offline::Authorization;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(auth) = Authorization::parse(data, Path::new("fuzz.json")) {
        // Whatever verifies names its own batch CA and maker CA.
        assert!(!auth.chain_der.is_empty());
        assert_eq!(auth.id.len(), 64);
    }
});
