//! Removing uploads nobody uses: a file no message has come to refer to
//! within `ATTACHMENT_UNREFERENCED_SECS` of its upload goes, row and bytes,
//! and so do bytes that never got their row (an upload whose recording
//! failed, or a process that stopped in between). Every gateway sweeps;
//! the removals are conditional, so gateways sweeping at once remove each
//! file once and never one a message refers to.
//!
//! The row goes before the bytes: a failure in between leaves bytes
//! without a row, which the next sweep's pass over the blobs removes,
//! never a row whose bytes are gone.

use std::sync::Arc;
use std::time::Duration;

use chat_shared::blob::BlobStore;
use chat_shared::store::Store;
use chat_shared::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::attachments::remove_blob;
use crate::state::GatewayState;

/// Rows or blobs looked at per store call.
const PAGE: usize = 100;

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub unreferenced: usize,
    pub orphan_blobs: usize,
}

/// How often a gateway sweeps: a quarter of the time an unused file is
/// kept, within a second and ten minutes.
pub fn sweep_interval(keep: Duration) -> Duration {
    (keep / 4).clamp(Duration::from_secs(1), Duration::from_secs(600))
}

/// Sweeps every `sweep_interval` until `stop`; one of the gateway's
/// tracked tasks.
pub async fn run(state: Arc<GatewayState>, stop: CancellationToken) {
    let keep = state.config.attachments.unreferenced_after;
    let every = sweep_interval(keep);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let sweep = sweep(&*state.store, &*state.blobs, keep, Timestamp::now());
        let outcome = tokio::select! {
            _ = stop.cancelled() => return,
            outcome = sweep => outcome,
        };
        match outcome {
            Ok(swept) if swept != Swept::default() => {
                tracing::info!(?swept, "unused uploads removed")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "sweeping unused uploads failed"),
        }
    }
}

/// One sweep at `now`: what was uploaded more than `keep` ago and is not
/// used.
pub async fn sweep(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    keep: Duration,
    now: Timestamp,
) -> Result<Swept, String> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let cutoff = Timestamp(now.0.saturating_sub(keep_ms));
    let mut swept = Swept::default();
    loop {
        let rows = store
            .unreferenced_attachments_before(cutoff, PAGE)
            .await
            .map_err(|error| error.to_string())?;
        let mut removed = 0;
        for row in &rows {
            // False when a message took it meanwhile, or another gateway
            // removed it first: either way its bytes are not ours to take.
            if store
                .delete_attachment(&row.id)
                .await
                .map_err(|error| error.to_string())?
            {
                remove_blob(blobs, &row.id).await;
                removed += 1;
            }
        }
        swept.unreferenced += removed;
        if rows.len() < PAGE || removed == 0 {
            break;
        }
    }
    let mut after: Option<String> = None;
    loop {
        let ids = blobs
            .created_before(cutoff, after.as_deref(), PAGE)
            .await
            .map_err(|error| error.to_string())?;
        for id in &ids {
            let row = store
                .attachment(id)
                .await
                .map_err(|error| error.to_string())?;
            if row.is_none() {
                remove_blob(blobs, id).await;
                swept.orphan_blobs += 1;
            }
        }
        match ids.last() {
            Some(last) if ids.len() == PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use chat_shared::blob::fs::FsBlobStore;
    use chat_shared::blob::ByteStream;
    use chat_shared::store::sqlite::SqliteStore;
    use chat_shared::store::{AttachmentRecord, Mutation, SessionRecord};

    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A directory of the test's own, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn body(bytes: &'static [u8]) -> ByteStream {
        Box::pin(futures_util::stream::iter([Ok(bytes::Bytes::from_static(
            bytes,
        ))]))
    }

    #[tokio::test]
    async fn a_sweep_removes_unused_uploads_and_bytes_without_a_row() {
        let dir = Dir(std::env::temp_dir().join(format!("sweep-{}", uuid::Uuid::new_v4())));
        let store = SqliteStore::open(&dir.0.join("chat.db")).expect("store");
        let blobs = FsBlobStore::open(&dir.0.join("attachments")).expect("blobs");
        let now = Timestamp::now();
        let session = SessionRecord::opened(
            "s-sweep".into(),
            "c-1".into(),
            "Carla".into(),
            "default".into(),
            None,
            now,
        );
        store
            .commit(vec![Mutation::InsertSession(session)])
            .await
            .expect("session");
        let mut rows = Vec::new();
        for (created_at, referenced_by_seq) in [
            (now, None),
            (now, Some(3)),
            (Timestamp(now.0 + 2 * 86_400_000), None),
        ] {
            let stored = blobs.put(body(b"bytes"), 100).await.expect("put");
            let row = AttachmentRecord {
                id: stored.id,
                session_id: "s-sweep".into(),
                uploader_id: "c-1".into(),
                name: "a.txt".into(),
                size: 5,
                content_type: "text/plain".into(),
                sha256: stored.sha256,
                width: None,
                height: None,
                created_at,
                referenced_by_seq,
            };
            store.insert_attachment(&row).await.expect("row");
            rows.push(row);
        }
        let orphan = blobs.put(body(b"no row"), 100).await.expect("put");

        // A day and a half on: the first row and the orphan are past the
        // day; the referenced row and the one from the future stay.
        let later = Timestamp(now.0 + 36 * 3_600_000);
        let swept = sweep(&store, &blobs, DAY, later).await.expect("sweep");
        assert_eq!(
            swept,
            Swept {
                unreferenced: 1,
                orphan_blobs: 1
            }
        );
        assert_eq!(store.attachment(&rows[0].id).await.expect("read"), None);
        for gone in [&rows[0].id, &orphan.id] {
            assert!(blobs.get(gone, None).await.is_err(), "{gone} removed");
        }
        for kept in &rows[1..] {
            assert!(store.attachment(&kept.id).await.expect("read").is_some());
            assert!(blobs.get(&kept.id, None).await.is_ok(), "{} kept", kept.id);
        }
        let again = sweep(&store, &blobs, DAY, later).await.expect("sweep");
        assert_eq!(again, Swept::default(), "nothing left to remove");
    }

    #[test]
    fn sweeps_are_spaced_by_the_time_kept() {
        assert_eq!(sweep_interval(DAY), Duration::from_secs(600));
        assert_eq!(
            sweep_interval(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            sweep_interval(Duration::from_secs(40)),
            Duration::from_secs(10)
        );
    }
}
