//! The idmint device agent protocol.
//!
//! A factory provisioning station talks to a device over any byte stream (a
//! serial port, TCP, or the stdin/stdout of `ssh device idmint-agent`). Each
//! request and response is a CBOR message with a CRC-32 trailer, COBS-framed
//! with a `0x00` delimiter; see `docs/station-protocol.md` for the wire
//! contract.
//!
//! - Protocol core (`no_std` + `alloc`): [`message`], [`frame`], the
//!   [`Device`] trait, and the [`Agent`] that serves a device.
//! - With the `std` feature (default): [`DeviceAddress`] and [`Link`]
//!   transports, the station's [`AgentClient`], [`verify_proof`], and the
//!   [`DeviceSimulator`] behind `idmint devsim` ([`run_devsim`]).
//!
//! ```
//! use idmint_agent::{Agent, AgentClient, DeviceSimulator, KeyType, Link};
//! use idmint_agent::link::Transport;
//! use std::time::Duration;
//!
//! /// An in-memory link: bytes the station sends go straight to an agent.
//! struct Loopback(Agent<DeviceSimulator>, Vec<u8>);
//! impl Transport for Loopback {
//!     fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
//!         for frame in self.0.receive(bytes) {
//!             self.1.extend(frame);
//!         }
//!         Ok(())
//!     }
//!     fn recv(&mut self, buf: &mut [u8], _: Duration) -> std::io::Result<usize> {
//!         let n = buf.len().min(self.1.len());
//!         buf[..n].copy_from_slice(&self.1[..n]);
//!         self.1.drain(..n);
//!         Ok(n)
//!     }
//! }
//!
//! let state = std::env::temp_dir().join(format!("idmint-doc-{}", std::process::id()));
//! let device = DeviceSimulator::open(&state, Some("dev-0001".into()), false)?;
//! let link = Link::from_transport(Box::new(Loopback(Agent::new(device), Vec::new())), "loopback");
//! let mut station = AgentClient::new(link);
//!
//! let hello = station.hello()?;
//! assert_eq!(hello.hw_id, "dev-0001");
//! let csr_der = station.keygen(KeyType::P256)?; // PKCS#10, CN = dev-0001
//! assert!(!csr_der.is_empty());
//! # std::fs::remove_dir_all(&state)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod agent;
pub mod device;
pub mod error;
pub mod frame;
pub mod message;

#[cfg(feature = "std")]
pub mod client;
#[cfg(feature = "std")]
pub mod link;
#[cfg(feature = "std")]
mod proof;
#[cfg(feature = "std")]
pub mod sim;

pub use agent::Agent;
pub use device::{Device, Proof};
pub use error::{DeviceError, ErrorCode, FrameError};
pub use frame::{FrameDecoder, MAX_FRAME_LEN};
pub use message::{
    prove_message, Capability, CertificateChain, HelloInfo, KeyType, Request, RequestBody,
    RequestKind, Response, ResponseBody, SecretBytes, PROTOCOL_VERSION, PROVE_CONTEXT,
};

#[cfg(feature = "std")]
pub use client::AgentClient;
#[cfg(feature = "std")]
pub use error::{AddressError, ClientError, DevsimError, LinkError, ProofError};
#[cfg(feature = "std")]
pub use link::{serve_io, serve_stdio, DeviceAddress, Link};
#[cfg(feature = "std")]
pub use proof::verify_proof;
#[cfg(feature = "std")]
pub use sim::{
    run_devsim, DeviceSimulator, DevsimListen, DevsimOptions, DevsimServer, Misbehaviour,
};
