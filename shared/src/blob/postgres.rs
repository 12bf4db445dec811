//! The blob store of the cluster: blobs in the same PostgreSQL database as
//! the record, so a cluster needs no other service. Each blob is a `blobs`
//! row and its bytes as `blob_chunks` rows of `CHUNK` bytes (the last one
//! shorter), numbered from 0 (migration 6).
//!
//! A put is one transaction: the `blobs` row first, a chunk row each time
//! `CHUNK` bytes have arrived (so memory holds one chunk, whatever the
//! file), then the row's size and digest, then COMMIT. Any failure, a body
//! over the bound, or a dropped put rolls it back, so a blob is whole or
//! absent. A read asks for a few chunks per query and yields only the
//! bytes of the range asked; it takes a connection from the pool for each
//! query only, so a slow reader holds none while it is not reading.
//!
//! It shares `PostgresStore`'s pool (`PostgresStore::blobs`). A blob's
//! `created_at` is the time its UUIDv7 id carries, as in the `fs` store.

use std::collections::VecDeque;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use deadpool_postgres::Pool;
use futures_util::StreamExt;

use super::{
    id_created_at, is_valid_id, new_id, resolve_range, BlobError, BlobRead, BlobStore, ByteStream,
    StoredBlob, Tally,
};
use crate::store::StoreError;
use crate::Timestamp;

/// Bytes per chunk row (256 KiB): small enough to hold one in memory per
/// upload, large enough that a 10 MiB file is 40 rows.
pub const CHUNK: usize = 256 * 1024;

/// Chunks fetched per query of a read.
const CHUNKS_PER_READ: i32 = 4;

/// `BlobStore` on the PostgreSQL database of a `PostgresStore`. Cloning is
/// cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresBlobStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresBlobStore {
    // Not the pool's own Debug: it would print the connection settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBlobStore").finish_non_exhaustive()
    }
}

impl PostgresBlobStore {
    pub(crate) fn new(pool: Pool) -> Self {
        PostgresBlobStore { pool }
    }
}

#[async_trait]
impl BlobStore for PostgresBlobStore {
    async fn put(&self, mut body: ByteStream, max_bytes: u64) -> Result<StoredBlob, BlobError> {
        let id = new_id();
        let created_at = id_created_at(&id).map_or(Timestamp::now().0, |at| at.0);
        let mut client = self.pool.get().await.map_err(db)?;
        // Dropped without COMMIT (an error below, or the put's future
        // dropped), the transaction rolls back.
        let tx = client.transaction().await.map_err(db)?;
        let chunk_size = i32::try_from(CHUNK).unwrap_or(i32::MAX);
        let insert_blob = tx
            .prepare_cached(
                "INSERT INTO blobs (id, size, sha256, chunk_size, created_at) \
                 VALUES ($1, 0, '', $2, $3)",
            )
            .await
            .map_err(db)?;
        tx.execute(&insert_blob, &[&id, &chunk_size, &created_at])
            .await
            .map_err(db)?;
        let insert_chunk = tx
            .prepare_cached("INSERT INTO blob_chunks (blob_id, chunk, data) VALUES ($1, $2, $3)")
            .await
            .map_err(db)?;
        let mut tally = Tally::new(max_bytes);
        let mut pending = BytesMut::with_capacity(CHUNK);
        let mut next_chunk: i32 = 0;
        while let Some(piece) = body.next().await {
            let piece = piece?;
            tally.add(&piece)?;
            let mut rest = &piece[..];
            while !rest.is_empty() {
                let take = (CHUNK - pending.len()).min(rest.len());
                pending.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if pending.len() == CHUNK {
                    tx.execute(&insert_chunk, &[&id, &next_chunk, &&pending[..]])
                        .await
                        .map_err(db)?;
                    next_chunk += 1;
                    pending.clear();
                }
            }
        }
        if !pending.is_empty() {
            tx.execute(&insert_chunk, &[&id, &next_chunk, &&pending[..]])
                .await
                .map_err(db)?;
        }
        let size = i64::try_from(tally.size())
            .map_err(|_| BlobError::Internal("a blob larger than i64".into()))?;
        let stored = tally.finish(id);
        let finish = tx
            .prepare_cached("UPDATE blobs SET size = $2, sha256 = $3 WHERE id = $1")
            .await
            .map_err(db)?;
        tx.execute(&finish, &[&stored.id, &size, &stored.sha256])
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    async fn get(&self, id: &str, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        if !is_valid_id(id) {
            return Err(BlobError::NotFound);
        }
        let client = self.pool.get().await.map_err(db)?;
        let statement = client
            .prepare_cached("SELECT size, chunk_size FROM blobs WHERE id = $1")
            .await
            .map_err(db)?;
        let row = client
            .query_opt(&statement, &[&id])
            .await
            .map_err(db)?
            .ok_or(BlobError::NotFound)?;
        drop(client);
        let size: i64 = row.try_get(0).map_err(db)?;
        let chunk_size: i32 = row.try_get(1).map_err(db)?;
        let total_size =
            u64::try_from(size).map_err(|_| BlobError::Internal("a negative size".into()))?;
        let chunk_size = u64::try_from(chunk_size)
            .ok()
            .filter(|&size| size > 0)
            .ok_or_else(|| BlobError::Internal("a chunk size below 1".into()))?;
        let served = resolve_range(total_size, range)?;
        let reader = RangeReader {
            pool: self.pool.clone(),
            id: id.to_owned(),
            chunk_size,
            position: served.start,
            end: served.end,
            ready: VecDeque::new(),
        };
        let body = futures_util::stream::try_unfold(reader, |mut reader| async move {
            match reader.next_piece().await? {
                Some(piece) => Ok(Some((piece, reader))),
                None => Ok(None),
            }
        });
        Ok(BlobRead {
            total_size,
            served,
            body: Box::pin(body),
        })
    }

    async fn delete(&self, id: &str) -> Result<bool, BlobError> {
        if !is_valid_id(id) {
            return Ok(false);
        }
        let client = self.pool.get().await.map_err(db)?;
        // The chunks go with the row (ON DELETE CASCADE).
        let statement = client
            .prepare_cached("DELETE FROM blobs WHERE id = $1")
            .await
            .map_err(db)?;
        Ok(client.execute(&statement, &[&id]).await.map_err(db)? > 0)
    }

    async fn created_before(
        &self,
        before: Timestamp,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, BlobError> {
        let client = self.pool.get().await.map_err(db)?;
        // Ids begin with their creation time, so their order is that of
        // `created_at`, and they are the cursor.
        let statement = client
            .prepare_cached(
                "SELECT id FROM blobs WHERE created_at < $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .await
            .map_err(db)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let after = after.unwrap_or("");
        let rows = client
            .query(&statement, &[&before.0, &after, &limit])
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| row.try_get::<_, String>(0).map_err(db))
            .collect()
    }
}

/// Where a read stands: the next byte to yield, the end of the range, and
/// the pieces of the last query not yet yielded.
struct RangeReader {
    pool: Pool,
    id: String,
    chunk_size: u64,
    position: u64,
    end: u64,
    ready: VecDeque<Bytes>,
}

impl RangeReader {
    async fn next_piece(&mut self) -> Result<Option<Bytes>, BlobError> {
        if self.ready.is_empty() && self.position < self.end {
            self.fetch().await?;
        }
        Ok(self.ready.pop_front())
    }

    /// The next few chunks of the range, cut to it.
    async fn fetch(&mut self) -> Result<(), BlobError> {
        let to_i32 =
            |n: u64| i32::try_from(n).map_err(|_| BlobError::Internal("too many chunks".into()));
        let first = to_i32(self.position / self.chunk_size)?;
        let last_of_range = to_i32((self.end - 1) / self.chunk_size)?;
        let last = last_of_range.min(first.saturating_add(CHUNKS_PER_READ - 1));
        let client = self.pool.get().await.map_err(db)?;
        let statement = client
            .prepare_cached(
                "SELECT chunk, data FROM blob_chunks \
                 WHERE blob_id = $1 AND chunk BETWEEN $2 AND $3 ORDER BY chunk",
            )
            .await
            .map_err(db)?;
        let rows = client
            .query(&statement, &[&self.id, &first, &last])
            .await
            .map_err(db)?;
        drop(client);
        let mut expected = first;
        for row in rows {
            let chunk: i32 = row.try_get(0).map_err(db)?;
            if chunk != expected {
                return Err(missing(&self.id));
            }
            let data = Bytes::from(row.try_get::<_, Vec<u8>>(1).map_err(db)?);
            let chunk_start = u64::try_from(chunk).unwrap_or(0) * self.chunk_size;
            let from = self.position.saturating_sub(chunk_start);
            let to = (self.end - chunk_start).min(data.len() as u64);
            if from >= to {
                return Err(missing(&self.id));
            }
            // Both within `data`, whose length fits in usize.
            self.ready.push_back(data.slice(from as usize..to as usize));
            self.position = chunk_start + to;
            expected += 1;
        }
        if expected != last + 1 {
            return Err(missing(&self.id));
        }
        Ok(())
    }
}

/// Chunks absent or short: the blob was deleted while being read.
fn missing(id: &str) -> BlobError {
    tracing::debug!(blob = id, "blob chunks missing while reading");
    BlobError::NotFound
}

/// Sorts a database failure as the record's store does, then into the
/// blob store's kinds.
fn db(error: impl Into<StoreError>) -> BlobError {
    match error.into() {
        StoreError::Unavailable(text) => BlobError::Unavailable(text),
        StoreError::Conflict(text) | StoreError::Internal(text) => BlobError::Internal(text),
    }
}
