//! The station side (std): [`AgentClient`] sends one request at a time over a
//! [`Link`] and waits, with a timeout, for the response that echoes its id.

use std::io;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::device::Proof;
use crate::error::{ClientError, FrameError};
use crate::frame::{decode_message, encode_message, FrameDecoder, DELIMITER};
use crate::link::{DeviceAddress, Link};
use crate::message::{
    CertificateChain, HelloInfo, KeyType, Request, RequestBody, RequestKind, Response,
    ResponseBody, SecretBytes, PROTOCOL_VERSION, UNPARSED_REQUEST_ID,
};

/// Default time to wait for a response. Key generation on a small
/// microcontroller can take seconds.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A station's connection to one device agent.
///
/// ```no_run
/// use idmint_agent::{AgentClient, DeviceAddress, KeyType};
///
/// let addr: DeviceAddress = "tcp://127.0.0.1:7000".parse()?;
/// let mut client = AgentClient::connect(&addr)?;
/// let hello = client.hello()?;
/// let csr_der = client.keygen(KeyType::P256)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct AgentClient {
    link: Link,
    decoder: FrameDecoder,
    next_id: u32,
    timeout: Duration,
    /// Id of a request that timed out; its late response is skipped.
    stale: Option<u32>,
}

impl AgentClient {
    /// Open `address` (connect timeout [`DEFAULT_TIMEOUT`]) and wrap it.
    pub fn connect(address: &DeviceAddress) -> Result<Self, ClientError> {
        Ok(Self::new(Link::open(address, DEFAULT_TIMEOUT)?))
    }

    /// A client over an open link, with [`DEFAULT_TIMEOUT`].
    pub fn new(link: Link) -> Self {
        Self {
            link,
            decoder: FrameDecoder::new(),
            next_id: 1,
            timeout: DEFAULT_TIMEOUT,
            stale: None,
        }
    }

    /// Set the response timeout (builder style).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Set the response timeout.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The link's address.
    pub fn address(&self) -> &str {
        self.link.address()
    }

    /// `hello`: who the device is and what it can do.
    pub fn hello(&mut self) -> Result<HelloInfo, ClientError> {
        match self.request(RequestBody::Hello)? {
            ResponseBody::Hello(info) => Ok(info),
            _ => Err(unexpected(RequestKind::Hello)),
        }
    }

    /// `keygen`: the device makes a key of `key_type`; returns its PKCS#10
    /// CSR (DER). The caller must verify the CSR (signature, key type).
    pub fn keygen(&mut self, key_type: KeyType) -> Result<Vec<u8>, ClientError> {
        match self.request(RequestBody::Keygen { key_type })? {
            ResponseBody::Csr { csr } => Ok(csr),
            _ => Err(unexpected(RequestKind::Keygen)),
        }
    }

    /// `install`: store `chain` (DER, leaf first) for the device's key.
    pub fn install(&mut self, chain: &[Vec<u8>]) -> Result<(), ClientError> {
        let chain = CertificateChain::from(chain);
        match self.request(RequestBody::Install { chain })? {
            ResponseBody::Installed => Ok(()),
            _ => Err(unexpected(RequestKind::Install)),
        }
    }

    /// `inject`: push a PKCS#8 DER key and its chain (leaf first) to a device
    /// that cannot generate keys. The request buffer is zeroized after use.
    pub fn inject(&mut self, key_pkcs8_der: &[u8], chain: &[Vec<u8>]) -> Result<(), ClientError> {
        let body = RequestBody::Inject {
            key: SecretBytes::new(key_pkcs8_der.to_vec()),
            chain: CertificateChain::from(chain),
        };
        match self.request(body)? {
            ResponseBody::Installed => Ok(()),
            _ => Err(unexpected(RequestKind::Inject)),
        }
    }

    /// `prove`: the device signs `nonce` with its installed key. Check the
    /// result with [`verify_proof`](crate::verify_proof).
    pub fn prove(&mut self, nonce: &[u8]) -> Result<Proof, ClientError> {
        match self.request(RequestBody::Prove {
            nonce: nonce.to_vec(),
        })? {
            ResponseBody::Proof {
                key_type,
                signature,
            } => Ok(Proof {
                key_type,
                signature,
            }),
            _ => Err(unexpected(RequestKind::Prove)),
        }
    }

    /// `lock`: make the device's credential storage read-only.
    pub fn lock(&mut self) -> Result<(), ClientError> {
        match self.request(RequestBody::Lock)? {
            ResponseBody::Locked => Ok(()),
            _ => Err(unexpected(RequestKind::Lock)),
        }
    }

    /// Send any request and wait for its response body. A device error
    /// response becomes [`ClientError::Device`].
    pub fn request(&mut self, body: RequestBody) -> Result<ResponseBody, ClientError> {
        let kind = body.kind();
        let id = self.next_id;
        self.next_id = match self.next_id.wrapping_add(1) {
            UNPARSED_REQUEST_ID => 1,
            n => n,
        };
        let request = Request {
            v: PROTOCOL_VERSION,
            id,
            body,
        };
        let frame = Zeroizing::new(encode_message(&request)?);
        self.decoder.reset();
        // A leading delimiter ends any garbage the device may have buffered.
        let mut wire = Zeroizing::new(Vec::with_capacity(frame.len() + 1));
        wire.push(DELIMITER);
        wire.extend_from_slice(&frame);
        self.link.send(&wire).map_err(link_io)?;

        match self.await_response(id, kind) {
            Err(ClientError::Timeout { .. }) => {
                self.stale = Some(id);
                Err(ClientError::Timeout {
                    request: kind,
                    timeout: self.timeout,
                })
            }
            other => other,
        }
    }

    fn await_response(&mut self, id: u32, kind: RequestKind) -> Result<ResponseBody, ClientError> {
        let deadline = Instant::now() + self.timeout;
        let mut buf = [0u8; 4096];
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClientError::Timeout {
                    request: kind,
                    timeout: self.timeout,
                });
            }
            let n = match self.link.recv(&mut buf, remaining) {
                Ok(0) => return Err(ClientError::LinkClosed),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(link_io(e)),
            };
            let frames: Vec<Result<Vec<u8>, FrameError>> = self.decoder.feed(&buf[..n]).collect();
            for frame in frames {
                let response: Response = decode_message(&frame?)?;
                if response.v != PROTOCOL_VERSION {
                    return Err(ClientError::UnsupportedVersion {
                        device: response.v,
                        station: PROTOCOL_VERSION,
                    });
                }
                if Some(response.id) == self.stale && response.id != id {
                    continue;
                }
                if response.id != id {
                    if let (UNPARSED_REQUEST_ID, ResponseBody::Error(err)) =
                        (response.id, &response.body)
                    {
                        return Err(ClientError::Device(err.clone()));
                    }
                    return Err(ClientError::UnexpectedId {
                        expected: id,
                        got: response.id,
                    });
                }
                return match response.body {
                    ResponseBody::Error(err) => Err(ClientError::Device(err)),
                    body => Ok(body),
                };
            }
        }
    }
}

fn unexpected(request: RequestKind) -> ClientError {
    ClientError::UnexpectedResponse { request }
}

fn link_io(e: io::Error) -> ClientError {
    match e.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::UnexpectedEof => ClientError::LinkClosed,
        _ => ClientError::Link(e.into()),
    }
}
