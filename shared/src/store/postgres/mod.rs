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
use std::str::FromStr;
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
    AgentRecord, BatchKeys, BatchSnapshot, MessageRange, Mutation, PoolFigures, SessionQuery,
    Store, StoreError,
};
use crate::protocol::{MessagePage, ReadPosition, Session};
use crate::Timestamp;

mod commit;
mod queries;
mod schema;

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
        let mut config = tokio_postgres::Config::from_str(database_url)
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
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|err| {
                StoreError::Internal(format!("cannot build the connection pool: {err}"))
            })?;
        let store = PostgresStore { pool };
        let mut client = store.client().await?;
        schema::migrate(&mut client, options.schema.as_deref()).await?;
        Ok(store)
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.pool.get().await?)
    }
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
        let client = self.client().await?;
        Ok(queries::find_session(&client, id)
            .await?
            .map(|record| record.session))
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        let client = self.client().await?;
        queries::list_sessions(&client, query).await
    }

    async fn messages(
        &self,
        session_id: &str,
        range: MessageRange,
        limit: usize,
    ) -> Result<MessagePage, StoreError> {
        let client = self.client().await?;
        queries::message_page(&client, session_id, range, limit).await
    }

    async fn read_positions(&self, session_id: &str) -> Result<Vec<ReadPosition>, StoreError> {
        let client = self.client().await?;
        queries::read_positions(&client, session_id).await
    }

    async fn pool_figures(
        &self,
        pool: &str,
        day_start: Timestamp,
    ) -> Result<PoolFigures, StoreError> {
        let client = self.client().await?;
        queries::pool_figures(&client, pool, day_start).await
    }

    async fn remember_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        queries::remember_agent(&client, agent).await
    }

    async fn list_agents(&self, pool: Option<&str>) -> Result<Vec<AgentRecord>, StoreError> {
        let client = self.client().await?;
        queries::list_agents(&client, pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        // The simple protocol: one round trip, nothing to prepare.
        client.batch_execute("SELECT 1").await?;
        Ok(())
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
