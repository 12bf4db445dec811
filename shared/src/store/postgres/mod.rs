//! The store on PostgreSQL, for cluster mode.
//!
//! Many pods share one database: workers write through `commit`, gateways
//! read history, session lists and the data that authorises a join. Each
//! process holds one `PostgresStore`, a small pool of connections
//! (deadpool) whose clients keep their prepared statements, so a query
//! costs one round trip once a connection has seen it.
//!
//! What lives where:
//! - `schema`: how the database records and applies the migrations of
//!   `store::migrations`, under an advisory lock so that pods starting
//!   together migrate once.
//! - `commit`: the write path. A batch is one call of a server-side
//!   function taking one array per column: one round trip and one
//!   transaction, however many rows it carries.
//! - `queries`: the reads and the decoding of rows.
//! - `replica`: whether a gateway read may be served by the streaming
//!   replica of `DATABASE_READ_URL` without showing less than was
//!   acknowledged (`PostgresStore::with_read_replica`).
//!
//! The SQL shared with SQLite is in `store::sql`.
//!
//! Failures are sorted for the caller: a lost race (a stale version, a
//! duplicate key, a serialisation failure or deadlock) is
//! `StoreError::Conflict`, so the worker reloads and decides again; a
//! database that cannot be reached, or is shutting down, is
//! `StoreError::Unavailable`, bounded by `PostgresOptions::connect_timeout`,
//! and the pool reconnects by itself once the server is back; anything else
//! is `StoreError::Internal`.
//!
//! Every connection starts with `synchronous_commit=on` (unless the URL's
//! own `options` set it): a commit that returns is on disk, so an
//! acknowledged message survives a crash. Timestamps are BIGINT milliseconds, exactly as
//! `crate::Timestamp` holds them. Connections are plain TCP or Unix
//! sockets, or TLS verified against `PostgresOptions::tls_roots` when the
//! URL says `sslmode=require`.

use std::error::Error as _;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use tokio_postgres::config::SslMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::TrustedRoots;

use super::{
    AgentRecord, BatchKeys, BatchSnapshot, HeldChat, MessageRange, Mutation, PoolFigures,
    QueueView, RoutedAgent, RoutingChange, SessionQuery, Store, StoreError,
};
use crate::protocol::{MessagePage, ReadPosition, Session};
use crate::Timestamp;

mod attachments;
mod commit;
mod notes;
mod queries;
mod reactions;
mod replica;
mod routing;
mod schema;

pub use replica::ReplicaReads;
use replica::{Freshness, ReadOutcome, Replica};

#[cfg(test)]
mod replica_tests;
#[cfg(test)]
mod tests;

/// How long data sent to the server may stay unacknowledged before the
/// connection counts as broken, unless the URL sets `tcp_user_timeout`.
const UNACKNOWLEDGED_DATA_TIMEOUT: Duration = Duration::from_secs(30);

/// How `PostgresStore::connect` sets up its pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections this process keeps at most.
    pub pool_size: usize,
    /// A schema to work in instead of the server's default search path,
    /// created if missing. Lower-case letters, digits and `_`, starting
    /// with a letter or `_`; used to keep test runs apart.
    pub schema: Option<String>,
    /// Bounds opening a connection and waiting for a free one; past it a
    /// call fails with `StoreError::Unavailable` rather than hanging.
    pub connect_timeout: Duration,
    /// Whom the server's certificate must chain to, for `sslmode=require`.
    pub tls_roots: TrustedRoots,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            // Enough for a pod's concurrent queries while many pods still
            // fit under the server's default of 100 connections.
            pool_size: 8,
            schema: None,
            connect_timeout: Duration::from_secs(5),
            tls_roots: TrustedRoots::System,
        }
    }
}

/// `Store` on a PostgreSQL database. Cloning is cheap and shares the pool.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// Where the gateway's reads go when they may (`with_read_replica`).
    replica: Option<Arc<Replica>>,
}

impl std::fmt::Debug for PostgresStore {
    // The pool's own Debug would print the connection settings, password
    // included.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self.pool.status();
        f.debug_struct("PostgresStore")
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .field("read_replica", &self.replica.is_some())
            .finish()
    }
}

impl PostgresStore {
    /// Connects to `database_url` (a `postgres://` URL or a key=value
    /// string) and brings the schema up to date. Several processes may call
    /// this at once: migrations run under a lock, and only once.
    pub async fn connect(
        database_url: &str,
        options: PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let pool = build_pool(database_url, &options)?;
        let store = PostgresStore {
            pool,
            replica: None,
        };
        let mut client = store.client().await?;
        schema::migrate(&mut client, options.schema.as_deref()).await?;
        Ok(store)
    }

    /// Reads from the streaming replica at `read_url` (`DATABASE_READ_URL`)
    /// from now on: session lookups and lists, message history, read
    /// positions, pool figures and the agent directory. Each such read is
    /// served by the replica only when it cannot show less than the
    /// primary had acknowledged when the read began (`replica` says how
    /// that is decided), and by the primary otherwise; writes, the
    /// worker's batch reads and `ping` always go to the primary. `options`
    /// are those of the primary (the same schema, pool size and
    /// timeouts). No connection is opened here: a replica that is down
    /// when the process starts costs fallbacks, not the start.
    pub fn with_read_replica(
        mut self,
        read_url: &str,
        options: &PostgresOptions,
    ) -> Result<PostgresStore, StoreError> {
        let pool = build_pool(read_url, options)?;
        self.replica = Some(Arc::new(Replica::new(pool, self.pool.clone())));
        Ok(self)
    }

    /// A blob store on this store's pool and database (the `blobs` and
    /// `blob_chunks` tables of migration 6).
    pub fn blobs(&self) -> crate::blob::postgres::PostgresBlobStore {
        crate::blob::postgres::PostgresBlobStore::new(self.pool.clone())
    }

    /// How the reads of a store with a replica were served so far; `None`
    /// without one.
    pub fn replica_reads(&self) -> Option<ReplicaReads> {
        self.replica.as_ref().map(|replica| replica.reads())
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Runs `read` on the replica when it is fresh enough, else on the
    /// primary. A read that fails on the replica runs again on the primary,
    /// which has everything the replica has.
    async fn read<T, F, Fut>(&self, read: F) -> Result<T, StoreError>
    where
        F: Fn(Object) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        if let Some(replica) = &self.replica {
            match replica.check_out().await? {
                Freshness::Fresh(client) => match read(client).await {
                    Ok(value) => {
                        replica.count(ReadOutcome::Replica);
                        return Ok(value);
                    }
                    Err(error) => replica.failed(&error),
                },
                Freshness::Behind(_) => replica.count(ReadOutcome::PrimaryFallback),
                Freshness::Unusable => {}
            }
        }
        read(self.client().await?).await
    }

    /// A page of a session's history: from the replica when it is fresh
    /// by the fence, or when it holds the session up to the `last_seq` the
    /// primary has now (the session rescue of `replica`), else from the
    /// primary.
    async fn read_history(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let page = |client: Object| async move {
            queries::message_page(&client, session_id, range, limit).await
        };
        let Some(replica) = &self.replica else {
            return page(self.client().await?).await;
        };
        // `rescued_by`: the primary, when the replica serves the page by
        // the session rescue.
        let (client, rescued_by) = match replica.check_out().await? {
            Freshness::Fresh(client) => (client, None),
            Freshness::Behind(client) => {
                // Asked of the primary now, after the read began, so it
                // covers every message acknowledged before.
                let primary_client = self.client().await?;
                let primary = replica::last_seq(&primary_client, session_id).await?;
                match (primary, replica::last_seq(&client, session_id).await) {
                    (Some(primary), Ok(Some(held))) if held >= primary => {
                        (client, Some(primary_client))
                    }
                    (_, Err(error)) => {
                        replica.failed(&error);
                        return page(primary_client).await;
                    }
                    _ => {
                        replica.count(ReadOutcome::PrimaryFallback);
                        return page(primary_client).await;
                    }
                }
            }
            Freshness::Unusable => return page(self.client().await?).await,
        };
        match page(client).await {
            Ok(mut value) => {
                replica.count(ReadOutcome::Replica);
                // The session rescue vouches for the messages only, not for
                // reactions changed since the replica fell behind: those
                // come from the primary.
                if let Some(primary) = rescued_by {
                    reactions::fill_page(&primary, session_id, &mut value).await?;
                }
                Ok(value)
            }
            Err(error) => {
                replica.failed(&error);
                page(self.client().await?).await
            }
        }
    }
}

/// A pool of connections to `url`, set up as `PostgresStore::connect`
/// describes; no connection is opened yet.
fn build_pool(url: &str, options: &PostgresOptions) -> Result<Pool, StoreError> {
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|err| StoreError::Internal(format!("invalid database URL: {err}")))?;
    config.connect_timeout(options.connect_timeout);
    if config.get_tcp_user_timeout().is_none() {
        // A server that vanishes without closing the connection (a
        // partition, a lost node) would leave a query waiting for hours
        // on TCP's own timers; unacknowledged data now breaks the
        // connection after this long, and the call fails `Unavailable`.
        config.tcp_user_timeout(UNACKNOWLEDGED_DATA_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("support-chat");
    }
    if let Some(schema) = &options.schema {
        check_schema_name(schema)?;
    }
    let startup = startup_options(config.get_options(), options.schema.as_deref());
    config.options(startup);
    let manager_config = ManagerConfig {
        // A connection the server dropped is noticed (the client
        // reports itself closed) and replaced; checking each one
        // with a query on every checkout would cost a round trip.
        recycling_method: RecyclingMethod::Fast,
    };
    // `require` is verified like libpq's verify-full (authority and
    // host name); `prefer` and `disable` stay in plain text, so a
    // server's self-signed default certificate never breaks a start.
    let manager = if config.get_ssl_mode() == SslMode::Require {
        let client = crate::tls::client_config(&options.tls_roots)
            .map_err(|err| StoreError::Internal(format!("PostgreSQL TLS: {err}")))?;
        Manager::from_config(config, MakeRustlsConnect::new(client), manager_config)
    } else {
        Manager::from_config(config, NoTls, manager_config)
    };
    let timeout = Some(options.connect_timeout);
    Pool::builder(manager)
        .max_size(options.pool_size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(timeout)
        .create_timeout(timeout)
        .recycle_timeout(timeout)
        .build()
        .map_err(|err| StoreError::Internal(format!("cannot build the connection pool: {err}")))
}

#[async_trait]
impl Store for PostgresStore {
    async fn load_batch(&self, keys: &BatchKeys) -> Result<BatchSnapshot, StoreError> {
        if keys.is_empty() {
            return Ok(BatchSnapshot::default());
        }
        let mut client = self.client().await?;
        queries::load_batch(&mut client, keys).await
    }

    /// A commit whose caller stops waiting is rolled back unless its COMMIT
    /// was already sent; either way the version checks make the caller's
    /// retry safe.
    async fn commit(&self, mutations: Vec<Mutation>) -> Result<(), StoreError> {
        if mutations.is_empty() {
            return Ok(());
        }
        let mut client = self.client().await?;
        commit::commit(&mut client, &mutations).await
    }

    async fn get_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.read(|client| async move {
            Ok(queries::find_session(&client, id)
                .await?
                .map(|record| record.session))
        })
        .await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        self.read(|client| async move { queries::list_sessions(&client, query).await })
            .await
    }

    async fn messages(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        self.read_history(session_id, range, limit).await
    }

    async fn notes(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        self.read(|client| async move { notes::note_page(&client, session_id, range, limit).await })
            .await
    }

    async fn read_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        self.read(|client| async move { queries::read_positions(&client, session_id).await })
            .await
    }

    async fn pool_figures(
        &self,
        pool: &str,
        day_start: Timestamp,
    ) -> Result<PoolFigures, StoreError> {
        self.read(|client| async move { queries::pool_figures(&client, pool, day_start).await })
            .await
    }

    async fn remember_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        queries::remember_agent(&client, agent).await
    }

    async fn list_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(|client| async move { queries::list_agents(&client, pool).await })
            .await
    }

    /// The primary only: readiness follows what writes and fences need; a
    /// replica that is down only sends reads to the primary.
    async fn session_events(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<crate::protocol::SessionEvent>, StoreError> {
        routing::session_events(&self.client().await?, session_id, limit).await
    }

    async fn open_chats(
        &self,
        pool: Option<&str>,
        which: super::OpenChats,
        limit: usize,
    ) -> Result<Vec<super::SupervisedChat>, StoreError> {
        self.read(|client| async move { routing::open_chats(&client, pool, which, limit).await })
            .await
    }

    async fn agent_days(&self, day_start: Timestamp) -> Result<Vec<super::AgentDay>, StoreError> {
        self.read(|client| async move { routing::agent_days(&client, day_start).await })
            .await
    }

    async fn routed_agents(&self, pool: Option<&str>) -> Result<Vec<RoutedAgent>, StoreError> {
        routing::routed_agents(&self.client().await?, pool).await
    }

    async fn routed_agent(&self, agent_id: &str) -> Result<Option<RoutedAgent>, StoreError> {
        routing::routed_agent(&self.client().await?, agent_id).await
    }

    async fn change_routing(
        &self,
        agent_id: &str,
        change: RoutingChange,
    ) -> Result<Option<RoutedAgent>, StoreError> {
        routing::change_routing(&self.client().await?, agent_id, change).await
    }

    async fn queue(
        &self,
        pool: &str,
        limit: usize,
        assigned_since: Timestamp,
    ) -> Result<QueueView, StoreError> {
        routing::queue(&self.client().await?, pool, limit, assigned_since).await
    }

    async fn waiting_ahead(&self, pool: &str, session_id: &str) -> Result<i64, StoreError> {
        routing::waiting_ahead(&self.client().await?, pool, session_id).await
    }

    async fn waiting_pools(&self) -> Result<Vec<String>, StoreError> {
        routing::waiting_pools(&self.client().await?).await
    }

    async fn chats_of_agents_seen_before(
        &self,
        seen_before: Timestamp,
        limit: usize,
    ) -> Result<Vec<HeldChat>, StoreError> {
        routing::chats_of_agents_seen_before(&self.client().await?, seen_before, limit).await
    }

    async fn delivery_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        self.read(|client| async move { reactions::delivery_positions(&client, session_id).await })
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        // The simple protocol: one round trip, nothing to prepare.
        client.batch_execute("SELECT 1").await?;
        Ok(())
    }

    fn render_metrics(&self, out: &mut String) {
        if let Some(replica) = &self.replica {
            replica.render(out);
        }
    }

    async fn insert_attachment(
        &self,
        attachment: &super::AttachmentRecord,
    ) -> Result<(), StoreError> {
        attachments::insert(&self.client().await?, attachment).await
    }

    /// The primary only: a download follows its upload at once.
    async fn attachment(&self, id: &str) -> Result<Option<super::AttachmentRecord>, StoreError> {
        attachments::by_id(&self.client().await?, id).await
    }

    async fn unreferenced_attachments_before(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<super::AttachmentRecord>, StoreError> {
        attachments::unreferenced_before(&self.client().await?, before, limit).await
    }

    async fn delete_attachment(&self, id: &str) -> Result<bool, StoreError> {
        attachments::delete_unreferenced(&self.client().await?, id).await
    }
}

/// The settings every connection starts with: whatever the URL's
/// `options` hold, then `synchronous_commit=on` unless the URL sets it
/// (so a commit is durable whatever the server's default), then the search
/// path of `schema`, so unqualified names in every statement resolve to it.
fn startup_options(existing: Option<&str>, schema: Option<&str>) -> String {
    let mut options: Vec<String> = existing
        .map(str::trim)
        .filter(|existing| !existing.is_empty())
        .map(str::to_owned)
        .into_iter()
        .collect();
    if !options.iter().any(|o| o.contains("synchronous_commit")) {
        options.push("-c synchronous_commit=on".into());
    }
    if let Some(schema) = schema {
        options.push(format!("-c search_path={schema}"));
    }
    options.join(" ")
}

/// A schema name goes into startup options and DDL unquoted, so it is kept
/// to characters that need no quoting or escaping anywhere.
fn check_schema_name(name: &str) -> Result<(), StoreError> {
    let mut chars = name.chars();
    let valid = name.len() <= 63
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "invalid schema name {name:?}: use at most 63 lower-case letters, digits and '_', \
             not starting with a digit"
        )))
    }
}

// ---------------------------------------------------------------------------
// Errors

/// How a failure reported by the server should be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Conflict,
    Unavailable,
    Internal,
}

/// Sorts an SQLSTATE code into the store's error kinds.
fn classify(code: &SqlState) -> Class {
    let text = code.code();
    if *code == SqlState::UNIQUE_VIOLATION
        || text == schema::BATCH_CONFLICT_SQLSTATE
        || *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        Class::Conflict
    } else if text.starts_with("08") // connection exception
        || text.starts_with("53") // insufficient resources
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::QUERY_CANCELED
        || *code == SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
        // A server that became a read-only standby after a failover.
        || *code == SqlState::READ_ONLY_SQL_TRANSACTION
    {
        Class::Unavailable
    } else {
        Class::Internal
    }
}

/// The error with its cause: tokio-postgres's own text for a server error
/// is only "db error".
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match err.source() {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        let text = format!("postgresql: {}", describe(&err));
        let class = match err.code() {
            Some(code) => classify(code),
            // Not the server's verdict: the connection broke, or a value
            // could not be converted.
            None if err.is_closed()
                || err
                    .source()
                    .is_some_and(|source| source.is::<std::io::Error>()) =>
            {
                Class::Unavailable
            }
            None => Class::Internal,
        };
        match class {
            Class::Conflict => StoreError::Conflict(text),
            Class::Unavailable => StoreError::Unavailable(text),
            Class::Internal => StoreError::Internal(text),
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            // Whatever stopped a new connection (refused, timed out, the
            // server starting up or rejecting the login), no query ran.
            PoolError::Backend(err) => {
                StoreError::Unavailable(format!("cannot connect to postgresql: {}", describe(&err)))
            }
            PoolError::PostCreateHook(err) => {
                StoreError::Unavailable(format!("cannot set up a postgresql connection: {err}"))
            }
            PoolError::Timeout(kind) => StoreError::Unavailable(format!(
                "no postgresql connection within the timeout ({kind:?})"
            )),
            PoolError::Closed => StoreError::Unavailable("the connection pool is closed".into()),
            PoolError::NoRuntimeSpecified => {
                StoreError::Internal("the connection pool has no runtime".into())
            }
        }
    }
}
