//! The store on an embedded SQLite file, for standalone mode.
//!
//! SQLite is synchronous, so every call runs on tokio's blocking pool and
//! the async runtime never waits on disk. The file is in WAL mode: one
//! writer connection (behind a mutex, since SQLite admits one writer at a
//! time anyway) applies batches, while a few reader connections serve
//! history, lists and stats concurrently from the last committed snapshot.
//! `synchronous = FULL` makes every commit durable before it returns, so a
//! message the worker acknowledges survives a crash or power loss.
//!
//! What lives where:
//! - `schema`: how the file records and applies the migrations of
//!   `store::migrations`.
//! - `commit`: the write path, one IMMEDIATE transaction per batch.
//! - `checkpoint`: the thread that checkpoints the WAL, so commits do not.
//! - `queries`: the reads and the decoding of rows.
//!
//! The SQL shared with PostgreSQL is in `store::sql`.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{
    AgentRecord, BatchKeys, BatchSnapshot, HeldChat, MessageRange, Mutation, PoolFigures,
    QueueView, RoutedAgent, RoutingChange, SessionQuery, Store, StoreError,
};
use crate::protocol::{MessagePage, ReadPosition, Session};
use crate::Timestamp;

mod attachments;
mod checkpoint;
mod commit;
mod notes;
mod queries;
mod reactions;
mod routing;
mod schema;

#[cfg(test)]
mod tests;

/// Reader connections; a handful covers the gateway's concurrent queries
/// on a small machine without holding many file handles.
const READERS: usize = 4;

/// The writer's page cache, in KiB when negative (SQLite's convention).
const WRITER_CACHE_KIB: i64 = -65_536;

/// How long a connection waits for a lock held by another process (or a
/// checkpoint) before giving up with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `Store` on one SQLite file. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReaderPool>,
    checkpointer: Arc<checkpoint::Checkpointer>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, creating its directory if
    /// needed, and brings the schema up to date. This does blocking I/O:
    /// call it at startup, before serving.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        create_parent_dir(path)?;
        let mut writer = open_writer(path)?;
        schema::migrate(&mut writer)?;
        let readers = (0..READERS)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        let checkpointer = checkpoint::Checkpointer::start(path)?;
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(ReaderPool::new(readers)),
            checkpointer: Arc::new(checkpointer),
        })
    }

    /// Runs `work` with the writer connection on the blocking pool.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let writer = Arc::clone(&self.writer);
        let checkpointer = Arc::clone(&self.checkpointer);
        run_blocking(move || {
            let outcome = work(&mut lock(&writer));
            checkpointer.committed();
            outcome
        })
        .await
    }

    /// Runs `work` with a reader connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = Arc::clone(&self.readers);
        run_blocking(move || readers.with(work)).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_batch(&self, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError> {
        let keys = keys.clone();
        self.read(move |conn| queries::load_batch(conn, &keys))
            .await
    }

    /// A commit whose caller stops waiting still runs to its end on the
    /// blocking pool; the version checks make the caller's retry safe.
    async fn commit(&self, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        if mutations.is_empty() {
            return Ok(());
        }
        self.write(move |conn| commit::commit(conn, &mutations))
            .await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| Ok(queries::find_session(conn, &id)?.map(|record| record.session)))
            .await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        let query = query.clone();
        self.read(move |conn| queries::list_sessions(conn, &query))
            .await
    }

    async fn messages(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| queries::message_page(conn, &session_id, range, limit))
            .await
    }

    async fn notes(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| notes::note_page(conn, &session_id, range, limit))
            .await
    }

    async fn read_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| queries::read_positions(conn, &session_id))
            .await
    }

    async fn pool_figures(
        &self,
        pool: &str,
        day_start: Timestamp,
    ) -> Result<PoolFigures, StoreError> {
        let pool = pool.to_owned();
        self.read(move |conn| queries::pool_figures(conn, &pool, day_start))
            .await
    }

    async fn remember_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let agent = agent.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            commit::remember_agent(&tx, &agent)?;
            commit::remember_user(&tx, &agent.id, &agent.name)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let pool = pool.map(str::to_owned);
        self.read(move |conn| queries::list_agents(conn, pool.as_deref()))
            .await
    }

    async fn session_events(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<crate::protocol::SessionEvent>, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| routing::session_events(conn, &session_id, limit))
            .await
    }

    async fn open_chats(
        &self,
        pool: Option<&str>,
        which: super::OpenChats,
        limit: usize,
    ) -> Result<Vec<super::SupervisedChat>, StoreError> {
        let pool = pool.map(str::to_owned);
        self.read(move |conn| routing::open_chats(conn, pool.as_deref(), which, limit))
            .await
    }

    async fn agent_days(&self, day_start: Timestamp) -> Result<Vec<super::AgentDay>, StoreError> {
        self.read(move |conn| routing::agent_days(conn, day_start))
            .await
    }

    async fn routed_agents(&self, pool: Option<&str>) -> Result<Vec<RoutedAgent>, StoreError> {
        let pool = pool.map(str::to_owned);
        self.read(move |conn| routing::routed_agents(conn, pool.as_deref()))
            .await
    }

    async fn routed_agent(&self, agent_id: &str) -> Result<Option<RoutedAgent>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.read(move |conn| routing::routed_agent(conn, &agent_id))
            .await
    }

    async fn change_routing(
        &self,
        agent_id: &str,
        change: RoutingChange,
    ) -> Result<Option<RoutedAgent>, StoreError> {
        let agent_id = agent_id.to_owned();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let changed = routing::change_routing(&tx, &agent_id, change)?;
            tx.commit()?;
            Ok(changed)
        })
        .await
    }

    async fn queue(
        &self,
        pool: &str,
        limit: usize,
        assigned_since: Timestamp,
    ) -> Result<QueueView, StoreError> {
        let pool = pool.to_owned();
        self.read(move |conn| routing::queue(conn, &pool, limit, assigned_since))
            .await
    }

    async fn waiting_ahead(&self, pool: &str, session_id: &str) -> Result<i64, StoreError> {
        let (pool, session_id) = (pool.to_owned(), session_id.to_owned());
        self.read(move |conn| routing::waiting_ahead(conn, &pool, &session_id))
            .await
    }

    async fn waiting_pools(&self) -> Result<Vec<String>, StoreError> {
        self.read(routing::waiting_pools).await
    }

    async fn chats_of_agents_seen_before(
        &self,
        seen_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<HeldChat>, StoreError> {
        self.read(move |conn| routing::chats_of_agents_seen_before(conn, seen_before, limit))
            .await
    }

    async fn delivery_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        let session_id = session_id.to_owned();
        self.read(move |conn| reactions::delivery_positions(conn, &session_id))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))?;
            Ok(())
        })
        .await
    }

    async fn insert_attachment(
        &self,
        attachment: &super::AttachmentRecord,
    ) -> Result<(), StoreError> {
        let attachment = attachment.clone();
        self.write(move |conn| attachments::insert(conn, &attachment))
            .await
    }

    async fn attachment(&self, id: &str) -> Result<Option<super::AttachmentRecord>, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| attachments::by_id(conn, &id)).await
    }

    async fn unreferenced_attachments_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<super::AttachmentRecord>, StoreError> {
        self.read(move |conn| attachments::unreferenced_before(conn, before, limit))
            .await
    }

    async fn delete_attachment(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.write(move |conn| attachments::delete_unreferenced(conn, &id))
            .await
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            // Another process holds the file longer than the busy timeout:
            // transient, worth retrying.
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!("sqlite is busy: {err}"))
            }
            Some(ErrorCode::CannotOpen | ErrorCode::DiskFull | ErrorCode::ReadOnly) => {
                StoreError::Unavailable(format!("sqlite: {err}"))
            }
            _ => StoreError::Internal(format!("sqlite: {err}")),
        }
    }
}

// ---------------------------------------------------------------------------
// Connections

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|err| {
            StoreError::Unavailable(format!("cannot create {}: {err}", dir.display()))
        }),
        _ => Ok(()),
    }
}

fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // WAL lets readers proceed while the writer commits; the mode is stored
    // in the file, so setting it once here covers the readers too.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "sqlite refused WAL mode (got {mode}) for {}",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // `checkpoint` copies the WAL back in the background; the writer's own
    // threshold is only the bound for when that falls behind.
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        checkpoint::WRITER_AUTOCHECKPOINT,
    )?;
    conn.pragma_update(None, "journal_size_limit", checkpoint::WAL_SIZE_LIMIT)?;
    // The writer's cache outlives its transactions (nobody else writes),
    // and the default 2 MiB is less than the index pages one batch of
    // scattered sessions touches, so commits would read pages back.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
    Ok(conn)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    // Readers must never write: every write goes through the one writer.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// A poisoned lock only means another call panicked while holding the
/// connection; its open transaction was rolled back when dropped, so the
/// connection is still sound.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| StoreError::Internal(format!("store task failed: {err}")))?
}

#[derive(Debug)]
struct ReaderPool {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl ReaderPool {
    fn new(connections: Vec<Connection>) -> Self {
        ReaderPool {
            connections: connections.into_iter().map(Mutex::new).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Takes an idle connection if there is one; otherwise queues on the
    /// connections in turn so waiting callers spread out.
    fn with<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        for conn in &self.connections {
            match conn.try_lock() {
                Ok(guard) => return work(&guard),
                Err(TryLockError::Poisoned(poisoned)) => return work(&poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = self
            .connections
            .get(turn % self.connections.len().max(1))
            .ok_or_else(|| StoreError::Internal("no reader connections".into()))?;
        work(&lock(conn))
    }
}
