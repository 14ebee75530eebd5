//! Pure (IO-free) encoding of WAL segment headers and entry frames.
//!
//! Segment header (`HEADER_LEN` = 28 bytes):
//! `magic "WSWAL001" | first_lsn u64 LE | prev_epoch u64 LE | crc32c(previous 24 bytes) u32 LE`.
//!
//! Frame: `body_len u32 LE | crc32c(body) u32 LE | body`, where
//! `body = epoch u64 LE | lsn u64 LE | op_id u128 LE | payload`.
//!
//! A body is at least `BODY_FIXED_LEN` bytes, so `body_len == 0` is never a
//! frame: segments are preallocated with zeros, and a zero length field with
//! only zero bytes after it is the end of the log (see [`is_zero`]).

use bytes::Bytes;

use super::{Entry, Epoch, Lsn, OpId};

/// Magic bytes at the start of every segment file.
pub const MAGIC: &[u8; 8] = b"WSWAL001";
/// Length of an encoded segment header.
pub const HEADER_LEN: usize = 28;
/// Length of a frame's `body_len | crc` prefix.
pub const FRAME_HEADER_LEN: usize = 8;
/// Length of the fixed part of a frame body (`epoch | lsn | op_id`).
pub const BODY_FIXED_LEN: usize = 32;
/// Largest accepted frame body; longer length fields are treated as corruption.
pub const MAX_BODY_LEN: usize = 64 << 20;
/// Largest payload that fits in one frame.
pub const MAX_PAYLOAD_LEN: usize = MAX_BODY_LEN - BODY_FIXED_LEN;

/// Decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// LSN of the first entry this segment holds (or would hold).
    pub first_lsn: Lsn,
    /// Epoch of entry `first_lsn - 1`; 0 if there is none.
    pub prev_epoch: Epoch,
}

/// Why a segment header could not be decoded.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than `HEADER_LEN` bytes.
    #[error("segment header is short: {0} of {HEADER_LEN} bytes")]
    Short(usize),
    /// Magic bytes differ from `MAGIC`.
    #[error("bad segment magic")]
    BadMagic,
    /// Checksum mismatch.
    #[error("segment header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum computed over the header bytes.
        computed: u32,
    },
}

/// Why a frame could not be decoded (as opposed to being merely incomplete).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Length field outside `BODY_FIXED_LEN..=MAX_BODY_LEN`.
    #[error("bad frame length {0}")]
    BadLength(u32),
    /// Body checksum mismatch.
    #[error("frame checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadCrc {
        /// Checksum stored in the frame.
        stored: u32,
        /// Checksum computed over the body.
        computed: u32,
    },
}

/// Encodes a segment header.
pub fn encode_header(h: &SegmentHeader) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&h.first_lsn.to_le_bytes());
    out[16..24].copy_from_slice(&h.prev_epoch.to_le_bytes());
    let crc = crc32c::crc32c(&out[..24]);
    out[24..28].copy_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes a segment header from the start of `buf`.
pub fn decode_header(buf: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let Some(h) = buf.get(..HEADER_LEN) else {
        return Err(HeaderError::Short(buf.len()));
    };
    if &h[..8] != MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let stored = u32::from_le_bytes(arr(&h[24..28]));
    let computed = crc32c::crc32c(&h[..24]);
    if stored != computed {
        return Err(HeaderError::BadCrc { stored, computed });
    }
    Ok(SegmentHeader {
        first_lsn: u64::from_le_bytes(arr(&h[8..16])),
        prev_epoch: u64::from_le_bytes(arr(&h[16..24])),
    })
}

/// Total encoded length of a frame carrying `payload_len` payload bytes.
pub fn frame_len(payload_len: usize) -> usize {
    FRAME_HEADER_LEN + BODY_FIXED_LEN + payload_len
}

/// Appends the frame for `e` to `out`.
///
/// The payload must be at most `MAX_PAYLOAD_LEN` bytes; a longer one yields a
/// frame that `decode_frame` rejects with `BadLength`.
pub fn encode_frame(e: &Entry, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED_LEN.saturating_add(e.payload.len());
    let len_field = if body_len > MAX_BODY_LEN {
        u32::MAX
    } else {
        // MAX_BODY_LEN < u32::MAX, so this cannot truncate.
        body_len as u32
    };
    out.reserve(FRAME_HEADER_LEN + body_len);
    let start = out.len();
    out.extend_from_slice(&len_field.to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&e.epoch.to_le_bytes());
    out.extend_from_slice(&e.lsn.to_le_bytes());
    out.extend_from_slice(&e.op_id.0.to_le_bytes());
    out.extend_from_slice(&e.payload);
    let crc = crc32c::crc32c(&out[start + FRAME_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Decodes a frame prefix: returns `(body_len, stored_crc)`, validating the length.
pub fn decode_frame_header(h: &[u8; FRAME_HEADER_LEN]) -> Result<(usize, u32), FrameError> {
    let len = u32::from_le_bytes(arr(&h[..4]));
    let crc = u32::from_le_bytes(arr(&h[4..8]));
    let body_len = len as usize;
    if !(BODY_FIXED_LEN..=MAX_BODY_LEN).contains(&body_len) {
        return Err(FrameError::BadLength(len));
    }
    Ok((body_len, crc))
}

/// Decodes a frame body after checking it against `stored_crc`.
pub fn decode_body(body: &[u8], stored_crc: u32) -> Result<Entry, FrameError> {
    let computed = crc32c::crc32c(body);
    if computed != stored_crc {
        return Err(FrameError::BadCrc {
            stored: stored_crc,
            computed,
        });
    }
    if body.len() < BODY_FIXED_LEN {
        return Err(FrameError::BadLength(
            u32::try_from(body.len()).unwrap_or(u32::MAX),
        ));
    }
    Ok(Entry {
        epoch: u64::from_le_bytes(arr(&body[..8])),
        lsn: u64::from_le_bytes(arr(&body[8..16])),
        op_id: OpId(u128::from_le_bytes(arr(&body[16..32]))),
        payload: Bytes::copy_from_slice(&body[BODY_FIXED_LEN..]),
    })
}

/// Decodes the frame at the start of `buf`.
///
/// `Ok(None)`: `buf` holds only part of a frame (possibly nothing).
/// `Ok(Some((entry, n)))`: the frame occupies `buf[..n]`.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Entry, usize)>, FrameError> {
    let Some(h) = buf.get(..FRAME_HEADER_LEN) else {
        return Ok(None);
    };
    let (body_len, crc) = decode_frame_header(&arr(h))?;
    let end = FRAME_HEADER_LEN + body_len;
    let Some(body) = buf.get(FRAME_HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body, crc)?, end)))
}

/// Offset just past the last non-zero byte of `buf` (0 if `buf` is all zeros).
pub fn nonzero_end(buf: &[u8]) -> usize {
    const CHUNK: usize = 4096;
    let mut end = buf.len();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &buf[start..end];
        // A branch-free OR over the chunk vectorizes; only a non-zero chunk is searched.
        if chunk.iter().fold(0u8, |a, &b| a | b) != 0 {
            return start + chunk.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        }
        end = start;
    }
    0
}

/// True if `buf` holds only zero bytes (or nothing): the clean end of a segment.
pub fn is_zero(buf: &[u8]) -> bool {
    nonzero_end(buf) == 0
}

/// Copies a slice whose length the caller has already fixed into an array.
fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry_strategy() -> impl Strategy<Value = Entry> {
        (
            any::<u64>(),
            any::<u64>(),
            any::<u128>(),
            proptest::collection::vec(any::<u8>(), 0..300),
        )
            .prop_map(|(epoch, lsn, op, payload)| Entry {
                epoch,
                lsn,
                op_id: OpId(op),
                payload: Bytes::from(payload),
            })
    }

    /// Decodes frames from `buf` until incomplete or invalid.
    fn decode_all(buf: &[u8]) -> (Vec<Entry>, Result<usize, FrameError>) {
        let mut out = Vec::new();
        let mut off = 0;
        loop {
            match decode_frame(&buf[off..]) {
                Ok(Some((e, n))) => {
                    out.push(e);
                    off += n;
                }
                Ok(None) => return (out, Ok(off)),
                Err(err) => return (out, Err(err)),
            }
        }
    }

    proptest! {
        #[test]
        fn frame_round_trip(e in entry_strategy(), junk in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = Vec::new();
            encode_frame(&e, &mut buf);
            prop_assert_eq!(buf.len(), frame_len(e.payload.len()));
            buf.extend_from_slice(&junk);
            let (d, n) = decode_frame(&buf).expect("valid").expect("complete");
            prop_assert_eq!(&d, &e);
            prop_assert_eq!(n, frame_len(e.payload.len()));
        }

        #[test]
        fn header_round_trip(first_lsn in any::<u64>(), prev_epoch in any::<u64>()) {
            let h = SegmentHeader { first_lsn, prev_epoch };
            prop_assert_eq!(decode_header(&encode_header(&h)), Ok(h));
        }

        #[test]
        fn header_any_byte_flip_detected(first_lsn in any::<u64>(), prev_epoch in any::<u64>(), pos in 0..HEADER_LEN, x in 1u8..=255) {
            let mut b = encode_header(&SegmentHeader { first_lsn, prev_epoch });
            b[pos] ^= x;
            prop_assert!(decode_header(&b).is_err());
        }

        #[test]
        fn truncated_stream_decodes_to_prefix(entries in proptest::collection::vec(entry_strategy(), 0..12), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for e in &entries {
                encode_frame(e, &mut buf);
                ends.push(buf.len());
            }
            let cut = cut.index(buf.len() + 1);
            let (got, res) = decode_all(&buf[..cut]);
            // Never an error: a truncation is only ever "incomplete".
            let consumed = res.expect("truncation must not look corrupt");
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            prop_assert_eq!(&got[..], &entries[..whole]);
            prop_assert_eq!(consumed, if whole == 0 { 0 } else { ends[whole - 1] });
        }

        #[test]
        fn flipped_stream_decodes_to_prefix(entries in proptest::collection::vec(entry_strategy(), 1..8), pos in any::<prop::sample::Index>(), x in 1u8..=255) {
            let mut buf = Vec::new();
            let mut ends = Vec::new();
            for e in &entries {
                encode_frame(e, &mut buf);
                ends.push(buf.len());
            }
            let pos = pos.index(buf.len());
            buf[pos] ^= x;
            let (got, _) = decode_all(&buf);
            let damaged = ends.iter().filter(|&&end| end <= pos).count();
            // Everything before the damaged frame survives; the damaged frame never decodes.
            prop_assert_eq!(&got[..], &entries[..damaged]);
        }
    }

    #[test]
    fn zero_bytes_are_never_a_frame() {
        // The preallocated padding: an all-zero frame header is the end marker, never a frame.
        assert_eq!(decode_frame(&[0u8; 64]), Err(FrameError::BadLength(0)));
        assert_eq!(
            decode_frame_header(&[0u8; FRAME_HEADER_LEN]),
            Err(FrameError::BadLength(0))
        );
        // Nor is a frame whose body is all zeros but whose length is valid (crc32c of zeros != 0).
        let mut b = vec![0u8; FRAME_HEADER_LEN + BODY_FIXED_LEN];
        b[..4].copy_from_slice(&(BODY_FIXED_LEN as u32).to_le_bytes());
        assert!(matches!(decode_frame(&b), Err(FrameError::BadCrc { .. })));
    }

    #[test]
    fn nonzero_end_and_is_zero() {
        assert_eq!(nonzero_end(&[]), 0);
        assert!(is_zero(&[]));
        assert!(is_zero(&[0u8; 10_000]));
        for len in [1usize, 7, 4095, 4096, 4097, 9000] {
            for pos in [0, len / 2, len - 1] {
                let mut b = vec![0u8; len];
                b[pos] = 0x80;
                assert_eq!(nonzero_end(&b), pos + 1, "len {len} pos {pos}");
                assert!(!is_zero(&b));
                b[0] = 1;
                assert_eq!(nonzero_end(&b), pos + 1);
            }
        }
    }

    #[test]
    fn rejects_bad_lengths() {
        let mut b = [0u8; 16];
        assert_eq!(decode_frame(&b), Err(FrameError::BadLength(0)));
        b[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_frame(&b), Err(FrameError::BadLength(u32::MAX)));
        assert_eq!(decode_frame(&b[..3]), Ok(None));
    }
}
