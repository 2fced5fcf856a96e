//! The device side of the protocol: [`Agent`] turns request frames into
//! response frames by calling a [`Device`]. It never panics on input.

use alloc::format;
use alloc::vec::Vec;

use crate::device::Device;
use crate::error::{DeviceError, ErrorCode, FrameError};
use crate::frame::{decode_frame, decode_message, encode_message, FrameDecoder};
use crate::message::{
    prove_message, Request, RequestBody, RequestHeader, Response, ResponseBody, MAX_NONCE_LEN,
    PROTOCOL_VERSION, UNPARSED_REQUEST_ID,
};

/// Serves one [`Device`]: decodes requests, checks versions, calls the
/// device, and encodes responses that echo the request id.
#[derive(Debug)]
pub struct Agent<D> {
    device: D,
    decoder: FrameDecoder,
}

impl<D: Device> Agent<D> {
    /// An agent serving `device`.
    pub fn new(device: D) -> Self {
        Self {
            device,
            decoder: FrameDecoder::new(),
        }
    }

    /// Take bytes as they arrive from the link; return the response frames
    /// (each ending with the delimiter) for every request they complete.
    /// Frames that fail to decode get an error response with id
    /// [`UNPARSED_REQUEST_ID`].
    pub fn receive(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let results: Vec<_> = self.decoder.feed(bytes).collect();
        results
            .into_iter()
            .map(|frame| match frame {
                Ok(payload) => encode_response(&self.handle_payload(&payload)),
                Err(err) => encode_response(&frame_error_response(&err)),
            })
            .collect()
    }

    /// Handle one frame: `frame` is the COBS-encoded bytes between two
    /// delimiters (a trailing delimiter is tolerated). Returns the encoded
    /// response frame.
    pub fn handle(&mut self, frame: &[u8]) -> Vec<u8> {
        let frame = frame.strip_suffix(&[0]).unwrap_or(frame);
        let response = match decode_frame(frame) {
            Ok(payload) => self.handle_payload(&payload),
            Err(err) => frame_error_response(&err),
        };
        encode_response(&response)
    }

    /// Handle one checked payload (CBOR bytes of a [`Request`]).
    pub fn handle_payload(&mut self, payload: &[u8]) -> Response {
        match decode_message::<Request>(payload) {
            Ok(request) => self.handle_request(request),
            Err(_) => {
                let id = decode_message::<RequestHeader>(payload)
                    .map(|h| h.id)
                    .unwrap_or(UNPARSED_REQUEST_ID);
                response(
                    id,
                    ResponseBody::Error(DeviceError::bad_request("malformed request")),
                )
            }
        }
    }

    /// Handle one typed request.
    pub fn handle_request(&mut self, request: Request) -> Response {
        let id = request.id;
        if request.v != PROTOCOL_VERSION {
            return response(
                id,
                ResponseBody::Error(DeviceError::new(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "agent protocol version {} is not supported; this device speaks version {}",
                        request.v, PROTOCOL_VERSION
                    ),
                )),
            );
        }
        let body = match self.dispatch(request.body) {
            Ok(body) => body,
            Err(err) => ResponseBody::Error(err),
        };
        response(id, body)
    }

    fn dispatch(&mut self, body: RequestBody) -> Result<ResponseBody, DeviceError> {
        match body {
            RequestBody::Hello => self.device.hello().map(ResponseBody::Hello),
            RequestBody::Keygen { key_type } => self
                .device
                .keygen(key_type)
                .map(|csr| ResponseBody::Csr { csr }),
            RequestBody::Install { chain } => {
                if chain.0.is_empty() {
                    return Err(DeviceError::bad_request("empty certificate chain"));
                }
                self.device
                    .install(&chain)
                    .map(|()| ResponseBody::Installed)
            }
            RequestBody::Inject { key, chain } => {
                if chain.0.is_empty() {
                    return Err(DeviceError::bad_request("empty certificate chain"));
                }
                self.device
                    .inject(&key, &chain)
                    .map(|()| ResponseBody::Installed)
            }
            RequestBody::Prove { nonce } => {
                if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN {
                    return Err(DeviceError::bad_request(format!(
                        "nonce must be 1 to {MAX_NONCE_LEN} bytes, got {}",
                        nonce.len()
                    )));
                }
                // The device signs the domain-separated message, never the
                // station's bytes alone.
                self.device
                    .prove(&prove_message(&nonce))
                    .map(|p| ResponseBody::Proof {
                        key_type: p.key_type,
                        signature: p.signature,
                    })
            }
            RequestBody::Lock => self.device.lock().map(|()| ResponseBody::Locked),
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// Give the device back.
    pub fn into_device(self) -> D {
        self.device
    }
}

fn response(id: u32, body: ResponseBody) -> Response {
    Response {
        v: PROTOCOL_VERSION,
        id,
        body,
    }
}

/// The response to a frame that could not be decoded.
pub fn frame_error_response(err: &FrameError) -> Response {
    response(
        UNPARSED_REQUEST_ID,
        ResponseBody::Error(DeviceError::bad_request(format!("bad frame: {err}"))),
    )
}

/// Encode a response frame; a response too large to frame is replaced by an
/// `Internal` error with the same id.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    match encode_message(resp) {
        Ok(frame) => frame,
        Err(err) => {
            let fallback = response(
                resp.id,
                ResponseBody::Error(DeviceError::internal(format!(
                    "response cannot be framed: {err}"
                ))),
            );
            // A short error message always fits in a frame; an empty frame
            // (nothing sent) is the last resort.
            encode_message(&fallback).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::device::Proof;
    use crate::frame::{encode_frame, FrameDecoder};
    use crate::message::{CertificateChain, HelloInfo, KeyType, SecretBytes};
    use alloc::string::String;
    use alloc::vec;

    /// A device that answers everything trivially.
    struct Stub;

    impl Device for Stub {
        fn hello(&mut self) -> Result<HelloInfo, DeviceError> {
            Ok(HelloInfo {
                protocol: PROTOCOL_VERSION,
                hw_id: String::from("stub"),
                firmware: String::from("0"),
                capabilities: vec![],
                locked: false,
            })
        }
        fn keygen(&mut self, _: KeyType) -> Result<Vec<u8>, DeviceError> {
            Ok(vec![0x30, 0])
        }
        fn install(&mut self, _: &CertificateChain) -> Result<(), DeviceError> {
            Err(DeviceError::key_mismatch())
        }
        fn inject(&mut self, _: &SecretBytes, _: &CertificateChain) -> Result<(), DeviceError> {
            Err(DeviceError::unsupported("no"))
        }
        /// "Signs" by echoing what it was given to sign.
        fn prove(&mut self, message: &[u8]) -> Result<Proof, DeviceError> {
            Ok(Proof {
                key_type: KeyType::Ed25519,
                signature: message.to_vec(),
            })
        }
        fn lock(&mut self) -> Result<(), DeviceError> {
            Ok(())
        }
    }

    fn roundtrip(agent: &mut Agent<Stub>, req: &Request) -> Response {
        let frame = encode_message(req).unwrap();
        let out = agent.receive(&frame);
        assert_eq!(out.len(), 1);
        let mut dec = FrameDecoder::new();
        let payload = dec.feed(&out[0]).next().unwrap().unwrap();
        decode_message(&payload).unwrap()
    }

    #[test]
    fn echoes_id_and_carries_errors() {
        let mut agent = Agent::new(Stub);
        let resp = roundtrip(
            &mut agent,
            &Request {
                v: PROTOCOL_VERSION,
                id: 77,
                body: RequestBody::Install {
                    chain: CertificateChain(vec![vec![1]]),
                },
            },
        );
        assert_eq!(resp.id, 77);
        assert_eq!(resp.body, ResponseBody::Error(DeviceError::key_mismatch()));
        let resp = roundtrip(
            &mut agent,
            &Request {
                v: PROTOCOL_VERSION,
                id: 78,
                body: RequestBody::Install {
                    chain: CertificateChain(vec![]),
                },
            },
        );
        assert!(matches!(resp.body, ResponseBody::Error(ref e) if e.code == ErrorCode::BadRequest));
        let resp = roundtrip(
            &mut agent,
            &Request {
                v: PROTOCOL_VERSION,
                id: 79,
                body: RequestBody::Prove { nonce: vec![] },
            },
        );
        assert!(matches!(resp.body, ResponseBody::Error(ref e) if e.code == ErrorCode::BadRequest));
    }

    #[test]
    fn prove_hands_the_device_the_domain_separated_message() {
        let mut agent = Agent::new(Stub);
        let resp = roundtrip(
            &mut agent,
            &Request {
                v: PROTOCOL_VERSION,
                id: 3,
                body: RequestBody::Prove {
                    nonce: vec![0xAA; 32],
                },
            },
        );
        let mut expected = b"idmint-prove-v1\0".to_vec();
        expected.extend_from_slice(&[0xAA; 32]);
        assert_eq!(
            resp.body,
            ResponseBody::Proof {
                key_type: KeyType::Ed25519,
                signature: expected,
            }
        );
    }

    #[test]
    fn rejects_other_versions() {
        let mut agent = Agent::new(Stub);
        let resp = roundtrip(
            &mut agent,
            &Request {
                v: 1,
                id: 5,
                body: RequestBody::Hello,
            },
        );
        assert_eq!(resp.id, 5);
        match resp.body {
            ResponseBody::Error(e) => {
                assert_eq!(e.code, ErrorCode::UnsupportedVersion);
                assert_eq!(
                    e.message,
                    "agent protocol version 1 is not supported; this device speaks version 2"
                );
            }
            other => panic!("served: {other:?}"),
        }
    }

    #[test]
    fn unknown_op_keeps_id() {
        #[derive(serde::Serialize)]
        struct Body {
            op: &'static str,
        }
        #[derive(serde::Serialize)]
        struct Req {
            v: u16,
            id: u32,
            body: Body,
        }
        let frame = encode_message(&Req {
            v: PROTOCOL_VERSION,
            id: 9,
            body: Body { op: "reboot" },
        })
        .unwrap();
        let mut agent = Agent::new(Stub);
        let out = agent.handle(&frame);
        let payload = FrameDecoder::new().feed(&out).next().unwrap().unwrap();
        let resp: Response = decode_message(&payload).unwrap();
        assert_eq!(resp.id, 9);
        assert!(matches!(resp.body, ResponseBody::Error(ref e) if e.code == ErrorCode::BadRequest));
    }

    #[test]
    fn bad_frames_get_id_zero_errors() {
        let mut agent = Agent::new(Stub);
        let mut frame = encode_frame(b"\xa0").unwrap();
        frame[1] ^= 0x40; // corrupt, stays non-zero
        let out = agent.receive(&frame);
        assert_eq!(out.len(), 1);
        let payload = FrameDecoder::new().feed(&out[0]).next().unwrap().unwrap();
        let resp: Response = decode_message(&payload).unwrap();
        assert_eq!(resp.id, UNPARSED_REQUEST_ID);
        assert!(matches!(resp.body, ResponseBody::Error(ref e) if e.code == ErrorCode::BadRequest));
    }

    #[test]
    fn docs_example_bytes() {
        let req = Request {
            v: PROTOCOL_VERSION,
            id: 1,
            body: RequestBody::Hello,
        };
        let mut cbor = Vec::new();
        ciborium::into_writer(&req, &mut cbor).unwrap();
        let hex: Vec<_> = cbor.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "a3 61 76 02 62 69 64 01 64 62 6f 64 79 a1 62 6f 70 65 68 65 6c 6c 6f"
        );
        let frame = encode_message(&req).unwrap();
        let hex: Vec<_> = frame.iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "1c a3 61 76 02 62 69 64 01 64 62 6f 64 79 a1 62 6f 70 65 68 65 6c 6c 6f 07 68 68 b9 00"
        );
    }

    #[test]
    fn random_input_never_panics() {
        let mut agent = Agent::new(Stub);
        let mut s: u64 = 0x1234_5678_9ABC_DEF1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for round in 0..3000 {
            let len = (next() % 300) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 2 == 0 {
                // Valid frames around random CBOR-ish payloads reach the parser.
                data = encode_frame(&data).unwrap_or_default();
            }
            for resp in agent.receive(&data) {
                assert_eq!(resp.last(), Some(&0));
            }
            let _ = agent.handle(&data);
            let _ = agent.handle_payload(&data);
        }
    }
}
