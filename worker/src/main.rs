//! `worker`: one worker pod of a cluster. It takes its share of the command
//! partitions from Redis, applies commands to PostgreSQL, and publishes the
//! resulting events. `/healthz`, `/readyz` and `/metrics` are served on
//! `ADMIN_PORT` (default 9091). On SIGTERM it stops taking new commands,
//! finishes and acknowledges the batch at hand, and releases its leases so
//! that another worker takes its partitions over at once. Configuration:
//! environment variables (README).
#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_shared::backplane::redis::{RedisBackplane, RedisOptions};
use chat_shared::backplane::Backplane;
use chat_shared::config::{ClusterConnections, ConfigError, Env};
use chat_shared::names::Names;
use chat_shared::store::postgres::{PostgresOptions, PostgresStore};
use chat_shared::store::Store;
use chat_worker::ops::{self, WorkerOps};
use chat_worker::{Worker, WorkerConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The worker's admin port when `ADMIN_PORT` is not set.
const DEFAULT_ADMIN_PORT: u16 = 9091;

struct WorkerProcessConfig {
    worker: WorkerConfig,
    connections: ClusterConnections,
    key_prefix: String,
    host: IpAddr,
    admin_port: u16,
    /// `SHUTDOWN_GRACE_MS`: how long the current batch and the lease
    /// release may take after SIGTERM before the process exits anyway
    /// (the leases then expire on their own).
    shutdown_grace: Duration,
}

fn read_config(env: &Env) -> Result<WorkerProcessConfig, ConfigError> {
    Ok(WorkerProcessConfig {
        connections: ClusterConnections::from_env(env)?,
        worker: WorkerConfig::from_env(env)?,
        key_prefix: env.string("KEY_PREFIX", "chat"),
        host: env.parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
        admin_port: env.parse("ADMIN_PORT", DEFAULT_ADMIN_PORT)?,
        shutdown_grace: env.millis("SHUTDOWN_GRACE_MS", Duration::from_secs(30))?,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_shared::runtime::init_logging();
    let config =
        chat_shared::runtime::settings_or_exit("worker", read_config(&Env::from_process()));
    let names = Names::new(config.key_prefix.clone());
    let redis_options = RedisOptions {
        pool_size: config.connections.redis_pool_size,
        tls_roots: config.connections.redis_roots.clone(),
        // A Redis Cluster reads each owned partition on a connection of
        // its own (one server reads them all on one); opened on first use.
        blocking_connections: usize::try_from(config.worker.partitions)
            .unwrap_or(usize::MAX)
            .max(RedisOptions::default().blocking_connections),
        ..RedisOptions::default()
    };
    let backplane: Arc<dyn Backplane> = Arc::new(
        RedisBackplane::connect(&config.connections.redis_url, names.clone(), redis_options)
            .await
            .context("connecting to Redis")?,
    );
    let store_options = PostgresOptions {
        pool_size: config.connections.database_pool_size,
        tls_roots: config.connections.database_roots.clone(),
        ..PostgresOptions::default()
    };
    let store: Arc<dyn Store> = Arc::new(
        PostgresStore::connect(&config.connections.database_url, store_options)
            .await
            .context("connecting to PostgreSQL")?,
    );
    let admin_listener = TcpListener::bind((config.host, config.admin_port))
        .await
        .with_context(|| format!("binding the admin port {}", config.admin_port))?;
    let admin_addr = admin_listener.local_addr()?;

    let worker = Worker::new(config.worker, store.clone(), backplane.clone(), names);
    let ops_state = WorkerOps::new(worker.metrics(), store, backplane);
    let stop_admin = CancellationToken::new();
    let admin = {
        let router = ops::router(ops_state.clone());
        let stop = stop_admin.clone();
        tokio::spawn(async move {
            axum::serve(admin_listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        })
    };
    println!("worker {} started", worker.id());
    println!("worker admin endpoints on http://{admin_addr}");

    let shutdown = CancellationToken::new();
    let mut run = tokio::spawn(worker.run(shutdown.clone()));
    tokio::select! {
        _ = chat_shared::runtime::shutdown_signal() => {}
        finished = &mut run => {
            stop_admin.cancel();
            finished.context("worker task")?;
            anyhow::bail!("the worker loop ended without being asked to");
        }
    }
    tracing::info!("signal received; finishing the current batch and releasing partitions");
    ops_state.draining.store(true, Ordering::Relaxed);
    shutdown.cancel();
    match tokio::time::timeout(config.shutdown_grace, &mut run).await {
        Ok(finished) => finished.context("worker task")?,
        Err(_) => {
            tracing::error!("grace period over before the worker stopped; its leases will expire");
            run.abort();
        }
    }
    stop_admin.cancel();
    match admin.await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "admin listener failed"),
        Err(error) => tracing::warn!(%error, "admin listener task failed"),
    }
    tracing::info!("worker stopped");
    Ok(())
}
