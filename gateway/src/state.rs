//! What every connection and REST handler of one gateway shares.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use chat_shared::auth::{TokenMinter, TokenVerifier};
use chat_shared::backplane::Backplane;
use chat_shared::store::Store;
use tokio_util::sync::CancellationToken;

use crate::config::GatewayConfig;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::Presence;

pub struct GatewayState {
    pub config: GatewayConfig,
    pub hub: Arc<Hub>,
    pub verifier: TokenVerifier,
    /// Present only when the development token endpoint is enabled.
    pub minter: Option<TokenMinter>,
    pub store: Arc<dyn Store>,
    pub backplane: Arc<dyn Backplane>,
    pub metrics: Arc<Metrics>,
    pub presence: Presence,
    /// Set on shutdown: readiness fails and new connections are refused.
    pub draining: AtomicBool,
    /// Cancelled to close every connection.
    pub close_connections: CancellationToken,
}
