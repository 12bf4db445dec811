//! One task per WebSocket connection: the Engine.IO handshake, the
//! namespace CONNECT with token authentication, then a single loop that
//! reads client frames, writes queued frames, pings, and expires typing.
//! Nothing a client sends can end the task other than by closing its own
//! connection; bad packets are answered with errors.

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use chat_shared::auth::{AuthError, VerifiedToken};
use chat_shared::protocol::{server_events, Connected, NAMESPACE};
use chat_shared::{ChatError, Timestamp};
use futures_util::SinkExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::packet::{self, EnginePacket, SocketPacket};
use crate::config::MAX_PAYLOAD_BYTES;
use crate::events::SocketSession;
use crate::hub::{Outbound, SocketHandle};
use crate::metrics::Rejection;
use crate::presence;
use crate::state::GatewayState;
use crate::token_lifetime::{LifetimeStep, TokenLifetime};
use crate::user_sockets::SocketSlot;
use chat_shared::protocol::frames;

/// How long a client may take to CONNECT to the namespace.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45);
/// How long the closing handshake may take before the connection is dropped.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a socket's next frame waits after one of its events went over
/// its budget: a flooder gets at most about 50 refusals a second.
const OVER_BUDGET_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
/// Most queued frames written before flushing.
const WRITE_BATCH: usize = 64;

/// Why a connection ended, for logs.
#[derive(Debug)]
#[allow(dead_code)] // the details are read through `Debug` in the log line
enum Ending {
    ClientClosed,
    PingTimeout,
    Kicked,
    Transport(String),
    /// A write did not finish within `WRITE_TIMEOUT_MS`: the peer is not
    /// reading.
    WriteTimeout,
    /// What the socket was to be sent did not fit its byte budget.
    QueueFull,
    /// The token's `exp` passed without a refresh.
    TokenExpired,
}

/// Why a write failed.
#[derive(Debug)]
enum WriteError {
    Transport(String),
    Timeout,
    QueueFull,
}

impl From<WriteError> for Ending {
    fn from(error: WriteError) -> Self {
        match error {
            WriteError::Transport(error) => Ending::Transport(error),
            WriteError::Timeout => Ending::WriteTimeout,
            WriteError::QueueFull => Ending::QueueFull,
        }
    }
}

/// Writes one frame the connection produced itself (an ack, a join reply,
/// a pong, a ping): counted in the socket's byte budget while it is being
/// written, and bounded by the write deadline.
async fn write_now(
    socket: &mut WebSocket,
    handle: &SocketHandle,
    write_timeout: std::time::Duration,
    text: String,
) -> Result<(), WriteError> {
    let bytes = text.len();
    if !handle.reserve(bytes) {
        return Err(WriteError::QueueFull);
    }
    let written =
        tokio::time::timeout(write_timeout, socket.send(Message::Text(text.into()))).await;
    handle.release(bytes);
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(WriteError::Transport(error.to_string())),
        Err(_) => Err(WriteError::Timeout),
    }
}

pub async fn serve(mut socket: WebSocket, state: Arc<GatewayState>) {
    let engine_sid = random_id();
    let open = frames::open(
        &engine_sid,
        millis(state.config.ping_interval),
        millis(state.config.ping_timeout),
        MAX_PAYLOAD_BYTES,
    );
    let sent = tokio::time::timeout(
        state.config.write_timeout,
        socket.send(Message::Text(open.into())),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let Some((verified, _slot)) = await_namespace_connect(&mut socket, &state).await else {
        let _ = tokio::time::timeout(CLOSE_GRACE, socket.close()).await;
        return;
    };
    let socket_id = random_id();
    let (handle, outbound) = state.hub.new_socket(socket_id.clone(), verified.identity);
    let lifetime = TokenLifetime::new(verified.expires_at);
    let mut session = SocketSession::new(state.clone(), handle.clone(), lifetime);
    if let Err(error) = session.join_base_rooms().await {
        tracing::warn!(%error, "socket rejected: backplane unavailable");
        state.metrics.rejected(Rejection::Unavailable).inc();
        let frame = frames::connect_error(NAMESPACE, "unavailable", Some("unavailable"));
        let _ = write_now(&mut socket, &handle, state.config.write_timeout, frame).await;
        session.close().await;
        let _ = tokio::time::timeout(CLOSE_GRACE, socket.close()).await;
        return;
    }
    state.metrics.connections_accepted.inc();
    let gauge = state.metrics.sockets_gauge(handle.identity().role);
    gauge.inc();
    presence::agent_connected(&state, &handle.identity()).await;

    let ending = run_connected(&mut socket, &state, &mut session, outbound, &socket_id).await;
    tracing::debug!(sid = %socket_id, ?ending, "socket closed");
    match ending {
        Ending::WriteTimeout => state.metrics.slow_consumer_drops.inc(),
        Ending::QueueFull => handle.cut_off(&state.metrics),
        _ => {}
    }

    session.close().await;
    presence::agent_disconnected(&state, &handle.identity()).await;
    gauge.dec();
    // The goodbye is bounded: a peer that stopped reading gets its TCP
    // connection dropped instead.
    let goodbye = async {
        // A normal close: socket.io clients treat it as a lost transport
        // and reconnect (to any pod, with a fresh token when `auth` is a
        // function), then rejoin with lastSeq.
        let reason = match ending {
            Ending::Kicked => Some("going away"),
            Ending::TokenExpired => Some("token expired"),
            _ => None,
        };
        if let Some(reason) = reason {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: Utf8Bytes::from_static(reason),
                })))
                .await;
        }
        let _ = socket.close().await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// Waits for CONNECT to `/chat` with a valid token; answers every other
/// attempt with CONNECT_ERROR. None when the client goes away or times out.
async fn await_namespace_connect(
    socket: &mut WebSocket,
    state: &GatewayState,
) -> Option<(VerifiedToken, SocketSlot)> {
    let deadline = Instant::now()
        + CONNECT_TIMEOUT.min(state.config.ping_interval + state.config.ping_timeout);
    loop {
        let received = tokio::select! {
            _ = sleep_until(deadline) => return None,
            _ = state.close_connections.cancelled() => return None,
            received = socket.recv() => received,
        };
        let text = match received {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        };
        let reply = match packet::decode(&text) {
            Ok(EnginePacket::Message(SocketPacket::Connect { namespace, auth }))
                if namespace == NAMESPACE =>
            {
                match authenticate(state, auth.as_ref()) {
                    Ok(verified) => {
                        let cap = state.config.max_sockets_per_user;
                        match state.user_sockets.take(&verified.identity.user_id, cap) {
                            Some(slot) => return Some((verified, slot)),
                            None => {
                                state.metrics.rejected(Rejection::RateLimited).inc();
                                frames::connect_error(
                                    NAMESPACE,
                                    "too many connections",
                                    Some("rate_limited"),
                                )
                            }
                        }
                    }
                    Err(error) => {
                        state
                            .metrics
                            .rejected(Rejection::from_auth_code(error.code()))
                            .inc();
                        frames::connect_error(NAMESPACE, "unauthorized", Some(error.code()))
                    }
                }
            }
            Ok(EnginePacket::Message(SocketPacket::ConnectWithBadAuth { namespace }))
                if namespace == NAMESPACE =>
            {
                let error = AuthError::InvalidToken("auth is not valid JSON".into());
                state
                    .metrics
                    .rejected(Rejection::from_auth_code(error.code()))
                    .inc();
                frames::connect_error(NAMESPACE, "unauthorized", Some(error.code()))
            }
            Ok(EnginePacket::Message(
                SocketPacket::Connect { namespace, .. }
                | SocketPacket::ConnectWithBadAuth { namespace },
            )) => {
                state.metrics.rejected(Rejection::BadNamespace).inc();
                frames::connect_error(&namespace, "Invalid namespace", None)
            }
            Ok(EnginePacket::Close) => return None,
            Ok(EnginePacket::Ping(data)) => format!("3{data}"),
            _ => continue,
        };
        // A client that floods refusals and never reads is dropped.
        let sent = tokio::time::timeout(
            state.config.write_timeout,
            socket.send(Message::Text(reply.into())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            return None;
        }
    }
}

/// No auth, no `token` key, `null` or an empty string are a missing token;
/// a token of any other type is an invalid one.
fn authenticate(state: &GatewayState, auth: Option<&Value>) -> Result<VerifiedToken, AuthError> {
    let token = match auth.and_then(|a| a.get("token")) {
        None | Some(Value::Null) => "",
        Some(Value::String(token)) => token.strip_prefix("Bearer ").unwrap_or(token),
        Some(_) => return Err(AuthError::InvalidToken("the token is not a string".into())),
    };
    state.verifier.verify_token(token)
}

async fn run_connected(
    socket: &mut WebSocket,
    state: &Arc<GatewayState>,
    session: &mut SocketSession,
    mut outbound: mpsc::Receiver<Outbound>,
    socket_id: &str,
) -> Ending {
    let identity = session.handle.identity();
    let greeting = [
        frames::connect_ok(NAMESPACE, socket_id),
        frames::event(
            server_events::CONNECTED,
            &Connected {
                user_id: identity.user_id.clone(),
                name: identity.name.clone(),
                role: identity.role,
                pools: identity.pools.clone(),
                socket_id: socket_id.to_owned(),
                server_time: Timestamp::now(),
            },
        ),
    ];
    let write_timeout = state.config.write_timeout;
    let handle = session.handle.clone();
    for frame in greeting {
        if let Err(error) = write_now(socket, &handle, write_timeout, frame).await {
            return error.into();
        }
    }
    let kick = session.handle.kick.clone();
    let mut paused = false;
    let mut read_resumes_at = Instant::now();
    let mut ping_at = Instant::now() + state.config.ping_interval;
    let mut awaiting_pong = false;
    loop {
        let typing_deadline = session.typing_deadline();
        let (lifetime_in, lifetime_step) = session.lifetime.next(Timestamp::now());
        let lifetime_at = Instant::now() + lifetime_in;
        tokio::select! {
            biased;
            _ = kick.cancelled() => return Ending::Kicked,
            _ = state.close_connections.cancelled() => return Ending::Kicked,
            item = outbound.recv() => {
                let Some(item) = item else { return Ending::Kicked };
                // A peer that stops reading blocks this write; being cut off
                // (its queue overflowed) or a shutdown must still end it.
                let written = tokio::select! {
                    biased;
                    _ = kick.cancelled() => return Ending::Kicked,
                    _ = state.close_connections.cancelled() => return Ending::Kicked,
                    written = tokio::time::timeout(
                        write_timeout,
                        Box::pin(write_queued(socket, session, item, &mut outbound)),
                    ) => written,
                };
                match written {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => return Ending::Transport(error),
                    Err(_) => return Ending::WriteTimeout,
                }
            }
            _ = sleep_until(read_resumes_at), if paused => {
                paused = false;
            }
            received = socket.recv(), if !paused => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ChatError::invalid("binary frames are not supported");
                        let frame = frames::failure(None, &error);
                        if let Err(error) = write_now(socket, &handle, write_timeout, frame).await {
                            return error.into();
                        }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => return Ending::ClientClosed,
                    Some(Ok(_)) => continue,
                    Some(Err(error)) => return Ending::Transport(error.to_string()),
                };
                // Boxed: an idle connection then holds no room for the
                // largest event handler's state.
                match Box::pin(handle_frame(socket, session, &text, socket_id, write_timeout)).await {
                    FrameOutcome::Continue => {}
                    FrameOutcome::Pong => {
                        awaiting_pong = false;
                        ping_at = Instant::now() + state.config.ping_interval;
                    }
                    FrameOutcome::Close => return Ending::ClientClosed,
                    FrameOutcome::WriteFailed(error) => return error.into(),
                }
                // A flood over budget is answered, but read no faster than
                // the refusals are worth: the rest waits in the peer's TCP
                // window instead of costing this gateway a core.
                if session.take_over_budget() {
                    paused = true;
                    read_resumes_at = Instant::now() + OVER_BUDGET_PAUSE;
                }
            }
            _ = sleep_until(ping_at) => {
                if awaiting_pong {
                    return Ending::PingTimeout;
                }
                let ping = frames::PING.to_owned();
                if let Err(error) = write_now(socket, &handle, write_timeout, ping).await {
                    return error.into();
                }
                awaiting_pong = true;
                ping_at = Instant::now() + state.config.ping_timeout;
            }
            _ = sleep_until(lifetime_at) => {
                let Some(lifetime_step) = lifetime_step else { continue };
                let frame = match lifetime_step {
                    LifetimeStep::Warn => {
                        session.lifetime.warned();
                        let expires_at = session.lifetime.expires_at();
                        frames::event(server_events::TOKEN_EXPIRING, &serde_json::json!({ "expiresAt": expires_at }))
                    }
                    LifetimeStep::Expire => frames::event(
                        server_events::ERROR,
                        &serde_json::json!({ "code": "token_expired", "message": "the token has expired; reconnect with a fresh one" }),
                    ),
                };
                if let Err(error) = write_now(socket, &handle, write_timeout, frame).await {
                    return error.into();
                }
                if lifetime_step == LifetimeStep::Expire {
                    return Ending::TokenExpired;
                }
            }
            _ = sleep_until(typing_deadline.unwrap_or(ping_at)), if typing_deadline.is_some() => {
                session.expire_typing(Instant::now()).await;
            }
        }
    }
}

enum FrameOutcome {
    Continue,
    Pong,
    Close,
    WriteFailed(WriteError),
}

async fn handle_frame(
    socket: &mut WebSocket,
    session: &mut SocketSession,
    text: &str,
    socket_id: &str,
    write_timeout: std::time::Duration,
) -> FrameOutcome {
    let replies = match packet::decode(text) {
        Ok(EnginePacket::Pong) => return FrameOutcome::Pong,
        Ok(EnginePacket::Close) => return FrameOutcome::Close,
        Ok(EnginePacket::Ping(data)) => vec![format!("3{data}")],
        Ok(EnginePacket::Noop) => Vec::new(),
        Ok(EnginePacket::Message(packet)) => match packet {
            SocketPacket::Event {
                namespace,
                ack_id,
                name,
                args,
            } if namespace == NAMESPACE => {
                let payload = args.into_iter().next().unwrap_or(Value::Null);
                session.handle_event(&name, payload, ack_id).await
            }
            SocketPacket::Disconnect { namespace } if namespace == NAMESPACE => {
                return FrameOutcome::Close
            }
            SocketPacket::Binary { namespace, ack_id } if namespace == NAMESPACE => {
                vec![frames::failure(
                    ack_id,
                    &ChatError::invalid("binary attachments are not supported"),
                )]
            }
            SocketPacket::Unparsable {
                namespace,
                ack_id,
                reason,
            } if namespace == NAMESPACE => {
                vec![frames::failure(
                    ack_id,
                    &ChatError::invalid(format!("malformed packet: {reason}")),
                )]
            }
            // Already connected: the answer is the one it got the first time.
            SocketPacket::Connect { namespace, .. }
            | SocketPacket::ConnectWithBadAuth { namespace }
                if namespace == NAMESPACE =>
            {
                vec![frames::connect_ok(NAMESPACE, socket_id)]
            }
            // Only `/chat` exists; every CONNECT gets an answer.
            SocketPacket::Connect { namespace, .. }
            | SocketPacket::ConnectWithBadAuth { namespace } => {
                vec![frames::connect_error(&namespace, "Invalid namespace", None)]
            }
            // Acks from the client and packets for other namespaces:
            // nothing to do.
            _ => Vec::new(),
        },
        Err(error) => vec![frames::failure(
            None,
            &ChatError::invalid(format!("malformed packet: {error}")),
        )],
    };
    for frame in replies {
        if let Err(error) = write_now(socket, &session.handle, write_timeout, frame).await {
            return FrameOutcome::WriteFailed(error);
        }
    }
    FrameOutcome::Continue
}

/// Writes one queued item and whatever else is already queued (up to a
/// batch), then flushes once.
async fn write_queued(
    socket: &mut WebSocket,
    session: &mut SocketSession,
    first: Outbound,
    outbound: &mut mpsc::Receiver<Outbound>,
) -> Result<(), String> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        // Written or not, the item leaves the queue's byte count now; what
        // is being written is bounded by the write deadline instead.
        session.handle.release(item.bytes());
        let frames_out = match item {
            Outbound::Frame(frame) => vec![frame],
            Outbound::SessionMessage(shared) => {
                session
                    .session_message(&shared.session_id, shared.seq, shared.frame.clone())
                    .await
            }
            Outbound::Resync => session.catch_up().await,
            Outbound::Revoked(session_id) => {
                session.forget_session(&session_id).await;
                Vec::new()
            }
        };
        for frame in frames_out {
            socket
                .feed(Message::Text(frame))
                .await
                .map_err(|e| e.to_string())?;
            written += 1;
        }
        if written < WRITE_BATCH {
            next = outbound.try_recv().ok();
        }
    }
    socket.flush().await.map_err(|e| e.to_string())
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A random identifier for sockets: 20 URL-safe characters.
pub fn random_id() -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    raw[..20].to_owned()
}
