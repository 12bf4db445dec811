//! What every connection and REST handler of one gateway shares.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use chat_shared::auth::{TokenMinter, TokenVerifier};
use chat_shared::backplane::Backplane;
use chat_shared::blob::BlobStore;
use chat_shared::metrics::MetricsSource;
use chat_shared::store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::requests::Requests;
use crate::user_sockets::UserSockets;

pub struct GatewayState {
    pub config: GatewayConfig,
    pub hub: Arc<Hub>,
    pub verifier: TokenVerifier,
    /// Present only when the development token endpoint is enabled.
    pub minter: Option<TokenMinter>,
    pub store: Arc<dyn Store>,
    /// The bytes of uploaded files (a folder standalone, PostgreSQL in a
    /// cluster).
    pub blobs: Arc<dyn BlobStore>,
    pub backplane: Arc<dyn Backplane>,
    pub metrics: Arc<Metrics>,
    pub presence: Arc<Presence>,
    /// Commands sent and the replies awaited.
    pub requests: Arc<Requests>,
    /// Large history reads for sockets (join replies, gap repair, resync)
    /// running at once: a crowd asking for large joins queues here instead
    /// of taking every core from the live traffic.
    pub history_reads: tokio::sync::Semaphore,
    /// Open sockets per user, against `MAX_SOCKETS_PER_USER`.
    pub user_sockets: Arc<UserSockets>,
    /// Set as soon as a drain starts: readiness fails, so load balancers
    /// stop sending new clients, while existing ones are still served.
    pub draining: AtomicBool,
    /// Cleared once the drain's delay is over: from then on WebSocket
    /// upgrades are refused, also on connections kept alive from before.
    pub accepting: AtomicBool,
    /// Cancelled to close every connection.
    pub close_connections: CancellationToken,
    /// Other components whose series `/metrics` serves too (the worker, in
    /// the standalone process).
    pub metrics_sources: Mutex<Vec<Arc<dyn MetricsSource>>>,
}

impl GatewayState {
    pub fn metrics_sources(&self) -> Vec<Arc<dyn MetricsSource>> {
        self.metrics_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
