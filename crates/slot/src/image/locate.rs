//! Finding the one empty slot in a golden image's bytes by its magic, with
//! the same rules as the C reader: a magic counts as a slot only when a
//! plausible header follows it.

use crate::error::{ImageError, SlotError};
use crate::slot::{magic_offsets, Header, VERSION_1};

/// The slot found in a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// Offset of the slot within the searched region.
    pub(crate) offset: usize,
    /// `base + offset`: file offset or address, for messages.
    pub(crate) location: u64,
    /// Slot capacity, header included.
    pub(crate) capacity: usize,
}

/// One magic occurrence and what its header says.
pub(crate) struct Candidate {
    pub(crate) found: Found,
    pub(crate) header: Result<Header, SlotError>,
}

/// Every magic occurrence in `region`, its location counted from `base`.
pub(crate) fn candidates(region: &[u8], base: u64) -> impl Iterator<Item = Candidate> + '_ {
    magic_offsets(region).map(move |offset| {
        let header = region
            .get(offset..)
            .ok_or(SlotError::BadMagic)
            .and_then(Header::parse)
            .and_then(Header::check_version);
        Candidate {
            found: Found {
                offset,
                location: base + offset as u64,
                capacity: header.as_ref().map_or(0, |h| h.capacity as usize),
            },
            header,
        }
    })
}

/// Find exactly one empty slot in `region`.
pub(crate) fn locate(region: &[u8], base: u64) -> Result<Found, ImageError> {
    choose(candidates(region, base))
}

/// Pick the single slot among the candidates: magics without a plausible
/// header are ignored (a firmware may well contain the magic string), but
/// if nothing else is found the first rejection is reported.
pub(crate) fn choose(candidates: impl Iterator<Item = Candidate>) -> Result<Found, ImageError> {
    let mut slot: Option<(Found, Header)> = None;
    let mut rejected = None;
    for candidate in candidates {
        match candidate.header {
            Ok(header) => {
                if let Some((first, _)) = slot {
                    return Err(ImageError::MultipleSlots {
                        first: first.location,
                        second: candidate.found.location,
                    });
                }
                slot = Some((candidate.found, header));
            }
            Err(reason) => {
                rejected.get_or_insert((candidate.found.location, reason));
            }
        }
    }
    match (slot, rejected) {
        (Some((found, header)), _) if header.version == VERSION_1 => {
            Err(ImageError::AlreadyProvisioned {
                location: found.location,
            })
        }
        (Some((found, _)), _) => Ok(found),
        (None, Some((location, reason))) => Err(ImageError::InvalidSlotHeader { location, reason }),
        (None, None) => Err(ImageError::NoSlot),
    }
}
