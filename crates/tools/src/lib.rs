//! Test and load tooling, kept out of the scenario crates and the binary so
//! that nothing here can end up on a production path:
//!
//! - [`vendor_sim`]: a stand-in HSM vendor that writes signed
//!   Trust&GO-shaped manifests, honest or tampered (`idmint manifest
//!   generate-test`, the manifest tests and benchmarks);
//! - [`loadtest`]: the load generators behind `idmint loadtest` (fleet
//!   provisioning over MQTT, EST, OCSP), which drive the real server.
//!
//! The device simulator (`idmint devsim`) lives with the device agent
//! protocol it speaks (`idmint-agent`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod loadtest;
pub mod vendor_sim;
