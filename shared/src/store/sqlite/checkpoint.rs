//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that crosses its
//! threshold, so every few commits one batch also copies the WAL into the
//! database file and syncs it, and the whole lane waits. Here a thread of
//! the store's own, on a connection of its own, runs a PASSIVE checkpoint
//! shortly after writes: it never takes the write lock, so the writer
//! keeps appending while the frames are copied. The writer keeps a much
//! higher automatic threshold (`WRITER_AUTOCHECKPOINT`) as a bound on the
//! WAL should this thread ever fall behind, and the thread stops when the
//! store is dropped.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::store::StoreError;

/// Pages in the WAL past which a commit checkpoints by itself: far above
/// what the thread lets accumulate, so only a stalled thread reaches it.
pub(super) const WRITER_AUTOCHECKPOINT: u32 = 16_384;

/// The WAL file is cut back to this size when it restarts, so that a burst
/// which outran the checkpoints does not keep its disk space.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Least time between two checkpoints: each syncs the database file, so
/// running one per commit would add a sync per commit; within this time
/// the pages a batch rewrote are mostly the ones the next rewrites too.
const INTERVAL: Duration = Duration::from_millis(100);

/// The checkpointing thread; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub(super) struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens the thread's connection to `path` and starts it.
    pub(super) fn start(path: &Path) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(path)?;
        // A checkpoint syncs the WAL before and the database after copying
        // according to the connection's setting: the same as the writer's.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let (wake, woken) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || run(&conn, &woken))
            .map_err(|err| StoreError::Internal(format!("checkpoint thread: {err}")))?;
        Ok(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    /// Says something was committed; never blocks the caller.
    pub(super) fn committed(&self) {
        if let Some(wake) = &self.wake {
            // Full means a wake-up is already pending, which covers this one.
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::warn!("the sqlite checkpoint thread panicked");
            }
        }
    }
}

/// Checkpoints after each wake-up, at most once per `INTERVAL`, until the
/// sending side is gone. Closing the last connection checkpoints what is
/// left, so a stop needs no pass of its own.
fn run(conn: &Connection, woken: &Receiver<()>) {
    let mut pending = false;
    loop {
        if !pending && woken.recv().is_err() {
            return;
        }
        pending = false;
        let started = Instant::now();
        checkpoint(conn);
        // Wake-ups during the pause fold into the next checkpoint.
        loop {
            let left = INTERVAL.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            match woken.recv_timeout(left) {
                Ok(()) => pending = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}

fn checkpoint(conn: &Connection) {
    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        row.get::<_, i64>(0)
    });
    if let Err(error) = outcome {
        // The next round retries; the writer's own threshold bounds the WAL.
        tracing::warn!(%error, "sqlite checkpoint failed");
    }
}
