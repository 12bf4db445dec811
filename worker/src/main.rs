//! `worker`: one worker pod of a cluster. It takes its share of the command
//! partitions from Redis, applies commands to PostgreSQL, and publishes the
//! resulting events. Configuration: environment variables (README).
#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context;
use chat_shared::backplane::redis::{RedisBackplane, RedisOptions};
use chat_shared::config::{ClusterConnections, ConfigError, Env};
use chat_shared::names::Names;
use chat_shared::store::postgres::{PostgresOptions, PostgresStore};
use chat_worker::{Worker, WorkerConfig};
use tokio_util::sync::CancellationToken;

struct WorkerProcessConfig {
    worker: WorkerConfig,
    connections: ClusterConnections,
    key_prefix: String,
}

fn read_config(env: &Env) -> Result<WorkerProcessConfig, ConfigError> {
    Ok(WorkerProcessConfig {
        connections: ClusterConnections::from_env(env)?,
        worker: WorkerConfig::from_env(env)?,
        key_prefix: env.string("KEY_PREFIX", "chat"),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_shared::runtime::init_logging();
    let config = match read_config(&Env::from_process()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("worker: {error}");
            std::process::exit(2);
        }
    };
    let names = Names::new(config.key_prefix.clone());
    let redis_options = RedisOptions {
        pool_size: config.connections.redis_pool_size,
        ..RedisOptions::default()
    };
    let backplane =
        RedisBackplane::connect(&config.connections.redis_url, names.clone(), redis_options)
            .await
            .context("connecting to Redis")?;
    let store_options = PostgresOptions {
        pool_size: config.connections.database_pool_size,
        ..PostgresOptions::default()
    };
    let store = PostgresStore::connect(&config.connections.database_url, store_options)
        .await
        .context("connecting to PostgreSQL")?;
    let worker = Worker::new(config.worker, Arc::new(store), Arc::new(backplane), names);
    println!("worker {} started", worker.id());
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    chat_shared::runtime::shutdown_signal().await;
    tracing::info!("signal received; finishing the current batch and releasing partitions");
    shutdown.cancel();
    run.await.context("worker task")?;
    Ok(())
}
