//! `gateway`: one stateless gateway pod of a cluster. It serves Socket.IO
//! and REST on `PORT`, talks to the workers through Redis and reads the
//! record from PostgreSQL. Configuration: environment variables (README).
#![forbid(unsafe_code)]

use std::sync::Arc;

use anyhow::Context;
use chat_gateway::{Gateway, GatewayConfig, Listeners};
use chat_shared::backplane::redis::{RedisBackplane, RedisOptions};
use chat_shared::config::{ClusterConnections, ConfigError, Env};
use chat_shared::names::Names;
use chat_shared::store::postgres::{PostgresOptions, PostgresStore};

struct GatewayProcessConfig {
    gateway: GatewayConfig,
    connections: ClusterConnections,
}

fn read_config(env: &Env) -> Result<GatewayProcessConfig, ConfigError> {
    let connections = ClusterConnections::from_env(env)?;
    let gateway = GatewayConfig::from_env(env, false)?;
    Ok(GatewayProcessConfig {
        gateway,
        connections,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat_shared::runtime::init_logging();
    let config =
        chat_shared::runtime::settings_or_exit("gateway", read_config(&Env::from_process()));
    let names = Names::new(config.gateway.key_prefix.clone());
    let redis_options = RedisOptions {
        pool_size: config.connections.redis_pool_size,
        tls_roots: config.connections.redis_roots.clone(),
        ..RedisOptions::default()
    };
    let backplane = RedisBackplane::connect(&config.connections.redis_url, names, redis_options)
        .await
        .context("connecting to Redis")?;
    let store_options = PostgresOptions {
        pool_size: config.connections.database_pool_size,
        tls_roots: config.connections.database_roots.clone(),
        ..PostgresOptions::default()
    };
    let mut store = PostgresStore::connect(&config.connections.database_url, store_options.clone())
        .await
        .context("connecting to PostgreSQL")?;
    // DATABASE_READ_URL: history, lists and the data that authorises a
    // join are read from this streaming replica whenever it has replayed
    // everything the primary had acknowledged when the read began, and
    // from the primary otherwise (`PostgresStore::with_read_replica`).
    if let Some(read_url) = &config.connections.database_read_url {
        store = store
            .with_read_replica(read_url, &store_options)
            .context("setting up the PostgreSQL read replica")?;
    }

    let listeners = Listeners::bind(&config.gateway).await?;
    let (addr, admin_addr) = listeners.addrs()?;
    // Uploaded files live in the same database (`blobs`, `blob_chunks`).
    let blobs = Arc::new(store.blobs());
    let gateway = Gateway::start(config.gateway, Arc::new(store), blobs, Arc::new(backplane))
        .await
        .context("starting the gateway")?;
    println!("gateway listening on http://{addr}");
    if let Some(admin) = admin_addr {
        println!("gateway admin endpoints on http://{admin}");
    }
    gateway
        .serve(listeners, chat_shared::runtime::shutdown_signal())
        .await
        .context("serving")?;
    tracing::info!("gateway stopped");
    Ok(())
}
