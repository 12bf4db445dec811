//! Assembling a gateway: connect its hub to the backplane, start its
//! background tasks, build the HTTP router, serve, and drain on shutdown.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use chat_shared::auth::{JwtConfigError, JwtKeySource, TokenMinter, TokenVerifier};
use chat_shared::backplane::{Backplane, BackplaneError};
use chat_shared::names::Names;
use chat_shared::store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{GatewayConfig, MAX_PAYLOAD_BYTES};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence::{self, Presence};
use crate::state::GatewayState;
use crate::{ops, rest, sio};

/// WebSocket read buffer: small, since most sockets sit idle and the
/// protocol's frames are small; larger frames still work, they just take
/// more reads.
const WS_READ_BUFFER: usize = 4 * 1024;
/// How often requests past their deadline are answered.
const EXPIRY_SWEEP: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Gateway {
    state: Arc<GatewayState>,
    tasks: TaskTracker,
    connections: TaskTracker,
    stop_tasks: CancellationToken,
}

impl Gateway {
    pub async fn start(
        config: GatewayConfig,
        store: Arc<dyn Store>,
        backplane: Arc<dyn Backplane>,
    ) -> Result<Self, GatewayError> {
        let verifier = TokenVerifier::new(&config.jwt)?;
        let minter = match (&config.jwt.key, config.dev_tokens) {
            (JwtKeySource::Secret(secret), true) => Some(TokenMinter::new(secret)),
            _ => None,
        };
        let metrics = Arc::new(Metrics::default());
        let gateway_id = format!("gw-{}", uuid::Uuid::new_v4().simple());
        let names = Names::new(config.key_prefix.clone());
        let (hub, events) = Hub::connect(
            &*backplane,
            names,
            gateway_id,
            metrics.clone(),
            config.outbound_queue,
        )
        .await?;
        let state = Arc::new(GatewayState {
            config,
            hub: hub.clone(),
            verifier,
            minter,
            store,
            backplane,
            metrics,
            presence: Presence::default(),
            draining: AtomicBool::new(false),
            close_connections: CancellationToken::new(),
        });
        let tasks = TaskTracker::new();
        let stop_tasks = CancellationToken::new();
        tasks.spawn(hub.run_dispatcher(events, stop_tasks.clone()));
        tasks.spawn(expire_requests(state.clone(), stop_tasks.clone()));
        tasks.spawn(presence::run_heartbeat(state.clone(), stop_tasks.clone()));
        Ok(Gateway {
            state,
            tasks,
            connections: TaskTracker::new(),
            stop_tasks,
        })
    }

    pub fn state(&self) -> &Arc<GatewayState> {
        &self.state
    }

    /// The public router: Socket.IO, REST, and (without an admin port) the
    /// operational endpoints.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route("/socket.io", any(socket_io))
            .route("/socket.io/", any(socket_io))
            .nest("/api/chat", rest::routes())
            .route("/api/dev/token", post(ops::dev_token));
        if self.state.config.admin_port.is_none() {
            router = router.merge(ops_routes());
        }
        router
            .fallback(crate::web::serve_web)
            .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
            .layer(axum::Extension(self.connections.clone()))
            .with_state(self.state.clone())
    }

    /// The router of the admin port.
    pub fn admin_router(&self) -> Router {
        ops_routes().with_state(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then drains: turn unready, stop
    /// accepting, close every socket (clients reconnect elsewhere), answer
    /// or time out what is in flight, and stop the background tasks.
    pub async fn serve(
        self,
        listener: TcpListener,
        admin_listener: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let stop_accepting = CancellationToken::new();
        if let Some(admin) = admin_listener {
            let admin_router = self.admin_router();
            let stop = self.stop_tasks.clone();
            self.tasks.spawn(async move {
                let served = axum::serve(admin, admin_router)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "admin listener failed");
                }
            });
        }
        let state = self.state.clone();
        let stop = stop_accepting.clone();
        let signal = async move {
            shutdown.await;
            tracing::info!("shutting down: draining connections");
            state.draining.store(true, Ordering::Relaxed);
            stop.cancel();
        };
        let router = self.router();
        axum::serve(listener, router)
            .with_graceful_shutdown(signal)
            .await?;
        self.drain().await;
        Ok(())
    }

    async fn drain(self) {
        self.state.draining.store(true, Ordering::Relaxed);
        self.state.close_connections.cancel();
        self.connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.connections.wait()).await;
        let deadline = tokio::time::Instant::now() + self.state.config.request_timeout;
        while !self.state.hub.requests.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.stop_tasks.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

fn ops_routes() -> Router<Arc<GatewayState>> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
}

async fn socket_io(
    State(state): State<Arc<GatewayState>>,
    axum::Extension(connections): axum::Extension<TaskTracker>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let websocket = query.get("transport").map(String::as_str) == Some("websocket");
    let engine_v4 = query.get("EIO").map(String::as_str) == Some("4");
    let (Ok(upgrade), true, true) = (upgrade, websocket, engine_v4) else {
        return ops::polling_refused().await;
    };
    if state.draining.load(Ordering::Relaxed) {
        return axum::response::IntoResponse::into_response((
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
        ));
    }
    let token = connections.token();
    upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(MAX_PAYLOAD_BYTES)
        .max_frame_size(MAX_PAYLOAD_BYTES)
        .on_upgrade(move |socket| async move {
            sio::connection::serve(socket, state).await;
            drop(token);
        })
}

/// Answers requests the worker did not answer in time.
async fn expire_requests(state: Arc<GatewayState>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
        }
        state
            .hub
            .requests
            .expire(tokio::time::Instant::now(), &state.metrics);
    }
}
