//! Error types: frame and message errors (no_std core), the typed device
//! error carried in responses, and the std-side client, link, simulator and
//! proof errors.

use alloc::string::String;
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a frame or the message inside it was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// More than [`MAX_FRAME_LEN`](crate::frame::MAX_FRAME_LEN) bytes arrived
    /// before a frame delimiter, or a message is too large to send.
    #[error("frame too large: {len} bytes, limit {max}")]
    TooLarge {
        /// Bytes seen (at least).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes between two delimiters are not valid COBS.
    #[error("invalid COBS encoding")]
    BadEncoding,
    /// The frame is shorter than its CRC trailer.
    #[error("frame truncated: {len} bytes")]
    Truncated {
        /// Decoded length of the frame.
        len: usize,
    },
    /// The CRC-32 trailer does not match the payload.
    #[error("CRC mismatch: frame says {expected:#010x}, payload has {actual:#010x}")]
    CrcMismatch {
        /// CRC in the trailer.
        expected: u32,
        /// CRC computed over the payload.
        actual: u32,
    },
    /// The payload is not a valid CBOR message of the expected type.
    #[error("malformed message")]
    BadMessage,
}

/// Numeric error code carried in an error response. Codes are stable; an
/// unknown code from a newer device is kept as [`ErrorCode::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the device does not support this request or key type.
    Unsupported,
    /// 2: the certificate's public key is not the device's key.
    KeyMismatch,
    /// 3: credential storage is locked.
    Locked,
    /// 4: the device has no key yet.
    NoKey,
    /// 5: the device has no certificate yet.
    NoCertificate,
    /// 6: the request is malformed or its contents are invalid.
    BadRequest,
    /// 7: the request's protocol version is not supported.
    UnsupportedVersion,
    /// 8: an internal failure on the device (storage, crypto).
    Internal,
    /// Any other code.
    Unknown(u16),
}

impl ErrorCode {
    /// The numeric wire code.
    pub fn code(self) -> u16 {
        match self {
            Self::Unsupported => 1,
            Self::KeyMismatch => 2,
            Self::Locked => 3,
            Self::NoKey => 4,
            Self::NoCertificate => 5,
            Self::BadRequest => 6,
            Self::UnsupportedVersion => 7,
            Self::Internal => 8,
            Self::Unknown(c) => c,
        }
    }

    /// The code for a wire number.
    pub fn from_code(code: u16) -> Self {
        match code {
            1 => Self::Unsupported,
            2 => Self::KeyMismatch,
            3 => Self::Locked,
            4 => Self::NoKey,
            5 => Self::NoCertificate,
            6 => Self::BadRequest,
            7 => Self::UnsupportedVersion,
            8 => Self::Internal,
            c => Self::Unknown(c),
        }
    }

    /// A short stable name (`locked`, `key-mismatch`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Unsupported => "unsupported",
            Self::KeyMismatch => "key-mismatch",
            Self::Locked => "locked",
            Self::NoKey => "no-key",
            Self::NoCertificate => "no-certificate",
            Self::BadRequest => "bad-request",
            Self::UnsupportedVersion => "unsupported-version",
            Self::Internal => "internal",
            Self::Unknown(_) => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u16(self.code())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Self::from_code(u16::deserialize(d)?))
    }
}

/// A failure reported by the device: a stable code and a human message.
/// On the wire: `{"op": "error", "code": u16, "message": text}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("device error {code}: {message}")]
pub struct DeviceError {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong, for people.
    pub message: String,
}

impl DeviceError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// [`ErrorCode::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unsupported, message)
    }

    /// [`ErrorCode::KeyMismatch`].
    pub fn key_mismatch() -> Self {
        Self::new(
            ErrorCode::KeyMismatch,
            "certificate public key does not match the device key",
        )
    }

    /// [`ErrorCode::Locked`].
    pub fn locked() -> Self {
        Self::new(ErrorCode::Locked, "credential storage is locked")
    }

    /// [`ErrorCode::NoKey`].
    pub fn no_key() -> Self {
        Self::new(ErrorCode::NoKey, "no key on the device")
    }

    /// [`ErrorCode::NoCertificate`].
    pub fn no_certificate() -> Self {
        Self::new(ErrorCode::NoCertificate, "no certificate on the device")
    }

    /// [`ErrorCode::BadRequest`].
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// [`ErrorCode::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
}

#[cfg(feature = "std")]
pub use std_errors::*;

#[cfg(feature = "std")]
mod std_errors {
    use super::{DeviceError, FrameError};
    use crate::message::RequestKind;
    use std::io;
    use std::path::PathBuf;
    use std::time::Duration;

    /// Why a device address string could not be parsed.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum AddressError {
        /// The scheme is not `tcp:`, `serial:` or `exec:`.
        #[error("unknown device address scheme in {0:?}; use tcp://HOST:PORT, serial:PATH[@BAUD] or exec:CMD")]
        UnknownScheme(String),
        /// `tcp://` without `HOST:PORT`.
        #[error("bad TCP address {0:?}: expected tcp://HOST:PORT")]
        BadTcp(String),
        /// `serial:` with an empty path or a bad baud rate.
        #[error("bad serial address {0:?}: expected serial:PATH[@BAUD]")]
        BadSerial(String),
        /// `exec:` with an empty command.
        #[error("empty command in exec: address")]
        EmptyCommand,
    }

    /// A transport failure.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum LinkError {
        /// Opening the link failed.
        #[error("cannot open {address}: {source}")]
        Open {
            /// The address being opened.
            address: String,
            /// The cause.
            source: io::Error,
        },
        /// Reading or writing failed.
        #[error("link I/O error: {0}")]
        Io(#[from] io::Error),
        /// The baud rate is not one the serial driver supports.
        #[error("unsupported baud rate {0}")]
        BadBaud(u32),
    }

    /// A station-side failure talking to a device.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum ClientError {
        /// No complete response within the timeout.
        #[error("no response to {request} within {timeout:?}")]
        Timeout {
            /// The request that went unanswered.
            request: RequestKind,
            /// The timeout.
            timeout: Duration,
        },
        /// The device closed the link (EOF).
        #[error("link closed by the device")]
        LinkClosed,
        /// The transport failed.
        #[error(transparent)]
        Link(#[from] LinkError),
        /// The device sent a bad frame (bad COBS, CRC mismatch, oversize,
        /// malformed CBOR).
        #[error("bad frame from device: {0}")]
        Frame(#[from] FrameError),
        /// The device answered with an error.
        #[error(transparent)]
        Device(#[from] DeviceError),
        /// The response echoes another request id.
        #[error("response id {got} does not match request id {expected}")]
        UnexpectedId {
            /// The id sent.
            expected: u32,
            /// The id received.
            got: u32,
        },
        /// The response is of the wrong kind for the request.
        #[error("unexpected response to {request}")]
        UnexpectedResponse {
            /// The request sent.
            request: RequestKind,
        },
        /// The response speaks another protocol version than the station.
        #[error("the device speaks agent protocol version {device}; this station speaks version {station}")]
        UnsupportedVersion {
            /// The version of the device's response.
            device: u16,
            /// The version this station speaks ([`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION)).
            station: u16,
        },
    }

    impl ClientError {
        /// The device's error code, if this is a device error.
        pub fn device_code(&self) -> Option<super::ErrorCode> {
            match self {
                Self::Device(e) => Some(e.code),
                _ => None,
            }
        }
    }

    /// A failure of the device simulator.
    #[derive(Debug, thiserror::Error)]
    #[non_exhaustive]
    pub enum DevsimError {
        /// Reading or writing the state directory failed.
        #[error("state {path}: {source}")]
        State {
            /// The file or directory.
            path: PathBuf,
            /// The cause.
            source: io::Error,
        },
        /// The stored key or certificate could not be parsed.
        #[error("corrupt state file {path}: {reason}")]
        CorruptState {
            /// The file.
            path: PathBuf,
            /// Why.
            reason: String,
        },
        /// Binding or accepting failed.
        #[error("listen: {0}")]
        Listen(io::Error),
        /// Opening the pseudo-terminal failed.
        #[error("pty: {0}")]
        Pty(String),
        /// Serving a connection failed.
        #[error("serve: {0}")]
        Io(#[from] io::Error),
    }

    /// Why a proof of possession did not verify.
    #[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
    #[non_exhaustive]
    pub enum ProofError {
        /// The certificate cannot be parsed.
        #[error("bad certificate: {0}")]
        BadCertificate(String),
        /// The certificate's key is of a type the protocol does not use.
        #[error("unsupported public key algorithm {0}")]
        UnsupportedKey(String),
        /// The signature does not verify.
        #[error("signature does not verify")]
        BadSignature,
    }
}
