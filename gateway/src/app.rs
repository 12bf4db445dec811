//! Assembling a gateway: connect its hub to the backplane, start its
//! background tasks, build the HTTP router, serve, and drain on shutdown
//! so that a rolling update loses no client and no acknowledged message.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::{any, get, post};
use axum::Router;
use chat_shared::auth::{JwtConfigError, JwtKeySource, TokenMinter, TokenVerifier};
use chat_shared::backplane::{Backplane, BackplaneError};
use chat_shared::blob::BlobStore;
use chat_shared::metrics::MetricsSource;
use chat_shared::names::Names;
use chat_shared::store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{GatewayConfig, MAX_PAYLOAD_BYTES};
use crate::hub::Hub;
use crate::metrics::{Metrics, Rejection};
use crate::outbound::SocketHandle;
use crate::presence::Presence;
use crate::requests::{RequestRoute, Requests};
use crate::sio::connection::Transport;
use crate::sio::deflate::Deflate;
use crate::sio::deflate_upgrade::{NotAnUpgrade, SocketUpgrade};
use crate::sio::queue::QueueLimits;
use crate::socket::connection::ChatSockets;
use crate::state::GatewayState;
use crate::{ops, rest, sio};

/// WebSocket read buffer: small, since most sockets sit idle and the
/// protocol's frames are small (an event is a few hundred bytes); larger
/// frames still work, they just take more reads. It is allocated per
/// connection, so it is the largest part of an idle socket's memory.
const WS_READ_BUFFER: usize = 1024;
/// Bytes of frames gathered before a write to the socket. The connection
/// loop feeds every frame queued for a socket and then flushes, so the
/// frames of one batch (an ack and the echo of the same message, a
/// catch-up) leave in one system call; with no buffer each frame was a
/// write of its own. A socket keeps at most this much, plus one frame,
/// of buffer once it has written a batch that large.
const WS_WRITE_BUFFER: usize = 4096;
/// How often requests past their deadline are answered.
const EXPIRY_SWEEP: Duration = Duration::from_millis(250);
/// Shortest pause between two batches of a drain's disconnections; a
/// shorter window closes bigger batches rather than more of them.
const MIN_BATCH_GAP: Duration = Duration::from_millis(50);
/// How often a drain looks whether every in-flight command was answered.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
    #[error(transparent)]
    Backplane(#[from] BackplaneError),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// The gateway's ports, bound before anything else starts so that a port
/// in use fails the start at once.
pub struct Listeners {
    pub public: TcpListener,
    /// With `ADMIN_PORT`: probes and metrics only.
    pub admin: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &GatewayConfig) -> std::io::Result<Listeners> {
        let public = TcpListener::bind((config.host, config.port)).await?;
        let admin = match config.admin_port {
            Some(port) => Some(TcpListener::bind((config.host, port)).await?),
            None => None,
        };
        Ok(Listeners { public, admin })
    }

    /// Where they listen: the public address, and the admin one if any.
    pub fn addrs(&self) -> std::io::Result<(std::net::SocketAddr, Option<std::net::SocketAddr>)> {
        let admin = self
            .admin
            .as_ref()
            .map(TcpListener::local_addr)
            .transpose()?;
        Ok((self.public.local_addr()?, admin))
    }
}

pub struct Gateway {
    state: Arc<GatewayState>,
    /// The chat the Socket.IO transport serves.
    sockets: Arc<ChatSockets>,
    transport: Arc<Transport>,
    tasks: TaskTracker,
    connections: TaskTracker,
    stop_tasks: CancellationToken,
}

impl Gateway {
    pub async fn start(
        config: GatewayConfig,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
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
        let requests = Arc::new(Requests::new(
            RequestRoute {
                gateway_id: gateway_id.clone(),
                partitions: config.partitions,
                timeout: config.request_timeout,
            },
            backplane.clone(),
            metrics.clone(),
        ));
        let presence = Arc::new(Presence::new(
            gateway_id.clone(),
            &config,
            backplane.clone(),
            store.clone(),
            requests.clone(),
            metrics.clone(),
        ));
        let (hub, events) = Hub::connect(
            &*backplane,
            names,
            gateway_id,
            requests.clone(),
            metrics.clone(),
            QueueLimits {
                frames: config.outbound_queue,
                bytes: config.outbound_queue_bytes,
            },
        )
        .await?;
        let state = Arc::new(GatewayState {
            config,
            hub: hub.clone(),
            verifier,
            minter,
            store,
            blobs,
            backplane,
            metrics,
            presence: presence.clone(),
            requests,
            user_sockets: Arc::default(),
            history_reads: tokio::sync::Semaphore::new(crate::history::AT_ONCE),
            draining: AtomicBool::new(false),
            accepting: AtomicBool::new(true),
            close_connections: CancellationToken::new(),
            metrics_sources: std::sync::Mutex::new(Vec::new()),
        });
        let tasks = TaskTracker::new();
        let stop_tasks = CancellationToken::new();
        tasks.spawn(hub.run_dispatcher(events, stop_tasks.clone()));
        tasks.spawn(expire_requests(state.clone(), stop_tasks.clone()));
        tasks.spawn(presence.run_heartbeat(stop_tasks.clone()));
        tasks.spawn(crate::attachments_cleanup::run(
            state.clone(),
            stop_tasks.clone(),
        ));
        let transport = Arc::new(Transport {
            ping_interval: state.config.ping_interval,
            ping_timeout: state.config.ping_timeout,
            write_timeout: state.config.write_timeout,
            max_payload: MAX_PAYLOAD_BYTES,
            compression_min_bytes: state
                .config
                .ws_compression
                .then_some(state.config.ws_compression_min_bytes),
            metrics: state.metrics.clone(),
            close_connections: state.close_connections.clone(),
        });
        Ok(Gateway {
            sockets: Arc::new(ChatSockets::new(state.clone())),
            transport,
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
        // Handlers wait for the worker up to the request timeout; reading
        // the body gets as long again.
        let deadline = self.state.config.request_timeout * 2;
        let api = rest::routes()
            .merge(crate::attachments::download_routes())
            .layer(axum::middleware::from_fn(move |request, next| {
                crate::http_edges::bound_request_time(deadline, request, next)
            }));
        let mut router = Router::new()
            .route("/socket.io", any(socket_io))
            .route("/socket.io/", any(socket_io))
            .nest("/api/chat", api);
        // With an admin port, nothing but the chat itself is public.
        if self.state.config.admin_port.is_none() {
            router = router
                .merge(ops_routes())
                .route("/api/dev/token", post(ops::dev_token));
        }
        // Uploads: their own bounds (`attachments`), neither the body limit
        // nor the deadline, so they join after both are laid on the rest.
        let uploads = Router::new().nest("/api/chat", crate::attachments::upload_routes());
        router
            .fallback(crate::web::serve_web)
            .layer(DefaultBodyLimit::max(MAX_PAYLOAD_BYTES))
            .layer(axum::middleware::from_fn(
                crate::http_edges::refuse_oversized_bodies,
            ))
            .merge(uploads)
            .layer(axum::middleware::from_fn(crate::http_edges::no_sniffing))
            .layer(axum::Extension(self.connections.clone()))
            .layer(axum::Extension(self.sockets.clone()))
            .layer(axum::Extension(self.transport.clone()))
            .with_state(self.state.clone())
    }

    /// The router of the admin port.
    pub fn admin_router(&self) -> Router {
        ops_routes()
            .route("/api/dev/token", post(ops::dev_token))
            .with_state(self.state.clone())
    }

    /// Adds another component's series to this gateway's `/metrics` (the
    /// standalone process serves the worker's there too).
    pub fn add_metrics_source(&self, source: Arc<dyn MetricsSource>) {
        self.state
            .metrics_sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(source);
    }

    /// Serves until `shutdown` resolves, then drains (see [`DrainConfig`]):
    /// turn unready, keep serving for the drain delay, stop accepting,
    /// close the sockets in batches over the drain window (clients
    /// reconnect to another gateway), wait for what is in flight, and stop
    /// the background tasks, all within the shutdown grace.
    ///
    /// [`DrainConfig`]: crate::config::DrainConfig
    pub async fn serve(
        self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let Listeners {
            public: listener,
            admin,
        } = listeners;
        if let Some(admin) = admin {
            // The admin port outlives the public one: probes must keep
            // seeing "not ready" and scrapes keep working until the end.
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
        let stop_accepting = CancellationToken::new();
        let stop = stop_accepting.clone();
        let router = self.router();
        let head_timeout = self.state.config.head_timeout;
        let mut public = tokio::spawn(async move {
            crate::http_server::serve(listener, router, head_timeout, stop).await;
            Ok::<(), std::io::Error>(())
        });
        let failed = tokio::select! {
            _ = shutdown => None,
            finished = &mut public => Some(finished),
        };
        match failed {
            None => {
                self.drain(stop_accepting, Some(public)).await;
                Ok(())
            }
            // The listener failed on its own: nothing to hand over to a
            // load balancer any more, but the sockets still get closed.
            Some(finished) => {
                self.drain(stop_accepting, None).await;
                match finished {
                    Ok(served) => served.map_err(GatewayError::Io),
                    Err(join) => Err(GatewayError::Io(std::io::Error::other(join))),
                }
            }
        }
    }

    async fn drain(
        self,
        stop_accepting: CancellationToken,
        public: Option<JoinHandle<std::io::Result<()>>>,
    ) {
        let drain = self.state.config.drain;
        let deadline = Instant::now() + drain.grace;
        self.state.draining.store(true, Ordering::Relaxed);
        tracing::info!(
            delay_ms = drain.delay.as_millis() as u64,
            window_ms = drain.window.as_millis() as u64,
            "draining: readiness is off; still serving while load balancers notice"
        );
        tokio::time::sleep_until(deadline.min(Instant::now() + drain.delay)).await;

        self.state.accepting.store(false, Ordering::Relaxed);
        stop_accepting.cancel();
        let sockets = self.state.hub.all_sockets();
        tracing::info!(
            sockets = sockets.len(),
            "no longer accepting; asking clients to reconnect elsewhere"
        );
        let window = drain
            .window
            .min(deadline.saturating_duration_since(Instant::now()));
        disconnect_in_batches(&sockets, window, &self.state.metrics).await;
        // Whatever was not in the hub (a socket still authenticating, one
        // that connected during the window) goes now.
        self.state.close_connections.cancel();
        self.connections.close();
        let _ = tokio::time::timeout_at(deadline, self.connections.wait()).await;

        // Commands already appended are answered by the workers (or time
        // out); REST callers are waiting for those answers.
        while !self.state.requests.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(IN_FLIGHT_POLL).await;
        }
        if let Some(public) = public {
            match tokio::time::timeout_at(deadline, public).await {
                Ok(Ok(Err(error))) => {
                    tracing::warn!(%error, "public listener failed while draining")
                }
                Ok(Err(error)) => tracing::warn!(%error, "public listener task failed"),
                Err(_) => tracing::warn!("grace period over with HTTP requests still open"),
                Ok(Ok(Ok(()))) => {}
            }
        }
        let unanswered = self.state.requests.len();
        if unanswered > 0 {
            tracing::warn!(unanswered, "grace period over with commands unanswered");
        }
        self.stop_tasks.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!("drained");
    }
}

/// Closes `sockets` in batches spread evenly over `window`, the first at
/// once. Clients treat the close as a lost transport and reconnect (through
/// the load balancer, to a gateway still serving); spreading the closes
/// spreads those reconnections and the history reads they cause.
async fn disconnect_in_batches(sockets: &[Arc<SocketHandle>], window: Duration, metrics: &Metrics) {
    if sockets.is_empty() {
        return;
    }
    let most_batches = usize::try_from(window.as_millis() / MIN_BATCH_GAP.as_millis())
        .unwrap_or(usize::MAX)
        .max(1);
    let batches = sockets.len().min(most_batches);
    let per_batch = sockets.len().div_ceil(batches);
    let gap = window / u32::try_from(batches).unwrap_or(u32::MAX);
    let started = Instant::now();
    for (index, batch) in sockets.chunks(per_batch).enumerate() {
        tokio::time::sleep_until(started + gap * u32::try_from(index).unwrap_or(u32::MAX)).await;
        for socket in batch {
            if !socket.kick.is_cancelled() {
                metrics.drain_disconnects.inc();
                socket.kick.cancel();
            }
        }
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
    axum::Extension(sockets): axum::Extension<Arc<ChatSockets>>,
    axum::Extension(transport): axum::Extension<Arc<Transport>>,
    upgrade: Result<SocketUpgrade, NotAnUpgrade>,
    query: axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let websocket = query.get("transport").map(String::as_str) == Some("websocket");
    let engine_v4 = query.get("EIO").map(String::as_str) == Some("4");
    let (Ok(upgrade), true, true) = (upgrade, websocket, engine_v4) else {
        return ops::polling_refused().await;
    };
    if !state.accepting.load(Ordering::Relaxed) {
        state.metrics.rejected(Rejection::Draining).inc();
        return axum::response::IntoResponse::into_response((
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "draining",
        ));
    }
    let token = connections.token();
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(Some(MAX_PAYLOAD_BYTES))
        .max_frame_size(Some(MAX_PAYLOAD_BYTES));
    let deflate = transport.compression_min_bytes.map(|min_bytes| Deflate {
        min_bytes,
        max_payload: transport.max_payload,
    });
    upgrade.on_upgrade(deflate, config, move |socket| async move {
        sio::connection::serve(socket, sockets, transport).await;
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
        state.requests.expire(tokio::time::Instant::now());
        state.hub.release_lingering().await;
    }
}
