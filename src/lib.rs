//! Standalone mode: the gateway and the worker in one process and one tokio
//! runtime, over the in-process backplane and the SQLite store. This is what
//! `cargo run --release` starts, and what the integration tests start on
//! port 0.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use chat_gateway::{Gateway, GatewayConfig, GatewayError, Listeners};
use chat_shared::backplane::memory::MemoryBackplane;
use chat_shared::backplane::Backplane;
use chat_shared::blob::fs::FsBlobStore;
use chat_shared::blob::BlobStore;
use chat_shared::config::{ConfigError, Env};
use chat_shared::names::Names;
use chat_shared::store::sqlite::SqliteStore;
use chat_shared::store::{Store, StoreError};
use chat_worker::{Worker, WorkerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Everything the standalone process is configured with.
#[derive(Debug, Clone)]
pub struct StandaloneConfig {
    pub gateway: GatewayConfig,
    pub worker: WorkerConfig,
    /// Where the SQLite file lives (`CHAT_DATA_DIR`, default `./data`).
    pub data_dir: PathBuf,
}

impl StandaloneConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let redis = env.get("REDIS_URL").is_some() || env.get("REDIS_CLUSTER_NODES").is_some();
        if redis != env.get("DATABASE_URL").is_some() {
            return Err(ConfigError(
                "set both REDIS_URL (or REDIS_CLUSTER_NODES) and DATABASE_URL for cluster mode, or neither for standalone"
                    .into(),
            ));
        }
        if redis {
            return Err(ConfigError(
                "REDIS_URL and DATABASE_URL select cluster mode: run the `gateway` and `worker` binaries".into(),
            ));
        }
        let mut gateway = GatewayConfig::from_env(env, true)?;
        let mut worker = WorkerConfig::from_env(env)?;
        if env.get("PARTITIONS").is_none() {
            // One worker owns everything here, and SQLite commits one
            // transaction at a time: a single partition turns each read into
            // one batch and one fsync instead of one per partition.
            gateway.partitions = 1;
        }
        // One process owns every partition, so a short lease costs nothing
        // and a restart takes over at once.
        worker.partitions = gateway.partitions;
        Ok(StandaloneConfig {
            gateway,
            worker,
            data_dir: PathBuf::from(env.string("CHAT_DATA_DIR", "./data")),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// A running standalone chat.
pub struct RunningChat {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl RunningChat {
    /// Drains and stops everything; returns when the process may exit.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.task.await {
            tracing::error!(%error, "standalone task failed");
        }
    }

    /// Resolves when the server has stopped by itself.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Opens the store, starts the worker and the gateway, and binds the ports.
pub async fn start(config: StandaloneConfig) -> Result<RunningChat, StandaloneError> {
    start_over(config, Arc::new(MemoryBackplane::new())).await
}

/// `start` over a given in-process backplane (tests wrap the standard one
/// to hold chosen subscriptions).
pub async fn start_over(
    config: StandaloneConfig,
    backplane: Arc<dyn Backplane>,
) -> Result<RunningChat, StandaloneError> {
    let db_path = config.data_dir.join("chat.db");
    let store: Arc<dyn Store> = Arc::new(
        tokio::task::spawn_blocking(move || SqliteStore::open(&db_path))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))??,
    );
    // Uploaded files: a folder beside the SQLite file.
    let blobs_root = config.data_dir.join("attachments");
    let blobs: Arc<dyn BlobStore> = Arc::new(
        tokio::task::spawn_blocking(move || FsBlobStore::open(&blobs_root))
            .await
            .map_err(|e| StoreError::Internal(e.to_string()))?
            .map_err(|e| StoreError::Unavailable(format!("attachments folder: {e}")))?,
    );
    let names = Names::new(config.gateway.key_prefix.clone());

    let listeners = Listeners::bind(&config.gateway).await?;
    let (addr, admin_addr) = listeners.addrs()?;

    let worker = Worker::new(
        config.worker.clone(),
        store.clone(),
        backplane.clone(),
        names,
    );
    let gateway = Gateway::start(config.gateway.clone(), store, blobs, backplane).await?;
    // One process, one `/metrics`: the worker's series are served there too.
    gateway.add_metrics_source(worker.metrics());

    let shutdown = CancellationToken::new();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));
    let gateway_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = gateway
            .serve(listeners, async move { gateway_shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "gateway stopped with an error");
        }
        // The gateway has answered or timed out everything in flight; now
        // the worker finishes its batch and stops.
        worker_stop.cancel();
        if let Err(error) = worker_task.await {
            tracing::error!(%error, "worker task failed");
        }
    });
    Ok(RunningChat {
        addr,
        admin_addr,
        shutdown,
        task,
    })
}
