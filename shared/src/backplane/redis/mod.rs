//! The Redis backplane of cluster mode, on the `fred` client.
//!
//! Gateways and workers in separate processes meet here: commands travel
//! through one Redis stream per partition, read by the workers' consumer
//! group; events travel through pub/sub channels; leases, presence and the
//! stats throttle are small keys with server-side expiry. Every name comes
//! from [`Names`], so several deployments or test runs can share a server.
//!
//! The work is split by concern, one file each, following the traits of
//! the seam (the trait implementations here only forward to them):
//! - `streams` ([`CommandLog`]): appending, reading (blocking, on
//!   connections of its own), claiming, acking, dead letters and trimming;
//! - `reader` ([`CommandLog::read_new`]): reads a caller may drop without
//!   losing what they took;
//! - `leases` ([`Leases`]): partition leases with fencing tokens;
//! - `pubsub` ([`PubSub`]): publishing and the per-subscriber connections;
//! - `presence` ([`Presence`], [`Throttle`]): agent presence and the
//!   throttle, both small keys with server-side expiry;
//! - `scripts`: the Lua scripts that make read-then-write steps atomic.
//!
//! Ordinary commands share a small pool of connections; fred pipelines the
//! commands issued concurrently on each, so many small appends and
//! publishes travel together. Nothing that blocks on the server ever runs
//! on that pool: one blocked connection would stall every command queued
//! behind it. Every command is bounded by the command timeout, and errors
//! are reported as [`BackplaneError::Unavailable`] when the server cannot
//! be reached or is not ready, [`BackplaneError::Protocol`] when it answers
//! something this code does not expect.
//!
//! Runs on one server (Redis 6.2 or later: XAUTOCLAIM, XTRIM MINID;
//! replicas and failover are fine) or on a Redis Cluster (Redis 7 or later:
//! sharded pub/sub), by the same code: the keys a script touches together
//! share a hash slot (see [`Names`]), reads of several partitions' streams
//! are split by slot, and fan-out uses SPUBLISH/SSUBSCRIBE, which a
//! cluster delivers within the shard that owns the channel's slot instead
//! of broadcasting every message to every node.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::clients::Pool;
use fred::error::{Error as RedisError, ErrorKind};
use fred::interfaces::ClientLike;
use fred::types::config::{Config, ReconnectPolicy, TlsConnector, UnresponsiveConfig};
use fred::types::{Builder, Value};
use tokio::sync::mpsc;

use super::{
    Backplane, BackplaneError, CommandLog, DeadLetter, Lease, Leases, Presence, PubSub,
    StreamEntry, StreamInfo, Subscriber, SubscriptionEvent, Throttle,
};
use crate::config::TrustedRoots;
use crate::names::Names;

mod leases;
mod presence;
mod pubsub;
mod reader;
mod scripts;
mod streams;

#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod tests;

use scripts::Scripts;
use streams::BlockingClients;

/// Tuning of the Redis backplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// Connections for ordinary commands. Each pipelines whatever is issued
    /// concurrently, so a couple are enough for a busy process. Calls made
    /// concurrently may travel on different connections and have no order
    /// between them; a caller that awaits each call keeps its order.
    pub pool_size: usize,
    /// Upper bound of every command, and of connecting. A blocking read is
    /// allowed its block time on top of it.
    pub command_timeout: Duration,
    /// Most connections held at once for blocking reads; a reader that
    /// finds them all busy waits for one. Opened on first use, so a process
    /// that never reads commands (a gateway) opens none.
    pub blocking_connections: usize,
    /// How many pub/sub messages a subscriber's connection buffers before
    /// the listener is told it fell behind (as a resubscription).
    pub subscriber_buffer: usize,
    /// Whom the server's certificate must chain to, for `rediss://`.
    pub tls_roots: TrustedRoots,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            pool_size: 1,
            command_timeout: Duration::from_secs(5),
            blocking_connections: 4,
            subscriber_buffer: 4096,
            tls_roots: TrustedRoots::System,
        }
    }
}

/// Delay bounds between reconnection attempts, in milliseconds. Retrying
/// forever: a backplane that gives up would leave the process useless.
const RECONNECT_MIN_DELAY_MS: u32 = 50;
const RECONNECT_MAX_DELAY_MS: u32 = 2_000;

/// Idle time after which TCP keepalive probes a quiet connection, so that a
/// subscriber whose peer vanished without a word is noticed and reconnected.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The backplane of cluster mode. Clones share the connections.
#[derive(Clone)]
pub struct RedisBackplane {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("prefix", &self.inner.names.prefix())
            .finish_non_exhaustive()
    }
}

struct Inner {
    names: Names,
    /// A Redis Cluster rather than one server: streams are read a slot at
    /// a time and fan-out uses sharded pub/sub.
    clustered: bool,
    options: RedisOptions,
    /// Ordinary commands.
    pool: Pool,
    /// Blocking reads, each on a connection of its own.
    blocking: BlockingClients,
    /// How to open a subscriber's connection.
    subscriber_builder: Builder,
    scripts: Scripts,
    readers: reader::Readers,
}

impl Drop for Inner {
    /// Connections run in tasks of their own and would keep reconnecting
    /// after the last handle is gone: close them.
    fn drop(&mut self) {
        let pool = self.pool.clone();
        spawn_detached(async move {
            let _ = pool.quit().await;
        });
        self.blocking.close();
    }
}

impl RedisBackplane {
    /// Connects to the server at `url` (`redis://[user:password@]host:port[/db]`,
    /// or `rediss://` for TLS verified against `options.tls_roots`), or to
    /// the Redis Cluster whose seed nodes `url` lists
    /// (`redis-cluster://host:port?node=host:port&…`, `rediss-cluster://`
    /// for TLS), and checks that it answers.
    pub async fn connect(
        url: &str,
        names: Names,
        options: RedisOptions,
    ) -> Result<RedisBackplane, BackplaneError> {
        let config = redis_config(url, &options.tls_roots)?;
        let clustered = config.server.is_clustered();

        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                RECONNECT_MIN_DELAY_MS,
                RECONNECT_MAX_DELAY_MS,
                2,
            ))
            .with_performance_config(|perf| {
                perf.default_command_timeout = options.command_timeout;
            })
            .with_connection_config(|connection| {
                connection.connection_timeout = options.command_timeout;
                connection.internal_command_timeout = options.command_timeout;
                connection.tcp.nodelay = Some(true);
                connection.tcp.keepalive =
                    Some(fred::socket2::TcpKeepalive::new().with_time(KEEPALIVE));
            });

        // The blocking connections and the subscribers are built from this
        // configuration; only the shared pool watches for silent
        // connections, since a blocking read is silent on purpose.
        let blocking = BlockingClients::new(builder.clone(), options.blocking_connections);
        let mut subscriber_builder = builder.clone();
        subscriber_builder.with_performance_config(|perf| {
            perf.broadcast_channel_capacity = options.subscriber_buffer.max(16);
        });
        builder.with_connection_config(|connection| {
            connection.unresponsive = UnresponsiveConfig {
                max_timeout: Some(options.command_timeout),
                interval: (options.command_timeout / 4).max(Duration::from_millis(100)),
            };
        });

        let pool = builder
            .build_pool(options.pool_size.max(1))
            .map_err(map_error)?;
        pool.init().await.map_err(map_error)?;

        let backplane = RedisBackplane {
            inner: Arc::new(Inner {
                names,
                clustered,
                options,
                pool,
                blocking,
                subscriber_builder,
                scripts: Scripts::new(),
                readers: reader::Readers::default(),
            }),
        };
        backplane.ping().await?;
        Ok(backplane)
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }
}

// The trait implementations only forward, so that each concern's work
// stays in its own file (on `Inner`, which tasks of its own can hold).

#[async_trait]
impl CommandLog for RedisBackplane {
    async fn append_command(&self, partition: u32, payload: Bytes) -> Result<(), BackplaneError> {
        self.inner.append_command(partition, payload).await
    }

    async fn read_new(
        &self,
        partitions: &[u32],
        consumer: &str,
        max: usize,
        block: Duration,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        reader::read_new(&self.inner, partitions, consumer, max, block).await
    }

    async fn claim_pending(
        &self,
        partition: u32,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<StreamEntry>, BackplaneError> {
        self.inner
            .claim_pending(partition, consumer, min_idle, max)
            .await
    }

    async fn ack(&self, partition: u32, ids: &[String]) -> Result<(), BackplaneError> {
        self.inner.ack(partition, ids).await
    }

    async fn dead_letter(&self, entry: &StreamEntry, reason: &str) -> Result<(), BackplaneError> {
        self.inner.dead_letter(entry, reason).await
    }

    /// They stay in the `dead` stream, bounded in length.
    async fn dead_letters(&self, partition: u32) -> Result<Vec<DeadLetter>, BackplaneError> {
        self.inner.dead_letters(partition).await
    }

    async fn trim(&self, partition: u32) -> Result<(), BackplaneError> {
        self.inner.trim(partition).await
    }

    async fn stream_info(&self, partition: u32) -> Result<StreamInfo, BackplaneError> {
        self.inner.stream_info(partition).await
    }
}

#[async_trait]
impl Leases for RedisBackplane {
    async fn acquire_lease(
        &self,
        partition: u32,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, BackplaneError> {
        self.inner.acquire_lease(partition, holder, ttl).await
    }

    async fn renew_lease(
        &self,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, BackplaneError> {
        self.inner.renew_lease(lease, holder, ttl).await
    }

    async fn release_lease(&self, lease: Lease, holder: &str) -> Result<(), BackplaneError> {
        self.inner.release_lease(lease, holder).await
    }
}

#[async_trait]
impl PubSub for RedisBackplane {
    async fn publish(&self, channel: &str, payload: Bytes) -> Result<(), BackplaneError> {
        self.inner.publish(channel, payload).await
    }

    async fn publish_batch(&self, messages: &[(String, Bytes)]) -> Result<(), BackplaneError> {
        self.inner.publish_batch(messages).await
    }

    async fn subscriber(
        &self,
    ) -> Result<
        (
            Box<dyn Subscriber>,
            mpsc::UnboundedReceiver<SubscriptionEvent>,
        ),
        BackplaneError,
    > {
        let (subscriber, events) = self.inner.subscriber().await?;
        Ok((Box::new(subscriber), events))
    }
}

#[async_trait]
impl Presence for RedisBackplane {
    async fn presence_heartbeat(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
        ttl: Duration,
    ) -> Result<(), BackplaneError> {
        self.inner
            .presence_heartbeat(pool, user_id, instance, ttl)
            .await
    }

    async fn presence_remove(
        &self,
        pool: &str,
        user_id: &str,
        instance: &str,
    ) -> Result<(), BackplaneError> {
        self.inner.presence_remove(pool, user_id, instance).await
    }

    async fn presence_count(&self, pool: &str) -> Result<u64, BackplaneError> {
        self.inner.presence_count(pool).await
    }

    async fn presence_users(&self, pool: &str) -> Result<Vec<String>, BackplaneError> {
        self.inner.presence_users(pool).await
    }
}

#[async_trait]
impl Throttle for RedisBackplane {
    async fn throttle(&self, key: &str, period: Duration) -> Result<bool, BackplaneError> {
        self.inner.throttle(key, period).await
    }

    async fn count_in_window(&self, key: &str, window: Duration) -> Result<u64, BackplaneError> {
        self.inner.count_in_window(key, window).await
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    async fn ping(&self) -> Result<(), BackplaneError> {
        self.inner
            .pool
            .next()
            .ping::<()>(None)
            .await
            .map_err(map_error)
    }
}

/// Server error codes that mean "not now" rather than "never": the server
/// is starting, busy, read-only during a failover, or out of memory.
const TRANSIENT_SERVER_ERRORS: &[&str] = &[
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "READONLY",
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MISCONF",
    "NOREPLICAS",
    "OOM",
];

/// Sorts a client error into "cannot reach or use the server now" and
/// "the server said something unexpected".
pub(crate) fn map_error(error: RedisError) -> BackplaneError {
    let message = error.to_string();
    match error.kind() {
        ErrorKind::Protocol
        | ErrorKind::Parse
        | ErrorKind::InvalidCommand
        | ErrorKind::InvalidArgument
        | ErrorKind::NotFound => BackplaneError::Protocol(message),
        // Replies of the server carry an upper-case code first; fred's own
        // "unknown" errors are sentences about a client that is stopped.
        ErrorKind::Unknown => match server_error_code(error.details()) {
            Some(code) if !TRANSIENT_SERVER_ERRORS.contains(&code) => {
                BackplaneError::Protocol(message)
            }
            _ => BackplaneError::Unavailable(message),
        },
        _ => BackplaneError::Unavailable(message),
    }
}

fn server_error_code(details: &str) -> Option<&str> {
    let code = details.split_whitespace().next()?;
    code.bytes().all(|b| b.is_ascii_uppercase()).then_some(code)
}

/// Runs a clean-up future from a `Drop`, when there is a runtime to run it.
fn spawn_detached<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    if let Ok(handle) = tokio::runtime::Handle::try_current() {
        handle.spawn(future);
    }
}

/// Whole milliseconds for a command argument, never zero: Redis refuses a
/// zero expiry, and a zero block would mean "forever".
fn millis(duration: Duration) -> i64 {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    i64::try_from(ms).unwrap_or(i64::MAX).max(1)
}

/// Helpers to take script replies apart; anything of another shape is a
/// protocol error rather than a panic.
fn unexpected(what: &str, value: &Value) -> BackplaneError {
    BackplaneError::Protocol(format!("unexpected reply for {what}: {value:?}"))
}

fn into_array(what: &str, value: Value) -> Result<Vec<Value>, BackplaneError> {
    match value {
        Value::Array(values) => Ok(values),
        // Redis turns an empty Lua table into an empty array, which RESP2
        // clients may see as nil.
        Value::Null => Ok(Vec::new()),
        other => Err(unexpected(what, &other)),
    }
}

fn into_string(what: &str, value: Value) -> Result<String, BackplaneError> {
    match value {
        Value::String(s) => Ok(s.to_string()),
        Value::Bytes(b) => String::from_utf8(b.to_vec())
            .map_err(|_| BackplaneError::Protocol(format!("non-UTF-8 text in reply for {what}"))),
        other => Err(unexpected(what, &other)),
    }
}

fn into_bytes(what: &str, value: Value) -> Result<Bytes, BackplaneError> {
    match value {
        Value::String(s) => Ok(s.into_inner()),
        Value::Bytes(b) => Ok(b),
        other => Err(unexpected(what, &other)),
    }
}

fn into_u64(what: &str, value: &Value) -> Result<u64, BackplaneError> {
    value.as_u64().ok_or_else(|| unexpected(what, value))
}

/// The client configuration for `url`. A `rediss://` URL is read as its
/// plain form and given this process's TLS settings, so that the trusted
/// authorities are the configured ones and the system store is not even
/// read when a CA file is set.
fn redis_config(url: &str, roots: &TrustedRoots) -> Result<Config, BackplaneError> {
    let invalid = |e: String| BackplaneError::Unavailable(format!("invalid Redis URL: {e}"));
    let (plain, tls) = if let Some(rest) = url.strip_prefix("rediss://") {
        (format!("redis://{rest}"), true)
    } else if let Some(rest) = url.strip_prefix("rediss-cluster://") {
        (format!("redis-cluster://{rest}"), true)
    } else {
        (url.to_owned(), false)
    };
    let mut config = Config::from_url(&plain).map_err(|e| invalid(e.to_string()))?;
    if tls {
        let client = crate::tls::client_config(roots)
            .map_err(|e| BackplaneError::Unavailable(format!("Redis TLS: {e}")))?;
        config.tls = Some(TlsConnector::from(client).into());
    }
    Ok(config)
}
