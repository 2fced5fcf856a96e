//! Framing: a message's CBOR bytes plus a little-endian CRC-32 (IEEE) trailer,
//! COBS-encoded and terminated by a `0x00` delimiter; and [`FrameDecoder`],
//! which turns a byte stream into checked payloads.

use alloc::vec::Vec;

use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::error::FrameError;

/// Largest number of bytes between two delimiters (the COBS-encoded frame,
/// delimiter excluded). Frames longer than this are rejected by the encoder
/// and by [`FrameDecoder`].
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// Length of the CRC-32 trailer.
const CRC_LEN: usize = 4;

/// Serialize `message` to CBOR and frame it (COBS, CRC, delimiter).
pub fn encode_message<T: Serialize>(message: &T) -> Result<Vec<u8>, FrameError> {
    // Messages may carry key material (`inject`): wipe the intermediate copy.
    let mut cbor = Zeroizing::new(Vec::new());
    ciborium::into_writer(message, &mut *cbor).map_err(|_| FrameError::BadMessage)?;
    encode_frame(&cbor)
}

/// Parse a checked payload (as returned by [`FrameDecoder`]) as a CBOR message.
pub fn decode_message<T: DeserializeOwned>(payload: &[u8]) -> Result<T, FrameError> {
    ciborium::from_reader(payload).map_err(|_| FrameError::BadMessage)
}

/// Frame a payload: append its CRC-32, COBS-encode, and append the delimiter.
pub fn encode_frame(payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut data = Zeroizing::new(Vec::with_capacity(payload.len() + CRC_LEN));
    data.extend_from_slice(payload);
    data.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    let mut out = cobs::encode_vec(&data);
    if out.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: out.len(),
            max: MAX_FRAME_LEN,
        });
    }
    out.push(DELIMITER);
    Ok(out)
}

/// Check one frame: `encoded` is the bytes between two delimiters. Returns the
/// payload with its CRC verified and removed.
pub fn decode_frame(encoded: &[u8]) -> Result<Vec<u8>, FrameError> {
    if encoded.len() > MAX_FRAME_LEN {
        return Err(FrameError::TooLarge {
            len: encoded.len(),
            max: MAX_FRAME_LEN,
        });
    }
    if encoded.contains(&DELIMITER) {
        return Err(FrameError::BadEncoding);
    }
    let mut data = cobs::decode_vec(encoded).map_err(|_| FrameError::BadEncoding)?;
    if data.len() < CRC_LEN {
        return Err(FrameError::Truncated { len: data.len() });
    }
    let split = data.len() - CRC_LEN;
    let mut trailer = [0u8; CRC_LEN];
    trailer.copy_from_slice(&data[split..]);
    let expected = u32::from_le_bytes(trailer);
    data.truncate(split);
    let actual = crc32fast::hash(&data);
    if expected != actual {
        return Err(FrameError::CrcMismatch { expected, actual });
    }
    Ok(data)
}

/// Accumulates bytes as they arrive and yields checked frame payloads.
///
/// Memory is bounded by [`MAX_FRAME_LEN`]: when more bytes arrive without a
/// delimiter, the decoder reports [`FrameError::TooLarge`] once and discards
/// everything up to the next delimiter. Empty frames (repeated delimiters) are
/// skipped, so a sender may prefix a frame with `0x00` to resynchronise.
///
/// ```
/// use idmint_agent::frame::{encode_frame, FrameDecoder};
///
/// let mut wire = encode_frame(b"one").unwrap();
/// wire.extend(encode_frame(b"two").unwrap());
/// let mut decoder = FrameDecoder::new();
/// let frames: Vec<_> = decoder.feed(&wire).collect();
/// assert_eq!(frames, vec![Ok(b"one".to_vec()), Ok(b"two".to_vec())]);
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    discarding: bool,
}

impl FrameDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Take one byte; returns a result when it completes (or overflows) a frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Vec<u8>, FrameError>> {
        if byte == DELIMITER {
            if self.discarding {
                self.discarding = false;
                self.buf.clear();
                return None;
            }
            if self.buf.is_empty() {
                return None;
            }
            let result = decode_frame(&self.buf);
            self.buf.clear();
            return Some(result);
        }
        if self.discarding {
            return None;
        }
        if self.buf.len() >= MAX_FRAME_LEN {
            self.buf.clear();
            self.discarding = true;
            return Some(Err(FrameError::TooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN,
            }));
        }
        self.buf.push(byte);
        None
    }

    /// Take a chunk of bytes; iterate over the frames (or errors) it completes.
    /// Bytes not consumed because the iterator was dropped early are lost.
    pub fn feed<'a>(&'a mut self, data: &'a [u8]) -> Frames<'a> {
        Frames {
            decoder: self,
            data,
        }
    }

    /// Whether a partial frame is buffered.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && !self.discarding
    }

    /// Forget any partial frame.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

/// Iterator over the frames completed by a chunk of bytes; see
/// [`FrameDecoder::feed`].
#[derive(Debug)]
pub struct Frames<'a> {
    decoder: &'a mut FrameDecoder,
    data: &'a [u8],
}

impl Iterator for Frames<'_> {
    type Item = Result<Vec<u8>, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        while let Some((&byte, rest)) = self.data.split_first() {
            self.data = rest;
            if let Some(result) = self.decoder.push(byte) {
                return Some(result);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use alloc::vec;

    #[test]
    fn round_trip_various_lengths() {
        for len in [0usize, 1, 3, 253, 254, 255, 256, 1000, 8000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
            let wire = encode_frame(&payload).unwrap();
            assert_eq!(wire.last(), Some(&DELIMITER));
            assert!(!wire[..wire.len() - 1].contains(&DELIMITER));
            let mut dec = FrameDecoder::new();
            let got: Vec<_> = dec.feed(&wire).collect();
            assert_eq!(got, vec![Ok(payload)], "len {len}");
            assert!(dec.is_idle());
        }
    }

    #[test]
    fn crc_is_little_endian_ieee_over_payload() {
        let wire = encode_frame(b"123456789").unwrap();
        let raw = cobs::decode_vec(&wire[..wire.len() - 1]).unwrap();
        assert_eq!(&raw[..9], b"123456789");
        // The IEEE CRC-32 check value of "123456789".
        assert_eq!(&raw[9..], &0xCBF4_3926u32.to_le_bytes());
    }

    #[test]
    fn corrupted_byte_is_crc_mismatch() {
        let payload = b"hello station".to_vec();
        let mut data = payload.clone();
        data.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        data[3] ^= 0x20;
        let enc = cobs::encode_vec(&data);
        assert!(matches!(
            decode_frame(&enc),
            Err(FrameError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn truncated_frame() {
        let enc = cobs::encode_vec(&[1, 2]);
        assert_eq!(decode_frame(&enc), Err(FrameError::Truncated { len: 2 }));
        // A frame cut short is caught by COBS or by the CRC.
        let wire = encode_frame(b"some payload bytes").unwrap();
        let cut = &wire[..wire.len() - 4];
        assert!(decode_frame(cut).is_err());
    }

    #[test]
    fn bad_cobs() {
        // A code byte pointing past the end of the frame.
        assert_eq!(decode_frame(&[9, 1, 2]), Err(FrameError::BadEncoding));
    }

    #[test]
    fn oversize_is_rejected_then_resyncs() {
        assert!(matches!(
            encode_frame(&vec![1u8; MAX_FRAME_LEN]),
            Err(FrameError::TooLarge { .. })
        ));
        let mut dec = FrameDecoder::new();
        let junk = vec![0x55u8; MAX_FRAME_LEN + 100];
        let errs: Vec<_> = dec.feed(&junk).collect();
        assert_eq!(errs.len(), 1);
        assert!(matches!(errs[0], Err(FrameError::TooLarge { .. })));
        // The tail of the oversize frame is discarded, then decoding resumes.
        let mut wire = vec![0x55u8; 10];
        wire.push(DELIMITER);
        wire.extend(encode_frame(b"after").unwrap());
        let got: Vec<_> = dec.feed(&wire).collect();
        assert_eq!(got, vec![Ok(b"after".to_vec())]);
    }

    #[test]
    fn split_delivery() {
        let wire = encode_frame(b"byte by byte").unwrap();
        let mut dec = FrameDecoder::new();
        let mut out = Vec::new();
        for b in &wire {
            out.extend(dec.feed(core::slice::from_ref(b)));
        }
        assert_eq!(out, vec![Ok(b"byte by byte".to_vec())]);
    }

    #[test]
    fn random_bytes_never_panic() {
        // xorshift: deterministic, no dependency.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut dec = FrameDecoder::new();
        for _ in 0..2000 {
            let mut chunk = Vec::new();
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 600) as usize;
            for _ in 0..len {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Bias towards delimiters and small code bytes.
                chunk.push(if s % 5 == 0 { 0 } else { (s >> 8) as u8 });
            }
            for frame in dec.feed(&chunk) {
                let _ = frame.map(|p| decode_message::<crate::message::Request>(&p));
            }
        }
    }
}
