//! Intel HEX golden images. Loading parses every record (with the `ihex`
//! crate), builds the address space to find the slot, and keeps a template:
//! the original text of every line that does not touch the slot, and the
//! data records that do. Rendering copies the text and re-encodes only
//! those records, with fresh checksums.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::ops::Range;

use ihex::{ReaderError, Record};

use crate::error::ImageError;
use crate::image::locate::{self, Candidate};

/// A parsed Intel HEX golden image, ready to render.
#[derive(Clone)]
pub(crate) struct HexTemplate {
    /// The golden text.
    text: Vec<u8>,
    /// The output in order: runs of golden text and re-encoded records.
    pieces: Vec<Piece>,
    /// Address of the slot.
    address: u64,
    capacity: usize,
}

#[derive(Clone)]
enum Piece {
    /// Golden text copied as is.
    Text(Range<usize>),
    /// A data record holding part of the slot.
    Patched(PatchedRecord),
}

#[derive(Clone)]
struct PatchedRecord {
    /// The record's 16-bit load offset.
    offset: u16,
    /// The golden data of the record.
    data: Vec<u8>,
    /// Which bytes of `data` belong to the slot...
    in_record: Range<usize>,
    /// ...and where they are in the slot.
    in_slot: Range<usize>,
    /// The line terminator of the golden line (`\n`, `\r\n` or none).
    line_end: Range<usize>,
}

/// A data record found while parsing.
struct DataRecord {
    address: u64,
    offset: u16,
    data: Vec<u8>,
    /// The whole line in the text, terminator included.
    span: Range<usize>,
    line_end: Range<usize>,
}

impl HexTemplate {
    /// Parse the golden text and locate its one empty slot.
    pub(crate) fn parse(text: Vec<u8>) -> Result<Self, ImageError> {
        let records = parse_records(&text)?;
        let found = locate_slot(&records)?;
        let slot = found.location..found.location + found.capacity as u64;

        let mut pieces = Vec::new();
        let mut text_start = 0;
        for record in records.iter().filter(|r| overlaps(r, &slot)) {
            let start = record.address.max(slot.start);
            let end = (record.address + record.data.len() as u64).min(slot.end);
            let in_record = (start - record.address) as usize..(end - record.address) as usize;
            let in_slot = (start - slot.start) as usize..(end - slot.start) as usize;
            if text_start < record.span.start {
                pieces.push(Piece::Text(text_start..record.span.start));
            }
            text_start = record.span.end;
            pieces.push(Piece::Patched(PatchedRecord {
                offset: record.offset,
                data: record.data.clone(),
                in_record,
                in_slot,
                line_end: record.line_end.clone(),
            }));
        }
        if text_start < text.len() {
            pieces.push(Piece::Text(text_start..text.len()));
        }
        Ok(Self {
            text,
            pieces,
            address: found.location,
            capacity: found.capacity,
        })
    }

    pub(crate) fn address(&self) -> u64 {
        self.address
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// A re-encoded record has the same length as the golden one, so every
    /// device image is as long as the golden text.
    pub(crate) fn output_len(&self) -> usize {
        self.text.len()
    }

    /// Write the golden text with the slot's records re-encoded from `slot`
    /// (`slot.len()` equals the capacity, checked by the caller).
    pub(crate) fn write<W: Write + ?Sized>(&self, slot: &[u8], writer: &mut W) -> io::Result<()> {
        let mut data = Vec::with_capacity(255);
        for piece in &self.pieces {
            match piece {
                Piece::Text(range) => {
                    writer.write_all(self.text.get(range.clone()).unwrap_or_default())?
                }
                Piece::Patched(record) => {
                    data.clear();
                    data.extend_from_slice(&record.data);
                    let patch = slot.get(record.in_slot.clone()).unwrap_or_default();
                    if let Some(target) = data.get_mut(record.in_record.clone()) {
                        target.copy_from_slice(patch);
                    }
                    let line = Record::Data {
                        offset: record.offset,
                        value: std::mem::take(&mut data),
                    };
                    // Cannot fail: the record held the same number of bytes when parsed.
                    let encoded = line
                        .to_record_string()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    writer.write_all(encoded.as_bytes())?;
                    writer.write_all(self.text.get(record.line_end.clone()).unwrap_or_default())?;
                    if let Record::Data { value, .. } = line {
                        data = value;
                    }
                }
            }
        }
        Ok(())
    }
}

fn overlaps(record: &DataRecord, slot: &Range<u64>) -> bool {
    record.address < slot.end && slot.start < record.address + record.data.len() as u64
}

/// Parse every line into records, tracking extended segment (02) and linear
/// (04) addresses, and return the data records with absolute addresses.
fn parse_records(text: &[u8]) -> Result<Vec<DataRecord>, ImageError> {
    let mut records = Vec::new();
    let mut base: u64 = 0;
    let mut eof_seen = false;
    let mut line_start = 0;
    for (index, raw) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let line_no = index + 1;
        let span = line_start..line_start + raw.len();
        line_start = span.end;
        let content = raw.strip_suffix(b"\n").unwrap_or(raw);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        let line_end = span.start + content.len()..span.end;
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if eof_seen {
            return Err(ImageError::HexDataAfterEof { line: line_no });
        }
        let content = std::str::from_utf8(content).map_err(|_| ImageError::HexRecord {
            line: line_no,
            reason: "not ASCII text".to_owned(),
        })?;
        let record = Record::from_record_string(content).map_err(|e| match e {
            ReaderError::ChecksumMismatch(computed, stored) => ImageError::HexChecksum {
                line: line_no,
                stored,
                computed,
            },
            other => ImageError::HexRecord {
                line: line_no,
                reason: other.to_string(),
            },
        })?;
        match record {
            Record::Data { offset, value } => {
                let address = base + u64::from(offset);
                if usize::from(offset) + value.len() > 0x1_0000 {
                    return Err(ImageError::HexRecordWraps {
                        line: line_no,
                        address,
                    });
                }
                records.push(DataRecord {
                    address,
                    offset,
                    data: value,
                    span,
                    line_end,
                });
            }
            Record::ExtendedSegmentAddress(segment) => base = u64::from(segment) << 4,
            Record::ExtendedLinearAddress(upper) => base = u64::from(upper) << 16,
            Record::EndOfFile => eof_seen = true,
            Record::StartSegmentAddress { .. } | Record::StartLinearAddress(_) => {}
        }
    }
    if !eof_seen {
        return Err(ImageError::HexMissingEof);
    }
    Ok(records)
}

/// The address space of an Intel HEX file as contiguous segments
/// (address, bytes), in address order: what a device image holds, read
/// back.
pub(crate) fn memory(text: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, ImageError> {
    segments(&parse_records(text)?)
}

/// Build the address space as contiguous segments and find the one slot.
/// A slot must lie within one contiguous run of data.
fn locate_slot(records: &[DataRecord]) -> Result<locate::Found, ImageError> {
    let segments = segments(records)?;
    let candidates: Vec<Candidate> = segments
        .iter()
        .flat_map(|(start, bytes)| locate::candidates(bytes, *start))
        .collect();
    locate::choose(candidates.into_iter())
}

/// The data records joined into contiguous segments, in address order;
/// overlapping records are an error.
fn segments(records: &[DataRecord]) -> Result<Vec<(u64, Vec<u8>)>, ImageError> {
    let mut by_address: BTreeMap<u64, &DataRecord> = BTreeMap::new();
    for record in records.iter().filter(|r| !r.data.is_empty()) {
        if by_address.insert(record.address, record).is_some() {
            return Err(ImageError::HexOverlap {
                address: record.address,
            });
        }
    }
    let mut segments: Vec<(u64, Vec<u8>)> = Vec::new();
    for (&address, record) in &by_address {
        match segments.last_mut() {
            Some((start, bytes)) if *start + bytes.len() as u64 == address => {
                bytes.extend_from_slice(&record.data);
            }
            Some((start, bytes)) if *start + bytes.len() as u64 > address => {
                return Err(ImageError::HexOverlap { address });
            }
            _ => segments.push((address, record.data.clone())),
        }
    }
    Ok(segments)
}
