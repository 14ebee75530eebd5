//! The archived WAL chunk: a shard's committed entries `first..=last`, each with its epoch, op id,
//! time stamp and payload, sealed by a CRC-32C of the whole object.
//!
//! ```text
//! "WSARC001" | shard len u16 | shard | count u32
//! count × ( payload len u32 | epoch u64 | lsn u64 | op id u128 | at ms u64 | payload )
//! crc32c u32 of everything before it                                   (all integers LE)
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Millis;
use crate::names::ChunkName;

const MAGIC: &[u8; 8] = b"WSARC001";
const ENTRY_HEADER: usize = 4 + 8 + 8 + 16 + 8;

/// One committed WAL entry as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedEntry {
    /// Epoch (term) of the primary that proposed it.
    pub epoch: u64,
    /// Its position in the shard's log.
    pub lsn: u64,
    /// The operation id of the write (deduplicates retried writes).
    pub op_id: u128,
    /// When the primary proposed it (its wall clock).
    pub at_ms: Millis,
    /// The op's payload, as the WAL holds it.
    pub payload: Bytes,
}

/// Why a chunk could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The object's CRC-32C does not match its contents (corrupt or truncated object).
    #[error("{key}: checksum mismatch (stored {stored:08x}, computed {computed:08x})")]
    Checksum {
        /// The chunk's object key.
        key: String,
        /// The CRC-32C stored at the end of the object.
        stored: u32,
        /// The CRC-32C of the bytes before it.
        computed: u32,
    },
    /// The checksum holds but the contents do not parse as a chunk (bad magic, truncated
    /// header, entry or payload, or bytes after the last entry).
    #[error("{key}: not an archived WAL chunk ({reason})")]
    Malformed {
        /// The chunk's object key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A well-formed chunk whose shard, LSN range or latest time stamp differ from its name, or
    /// whose LSNs are not consecutive.
    #[error("{key}: holds {found}, its name says {expected}")]
    NameMismatch {
        /// The chunk's object key.
        key: String,
        /// The name it was read under (`Debug` of its [`ChunkName`]).
        expected: String,
        /// The name its contents give.
        found: String,
    },
    /// Encoding was given no entries, an LSN 0, LSNs that are not consecutive, epochs that
    /// decrease, or a shard name, entry count or payload too long for the format.
    #[error(
        "a chunk needs at least one entry, with consecutive LSNs and epochs that never decrease"
    )]
    BadEntries,
}

/// The object of `entries` (consecutive LSNs, epochs never decreasing) and its name.
pub fn encode(shard: &str, entries: &[ArchivedEntry]) -> Result<(ChunkName, Bytes), ChunkError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Err(ChunkError::BadEntries);
    };
    let ordered = entries
        .windows(2)
        .all(|w| w[1].lsn == w[0].lsn + 1 && w[1].epoch >= w[0].epoch);
    let shard_len = u16::try_from(shard.len()).map_err(|_| ChunkError::BadEntries)?;
    let count = u32::try_from(entries.len()).map_err(|_| ChunkError::BadEntries)?;
    if !ordered || first.lsn == 0 {
        return Err(ChunkError::BadEntries);
    }
    let size = 8 + 2 + shard.len() + 4 + 4;
    let size = size
        + entries
            .iter()
            .map(|e| ENTRY_HEADER + e.payload.len())
            .sum::<usize>();
    let mut out = BytesMut::with_capacity(size);
    out.put_slice(MAGIC);
    out.put_u16_le(shard_len);
    out.put_slice(shard.as_bytes());
    out.put_u32_le(count);
    for e in entries {
        let len = u32::try_from(e.payload.len()).map_err(|_| ChunkError::BadEntries)?;
        out.put_u32_le(len);
        out.put_u64_le(e.epoch);
        out.put_u64_le(e.lsn);
        out.put_u128_le(e.op_id);
        out.put_u64_le(e.at_ms);
        out.put_slice(&e.payload);
    }
    out.put_u32_le(crc32c::crc32c(&out));
    let name = ChunkName {
        shard: shard.to_owned(),
        first: first.lsn,
        last: last.lsn,
        max_at_ms: entries.iter().map(|e| e.at_ms).max().unwrap_or(0),
    };
    Ok((name, out.freeze()))
}

/// The entries of the object stored under `name`, after checking its checksum and that it
/// holds exactly what its name says.
pub fn decode(name: &ChunkName, object: &Bytes) -> Result<Vec<ArchivedEntry>, ChunkError> {
    let key = name.key();
    let malformed = |reason: &str| ChunkError::Malformed {
        key: key.clone(),
        reason: reason.to_owned(),
    };
    if object.len() < MAGIC.len() + 2 + 4 + 4 {
        return Err(malformed("too short"));
    }
    let (body, crc) = object.split_at(object.len() - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(ChunkError::Checksum {
            key,
            stored,
            computed,
        });
    }
    let mut buf = object.slice(..body.len());
    if !buf.starts_with(MAGIC) {
        return Err(malformed("bad magic"));
    }
    buf.advance(MAGIC.len());
    let shard_len = usize::from(buf.get_u16_le());
    if buf.remaining() < shard_len + 4 {
        return Err(malformed("truncated header"));
    }
    let shard = buf.split_to(shard_len);
    let count = buf.get_u32_le();
    let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0).min(1 << 20));
    for _ in 0..count {
        if buf.remaining() < ENTRY_HEADER {
            return Err(malformed("truncated entry"));
        }
        let len = usize::try_from(buf.get_u32_le()).map_err(|_| malformed("entry too large"))?;
        let (epoch, lsn, op_id, at_ms) = (
            buf.get_u64_le(),
            buf.get_u64_le(),
            buf.get_u128_le(),
            buf.get_u64_le(),
        );
        if buf.remaining() < len {
            return Err(malformed("truncated payload"));
        }
        let payload = buf.split_to(len);
        entries.push(ArchivedEntry {
            epoch,
            lsn,
            op_id,
            at_ms,
            payload,
        });
    }
    if buf.has_remaining() {
        return Err(malformed("bytes after the last entry"));
    }
    let found = ChunkName {
        shard: String::from_utf8_lossy(&shard).into_owned(),
        first: entries.first().map_or(0, |e| e.lsn),
        last: entries.last().map_or(0, |e| e.lsn),
        max_at_ms: entries.iter().map(|e| e.at_ms).max().unwrap_or(0),
    };
    let consecutive = entries.windows(2).all(|w| w[1].lsn == w[0].lsn + 1);
    if found != *name || !consecutive {
        return Err(ChunkError::NameMismatch {
            key,
            expected: format!("{name:?}"),
            found: format!("{found:?}"),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(first: u64, payloads: &[Vec<u8>]) -> Vec<ArchivedEntry> {
        payloads
            .iter()
            .enumerate()
            .map(|(i, p)| ArchivedEntry {
                epoch: 3 + i as u64 / 4,
                lsn: first + i as u64,
                op_id: (i as u128) << 70 | 7,
                at_ms: 1_700_000_000_000 + (i as u64 * 37) % 500,
                payload: Bytes::from(p.clone()),
            })
            .collect()
    }

    proptest! {
        #[test]
        fn round_trips(first in 1u64..1 << 40, payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..40)) {
            let es = entries(first, &payloads);
            let (name, object) = encode("sh1", &es).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(name.first, first);
            prop_assert_eq!(name.last, first + payloads.len() as u64 - 1);
            prop_assert_eq!(decode(&name, &object), Ok(es));
        }

        #[test]
        fn any_flipped_bit_is_refused(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..32), 1..8), at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let (name, object) = encode("sh1", &entries(5, &payloads)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut bad = object.to_vec();
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(decode(&name, &Bytes::from(bad)).is_err());
        }
    }

    #[test]
    fn a_chunk_under_another_name_is_refused() {
        let (name, object) = encode("sh1", &entries(5, &[vec![1], vec![2]])).unwrap();
        let other = ChunkName {
            first: 6,
            ..name.clone()
        };
        assert!(matches!(
            decode(&other, &object),
            Err(ChunkError::NameMismatch { .. })
        ));
        assert!(matches!(
            decode(&name, &object.slice(..object.len() - 1)),
            Err(ChunkError::Checksum { .. })
        ));
    }

    #[test]
    fn entries_must_be_consecutive() {
        let mut es = entries(5, &[vec![1], vec![2]]);
        es[1].lsn = 7;
        assert_eq!(encode("sh1", &es), Err(ChunkError::BadEntries));
        assert_eq!(encode("sh1", &[]), Err(ChunkError::BadEntries));
    }
}
