//! The device side of the protocol: [`Agent`] turns request frames into
//! response frames by calling a [`Device`]. It never panics on input.

use alloc::format;
use alloc::vec::Vec;

use crate::device::Device;
use crate::error::{DeviceError, ErrorCode, FrameError};
use crate::frame::{decode_frame, decode_message, encode_message, FrameDecoder};
use crate::message::{
    Request, RequestBody, RequestHeader, Response, ResponseBody, MAX_NONCE_LEN, PROTOCOL_VERSION,
    UNPARSED_REQUEST_ID,
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
                        "protocol version {} not supported; this device speaks {}",
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
                self.device.prove(&nonce).map(|p| ResponseBody::Proof {
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
