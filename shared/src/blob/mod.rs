//! The blob store seam: the bytes of uploaded files, kept apart from the
//! record (the `attachments` rows of the store seam name a blob by id).
//! `fs` keeps them in a folder beside the standalone SQLite file;
//! `postgres` keeps them in the cluster's database as numbered chunks.
//! Another backend (an S3-compatible bucket) only has to implement
//! `BlobStore`: callers see nothing but the trait.
//!
//! Bytes stream both ways, so a file is never held whole in memory: `put`
//! consumes a stream of chunks and `get` yields one. A put is all or
//! nothing: one that fails, goes over its size bound, or is dropped half
//! way leaves no blob behind. Ids are chosen by the store (`new_id`), so a
//! caller can never name a path or a row of its own.
//!
//! Every implementation must pass the suite in `conformance`.

use std::ops::Range;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};

use crate::{ChatError, ErrorCode, Timestamp};

pub mod fs;
#[cfg(feature = "postgres")]
pub mod postgres;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

/// A stream of a blob's bytes, in chunks of any size.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, BlobError>> + Send + 'static>>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// The body went past the size bound of the put; nothing was kept.
    #[error("the file is larger than {max_bytes} bytes")]
    TooLarge { max_bytes: u64 },
    #[error("no such blob")]
    NotFound,
    /// A range that does not lie within the blob.
    #[error("the range is not within the file")]
    InvalidRange,
    /// The body of a put stopped with an error of its own (the uploader
    /// went away, or was too slow); nothing was kept.
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
    #[error("blob store error: {0}")]
    Internal(String),
}

impl From<BlobError> for ChatError {
    /// What a client is told: the store's own failures are logged by the
    /// caller and reach the client only as `unavailable`.
    fn from(error: BlobError) -> Self {
        match error {
            BlobError::TooLarge { max_bytes } => ChatError::new(
                ErrorCode::PayloadTooLarge,
                format!("the file is larger than {max_bytes} bytes"),
            ),
            BlobError::NotFound => ChatError::not_found("no such file"),
            BlobError::InvalidRange => {
                ChatError::invalid("the requested range is not within the file")
            }
            BlobError::Interrupted(_) => ChatError::invalid("the upload was interrupted"),
            BlobError::Unavailable(_) | BlobError::Internal(_) => {
                ChatError::unavailable("the file store is unavailable; try again")
            }
        }
    }
}

/// A blob as `put` stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub id: String,
    pub size: u64,
    /// SHA-256 of the bytes, lower-case hex.
    pub sha256: String,
}

/// The answer of `get`: the blob's whole size, the bytes served (half
/// open: `served.start..served.end`), and those bytes.
pub struct BlobRead {
    pub total_size: u64,
    pub served: Range<u64>,
    pub body: ByteStream,
}

impl std::fmt::Debug for BlobRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobRead")
            .field("total_size", &self.total_size)
            .field("served", &self.served)
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores the bytes of `body` under a new id. Past `max_bytes` the put
    /// stops with `TooLarge`; an error of the body ends it with that
    /// error; either way, or when the future is dropped, nothing is kept.
    async fn put(&self, body: ByteStream, max_bytes: u64) -> Result<StoredBlob, BlobError>;

    /// The bytes of a blob: all of them, or those of `range` (first and
    /// last byte, inclusive; a last byte past the end is the end, as in
    /// HTTP). A range starting past the end, or ending before it starts,
    /// is `InvalidRange`; an unknown id (or one not of the store's form)
    /// is `NotFound`.
    async fn get(&self, id: &str, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError>;

    /// Removes a blob; whether it existed.
    async fn delete(&self, id: &str) -> Result<bool, BlobError>;

    /// Up to `limit` blobs stored before `before`, oldest first (ids sort
    /// by creation), from the first one past `after` when given: what a
    /// cleanup pages through.
    async fn created_before(
        &self,
        before: Timestamp,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, BlobError>;
}

/// A new blob id: a UUIDv7 as 32 lower-case hex digits, so ids sort by
/// creation and carry no character a path or a query could misread.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Whether `id` has the form `new_id` gives.
pub fn is_valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// When a blob of this id was created, from the UUIDv7's time field.
pub(crate) fn id_created_at(id: &str) -> Option<Timestamp> {
    if !is_valid_id(id) {
        return None;
    }
    let millis = i64::from_str_radix(id.get(..12)?, 16).ok()?;
    Some(Timestamp(millis))
}

/// The bytes of a blob of `size` to serve for `range`, as `get` describes.
pub fn resolve_range(size: u64, range: Option<(u64, u64)>) -> Result<Range<u64>, BlobError> {
    match range {
        None => Ok(0..size),
        Some((start, end)) if start <= end && start < size => Ok(start..end.min(size - 1) + 1),
        Some(_) => Err(BlobError::InvalidRange),
    }
}

/// The running size and digest of a put, with its bound.
pub(crate) struct Tally {
    hasher: Sha256,
    size: u64,
    max_bytes: u64,
}

impl Tally {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Tally {
            hasher: Sha256::new(),
            size: 0,
            max_bytes,
        }
    }

    /// Counts `chunk` in; `TooLarge` once the bound is passed.
    pub(crate) fn add(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        self.size += chunk.len() as u64;
        if self.size > self.max_bytes {
            return Err(BlobError::TooLarge {
                max_bytes: self.max_bytes,
            });
        }
        self.hasher.update(chunk);
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn finish(self, id: String) -> StoredBlob {
        StoredBlob {
            id,
            size: self.size,
            sha256: hex(&self.hasher.finalize()),
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
}

/// SHA-256 of `bytes`, lower-case hex (for checking what a store gave).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_stores_form_and_carry_their_time() {
        let before = Timestamp::now();
        let id = new_id();
        assert!(is_valid_id(&id), "{id}");
        let at = id_created_at(&id).expect("a time");
        assert!(at.0 >= before.0 && at.0 <= Timestamp::now().0);
        for bad in [
            "",
            "../etc/passwd",
            &id.to_uppercase(),
            &format!("{id}0"),
            "x".repeat(32).as_str(),
        ] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn ranges_are_clamped_to_the_end_and_checked() {
        assert_eq!(resolve_range(10, None), Ok(0..10));
        assert_eq!(resolve_range(10, Some((0, 0))), Ok(0..1));
        assert_eq!(resolve_range(10, Some((3, 99))), Ok(3..10));
        assert_eq!(
            resolve_range(10, Some((10, 12))),
            Err(BlobError::InvalidRange)
        );
        assert_eq!(
            resolve_range(10, Some((5, 4))),
            Err(BlobError::InvalidRange)
        );
        assert_eq!(resolve_range(0, Some((0, 0))), Err(BlobError::InvalidRange));
        assert_eq!(resolve_range(0, None), Ok(0..0));
    }

    #[test]
    fn errors_map_to_the_protocols_codes() {
        let code = |error: BlobError| ChatError::from(error).code;
        assert_eq!(
            code(BlobError::TooLarge { max_bytes: 1 }),
            ErrorCode::PayloadTooLarge
        );
        assert_eq!(code(BlobError::NotFound), ErrorCode::NotFound);
        assert_eq!(code(BlobError::InvalidRange), ErrorCode::InvalidPayload);
        assert_eq!(
            code(BlobError::Interrupted("x".into())),
            ErrorCode::InvalidPayload
        );
        assert_eq!(
            code(BlobError::Unavailable("x".into())),
            ErrorCode::Unavailable
        );
        assert_eq!(
            code(BlobError::Internal("x".into())),
            ErrorCode::Unavailable
        );
    }

    #[test]
    fn digests_are_lower_case_hex() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
