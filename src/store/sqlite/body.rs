//! How event bodies are kept in `events.body`: zstd-compressed (level 1) when that is smaller,
//! as they are, otherwise, with `events.body_encoding` saying which.
//!
//! TextUs bodies are JSON of ~1–2.5 KB that compresses ~2.5×: a 2.5 KB row fills a 4 KiB page
//! alone, a 1 KB row shares it with two others, so a backlog for a down target takes ~2.5× less
//! disk and the checkpoints copy ~2.5× fewer pages into the database file while it builds
//! (bench/REPORT.md). Compression runs on the caller's thread, not the store writer's, which is
//! the bottleneck at full speed; bodies are decompressed only when a claim reads them back (a
//! caught-up dispatcher is handed the original), and then on the claiming dispatcher's thread
//! too: in the writer, decompressing claims was 13 % of its time while a backlog drained.

use std::cell::RefCell;

use bytes::Bytes;

/// `events.body_encoding` of a body kept as it came (every body written before compression).
pub const RAW: i64 = 0;
/// `events.body_encoding` of a zstd frame that records its content size.
pub const ZSTD: i64 = 1;

/// Fast, and on these bodies within a few per cent of the ratio of the default level 3.
const LEVEL: i32 = 1;

/// A body as it goes into `events`.
#[derive(Debug, Clone)]
pub struct Stored {
    pub encoding: i64,
    pub bytes: Bytes,
}

thread_local! {
    /// One compression context per thread, so each body does not allocate its own.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// `body` as it came.
pub fn raw(body: &Bytes) -> Stored {
    Stored {
        encoding: RAW,
        bytes: body.clone(),
    }
}

/// The smaller of `body` and its compressed form. Never fails: a body that cannot be compressed
/// (or a context that cannot be created) is kept as it is.
pub fn encode(body: &Bytes) -> Stored {
    let compressed = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        slot.as_mut().and_then(|c| c.compress(body).ok())
    });
    match compressed {
        Some(bytes) if bytes.len() < body.len() => Stored {
            encoding: ZSTD,
            bytes: Bytes::from(bytes),
        },
        _ => raw(body),
    }
}

/// The body as it came, from a row's `body` and `body_encoding`.
pub fn decode(encoding: i64, bytes: Bytes) -> Result<Bytes, DecodeError> {
    match encoding {
        RAW => Ok(bytes),
        ZSTD => DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let d = match &mut *slot {
                Some(d) => d,
                empty => empty.insert(zstd::bulk::Decompressor::new().map_err(DecodeError::Zstd)?),
            };
            // Our frames record their size, which is what gets allocated; the capacity only
            // bounds a frame that would not say.
            d.decompress(&bytes, u32::MAX as usize)
                .map(Bytes::from)
                .map_err(DecodeError::Zstd)
        }),
        other => Err(DecodeError::Unknown(other)),
    }
}

/// A stored body that cannot be read back: the file was damaged, or written by a newer relay.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("stored body does not decompress: {0}")]
    Zstd(std::io::Error),
    #[error("stored body has encoding {0}, which this relay does not know")]
    Unknown(i64),
}

/// Reads the body at column `body` with its encoding at column `encoding` of a query row.
pub fn column(row: &rusqlite::Row<'_>, body: usize, encoding: usize) -> rusqlite::Result<Bytes> {
    let bytes: Vec<u8> = row.get(body)?;
    decode(row.get(encoding)?, Bytes::from(bytes)).map_err(|e| unreadable(body, e))
}

/// A body that does not decode, as the error of reading its column.
pub fn unreadable(column: usize, e: DecodeError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Blob, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_event_shrinks_and_comes_back_whole() {
        for (event_type, sample) in crate::support::samples::SAMPLES {
            let body = Bytes::from_static(sample);
            let stored = encode(&body);
            assert_eq!(stored.encoding, ZSTD, "{event_type}");
            assert!(stored.bytes.len() * 3 < body.len() * 2, "{event_type}");
            let back = decode(stored.encoding, stored.bytes).expect("decode");
            assert_eq!(back, body, "{event_type}");
        }
    }

    #[test]
    fn bodies_that_do_not_shrink_are_kept_as_they_are() {
        let body = Bytes::from_static(b"{}");
        let stored = encode(&body);
        assert_eq!(stored.encoding, RAW);
        assert_eq!(stored.bytes, body);
        assert_eq!(decode(RAW, Bytes::from_static(b"{}")).expect("raw"), body);
    }

    #[test]
    fn damaged_or_unknown_encodings_are_errors_not_garbage() {
        assert!(matches!(
            decode(ZSTD, Bytes::from_static(b"not a zstd frame")),
            Err(DecodeError::Zstd(_))
        ));
        assert!(matches!(
            decode(7, Bytes::from_static(b"{}")),
            Err(DecodeError::Unknown(7))
        ));
    }
}
