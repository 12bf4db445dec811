//! The blob store of standalone mode: one file per blob in a folder beside
//! the SQLite file (`<root>/blobs/<id>`).
//!
//! A put writes to `<root>/tmp/<random>`, syncs it, and renames it into
//! `blobs/` (then syncs the folder), so a blob under its id is always
//! whole; a put that fails or is dropped removes its temporary file, and
//! whatever a crash left in `tmp/` is cleared when the store is opened.
//! Only ids of the store's own form (`blob::is_valid_id`) are ever joined
//! to a path, so no id can reach outside the folder. A blob's creation
//! time is the one its UUIDv7 id carries, so listing needs no metadata.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{
    id_created_at, is_valid_id, new_id, resolve_range, BlobError, BlobRead, BlobStore, ByteStream,
    StoredBlob, Tally,
};
use crate::Timestamp;

/// Bytes read from the file for each chunk `get` yields.
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct FsBlobStore {
    blobs: PathBuf,
    tmp: PathBuf,
}

impl FsBlobStore {
    /// Opens (or creates) the store in `root`, clearing what interrupted
    /// puts left. Blocking I/O: call it at startup, before serving.
    pub fn open(root: &Path) -> Result<FsBlobStore, BlobError> {
        let blobs = root.join("blobs");
        let tmp = root.join("tmp");
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io_error(&tmp, err)),
        }
        for dir in [&blobs, &tmp] {
            std::fs::create_dir_all(dir).map_err(|err| io_error(dir, err))?;
        }
        Ok(FsBlobStore { blobs, tmp })
    }

    fn path_of(&self, id: &str) -> Option<PathBuf> {
        is_valid_id(id).then(|| self.blobs.join(id))
    }

    /// The folder of temporary files (tests look that it is left empty).
    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    async fn write_all(
        &self,
        mut body: ByteStream,
        max_bytes: u64,
        path: &Path,
    ) -> Result<Tally, BlobError> {
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|err| io_error(path, err))?;
        let mut tally = Tally::new(max_bytes);
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            tally.add(&chunk)?;
            file.write_all(&chunk)
                .await
                .map_err(|err| io_error(path, err))?;
        }
        file.flush().await.map_err(|err| io_error(path, err))?;
        file.sync_all().await.map_err(|err| io_error(path, err))?;
        Ok(tally)
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, body: ByteStream, max_bytes: u64) -> Result<StoredBlob, BlobError> {
        let id = new_id();
        let temporary = TemporaryFile(Some(self.tmp.join(new_id())));
        let tmp_path = temporary.path().to_owned();
        let tally = self.write_all(body, max_bytes, &tmp_path).await?;
        let path = self.blobs.join(&id);
        tokio::fs::rename(&tmp_path, &path)
            .await
            .map_err(|err| io_error(&path, err))?;
        temporary.keep();
        // The rename is durable only once the folder is synced; a blob that
        // might not survive a crash is not reported stored.
        if let Err(err) = sync_dir(self.blobs.clone()).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(err);
        }
        Ok(tally.finish(id))
    }

    async fn get(&self, id: &str, range: Option<(u64, u64)>) -> Result<BlobRead, BlobError> {
        let path = self.path_of(id).ok_or(BlobError::NotFound)?;
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound)
            }
            Err(err) => return Err(io_error(&path, err)),
        };
        let total_size = file
            .metadata()
            .await
            .map_err(|err| io_error(&path, err))?
            .len();
        let served = resolve_range(total_size, range)?;
        file.seek(SeekFrom::Start(served.start))
            .await
            .map_err(|err| io_error(&path, err))?;
        let remaining = served.end - served.start;
        let body = futures_util::stream::try_unfold(
            (file, remaining, path),
            |(mut file, remaining, path)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let wanted = usize::try_from(remaining).map_or(READ_CHUNK, |r| r.min(READ_CHUNK));
                let mut buffer = vec![0; wanted];
                let read = file
                    .read(&mut buffer)
                    .await
                    .map_err(|err| io_error(&path, err))?;
                if read == 0 {
                    return Err(BlobError::Internal(format!(
                        "{} ended before its size",
                        path.display()
                    )));
                }
                buffer.truncate(read);
                Ok(Some((
                    Bytes::from(buffer),
                    (file, remaining - read as u64, path),
                )))
            },
        );
        Ok(BlobRead {
            total_size,
            served,
            body: Box::pin(body),
        })
    }

    async fn delete(&self, id: &str) -> Result<bool, BlobError> {
        let Some(path) = self.path_of(id) else {
            return Ok(false);
        };
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(io_error(&path, err)),
        }
    }

    async fn created_before(
        &self,
        before: Timestamp,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, BlobError> {
        let dir = self.blobs.clone();
        let after = after.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for entry in std::fs::read_dir(&dir).map_err(|err| io_error(&dir, err))? {
                let entry = entry.map_err(|err| io_error(&dir, err))?;
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let past_after = after.as_deref().is_none_or(|after| name.as_str() > after);
                if past_after && id_created_at(&name).is_some_and(|at| at < before) {
                    ids.push(name);
                }
            }
            // UUIDv7 ids of one process sort by creation.
            ids.sort_unstable();
            ids.truncate(limit);
            Ok(ids)
        })
        .await
        .map_err(|err| BlobError::Internal(format!("listing blobs failed: {err}")))?
    }
}

/// A temporary file removed when dropped, unless kept: a put that fails
/// or whose future is dropped mid-way leaves nothing in `tmp/`.
struct TemporaryFile(Option<PathBuf>);

impl TemporaryFile {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            // One unlink: cheap enough to run where the put was dropped.
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => tracing::warn!(path = %path.display(), %err, "temporary upload left"),
            }
        }
    }
}

async fn sync_dir(dir: PathBuf) -> Result<(), BlobError> {
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&dir)
            .and_then(|handle| handle.sync_all())
            .map_err(|err| io_error(&dir, err))
    })
    .await
    .map_err(|err| BlobError::Internal(format!("syncing the blob folder failed: {err}")))?
}

/// A file system failure: the disk (full, read-only, gone) is outside the
/// caller's control, so it is `Unavailable`.
fn io_error(path: &Path, err: std::io::Error) -> BlobError {
    BlobError::Unavailable(format!("{}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::conformance;

    async fn open_for_check() -> (tempfile::TempDir, FsBlobStore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = FsBlobStore::open(&dir.path().join("attachments")).expect("open");
        (dir, store)
    }

    fn tmp_entries(store: &FsBlobStore) -> usize {
        std::fs::read_dir(store.tmp_dir()).expect("tmp dir").count()
    }

    conformance::blob_tests_per_check!(open_for_check);

    #[tokio::test]
    async fn failed_puts_leave_no_temporary_file() {
        let (_dir, store) = open_for_check().await;
        let body = conformance::chunks_of(&[0u8; 5000], 1000);
        let refused = store.put(body, 4000).await;
        assert!(
            matches!(refused, Err(BlobError::TooLarge { .. })),
            "{refused:?}"
        );
        assert_eq!(tmp_entries(&store), 0);
        let failing = conformance::failing_after(&[1u8; 3000], 1000);
        assert!(store.put(failing, 1 << 20).await.is_err());
        assert_eq!(tmp_entries(&store), 0);
    }

    #[tokio::test]
    async fn a_dropped_put_leaves_no_temporary_file() {
        let (_dir, store) = open_for_check().await;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, BlobError>>(1);
        let body: ByteStream = Box::pin(futures_util::stream::unfold(receiver, |mut rx| async {
            rx.recv().await.map(|item| (item, rx))
        }));
        let put = {
            let store = store.clone();
            tokio::spawn(async move { store.put(body, 1 << 20).await })
        };
        sender
            .send(Ok(Bytes::from_static(b"first")))
            .await
            .expect("put reads");
        // Once the put has taken the next chunk's place in the channel, the
        // first one is written (or being written) to its temporary file.
        sender
            .send(Ok(Bytes::from_static(b"second")))
            .await
            .expect("put reads");
        assert_eq!(tmp_entries(&store), 1, "the upload is under way");
        put.abort();
        assert!(put.await.expect_err("aborted").is_cancelled());
        assert_eq!(tmp_entries(&store), 0);
        let stored = store
            .created_before(Timestamp(i64::MAX), None, 10)
            .await
            .expect("list");
        assert!(stored.is_empty(), "{stored:?}");
    }

    #[tokio::test]
    async fn opening_clears_leftovers_and_ids_never_leave_the_folder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("attachments");
        let store = FsBlobStore::open(&root).expect("open");
        std::fs::write(store.tmp_dir().join("left-by-a-crash"), b"x").expect("write");
        std::fs::write(dir.path().join("secret"), b"secret").expect("write");
        let store = FsBlobStore::open(&root).expect("reopen");
        assert_eq!(tmp_entries(&store), 0);
        for id in ["../../secret", "../tmp/x", "/etc/passwd", "SECRET"] {
            assert!(
                matches!(store.get(id, None).await, Err(BlobError::NotFound)),
                "{id}"
            );
            assert_eq!(store.delete(id).await, Ok(false), "{id}");
        }
        assert!(dir.path().join("secret").exists());
    }
}
