//! One task per WebSocket connection: the Engine.IO handshake, the
//! namespace CONNECT (decided by the application), then a single loop that
//! reads client frames, writes queued items, pings, and runs the
//! application's timer. Nothing a client sends can end the task other than
//! by closing its own connection; bad packets are answered with errors.

use std::sync::Arc;
use std::time::Duration;

use chat_shared::protocol::{frames, NAMESPACE};
use chat_shared::ChatError;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;

use super::application::{Application, Auth, Connection, Ending, Refusal};
use super::deflate_upgrade::WebSocket;
use super::packet::{self, EnginePacket, SocketPacket};
use super::queue::{OutboundQueue, QueueItem};
use crate::metrics::{Metrics, Rejection};

/// How long a client may take to CONNECT to the namespace.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);
/// How long the closing handshake may take before the connection is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a socket's next frame waits after one of its events went over
/// its budget: a flooder gets at most about 50 refusals a second.
const OVER_BUDGET_PAUSE: Duration = Duration::from_millis(20);
/// Most queued frames written before flushing.
const WRITE_BATCH: usize = 64;

/// What every connection of a gateway shares at the transport level.
pub struct Transport {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// How long one write may take before the peer counts as not reading.
    pub write_timeout: Duration,
    /// The largest frame a client may send (announced in the handshake).
    pub max_payload: usize,
    /// permessage-deflate, when on: outgoing payloads of at least this
    /// many bytes are compressed for clients that negotiated it.
    pub compression_min_bytes: Option<usize>,
    pub metrics: Arc<Metrics>,
    /// Cancelled to close every connection.
    pub close_connections: CancellationToken,
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
async fn write_now<T>(
    socket: &mut WebSocket,
    queue: &OutboundQueue<T>,
    write_timeout: Duration,
    text: String,
) -> Result<(), WriteError> {
    let bytes = text.len();
    if !queue.reserve(bytes) {
        return Err(WriteError::QueueFull);
    }
    let written =
        tokio::time::timeout(write_timeout, socket.send(Message::Text(text.into()))).await;
    queue.release(bytes);
    match written {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(WriteError::Transport(error.to_string())),
        Err(_) => Err(WriteError::Timeout),
    }
}

/// A frame written before the socket has a queue, bounded by the deadline.
async fn write_unqueued(socket: &mut WebSocket, write_timeout: Duration, text: String) -> bool {
    let sent = tokio::time::timeout(write_timeout, socket.send(Message::Text(text.into()))).await;
    matches!(sent, Ok(Ok(())))
}

pub async fn serve<A: Application>(mut socket: WebSocket, app: Arc<A>, transport: Arc<Transport>) {
    // The steps that run once (the handshake, the close) are boxed: the
    // task of an idle connection then holds only the state of its loop.
    let Some((mut connection, outbound, socket_id)) =
        Box::pin(handshake(&mut socket, &*app, &transport)).await
    else {
        let _ = tokio::time::timeout(CLOSE_GRACE, socket.close(None)).await;
        return;
    };
    drop(app);
    let ending = run_connected(
        &mut socket,
        &transport,
        &mut connection,
        outbound,
        &socket_id,
    )
    .await;
    tracing::debug!(sid = %socket_id, ?ending, "socket closed");
    match ending {
        Ending::WriteTimeout => transport.metrics.slow_consumer_drops.inc(),
        Ending::QueueFull => connection.queue().cut_off(&transport.metrics),
        _ => {}
    }
    let reason = match ending {
        Ending::Kicked => Some("going away"),
        Ending::Closed(reason) => Some(reason),
        _ => None,
    };
    Box::pin(connection.close(&ending)).await;
    // The goodbye is bounded: a peer that stopped reading gets its TCP
    // connection dropped instead.
    let goodbye = async {
        // A normal close: socket.io clients treat it as a lost transport
        // and reconnect (to any pod, with a fresh token when `auth` is a
        // function), then rejoin with lastSeq.
        if let Some(reason) = reason {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: Utf8Bytes::from_static(reason),
                })))
                .await;
        }
        let _ = socket.close(None).await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, goodbye).await;
}

/// The Engine.IO open, the namespace CONNECT and the application's
/// `open`: the connection, its queue and its socket id, or None when the
/// client went away or was refused (and told so).
async fn handshake<A: Application>(
    socket: &mut WebSocket,
    app: &A,
    transport: &Transport,
) -> Option<(A::Connection, mpsc::Receiver<A::Item>, String)> {
    let engine_sid = random_id();
    let open = frames::open(
        &engine_sid,
        millis(transport.ping_interval),
        millis(transport.ping_timeout),
        transport.max_payload,
    );
    if !write_unqueued(socket, transport.write_timeout, open).await {
        return None;
    }
    let admission = await_namespace_connect(socket, app, transport).await?;
    let socket_id = random_id();
    match app.open(admission, socket_id.clone()).await {
        Ok((connection, outbound)) => Some((connection, outbound, socket_id)),
        Err(refusal) => {
            let frame = frames::connect_error(NAMESPACE, refusal.message, Some(refusal.code));
            let _ = write_unqueued(socket, transport.write_timeout, frame).await;
            None
        }
    }
}

/// Waits for a CONNECT to the namespace the application admits; answers
/// every other attempt with CONNECT_ERROR. None when the client goes away
/// or times out.
async fn await_namespace_connect<A: Application>(
    socket: &mut WebSocket,
    app: &A,
    transport: &Transport,
) -> Option<A::Admission> {
    let deadline =
        Instant::now() + CONNECT_TIMEOUT.min(transport.ping_interval + transport.ping_timeout);
    loop {
        let received = tokio::select! {
            _ = sleep_until(deadline) => return None,
            _ = transport.close_connections.cancelled() => return None,
            received = socket.next() => received,
        };
        let text = match received {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => continue,
        };
        let auth = match packet::decode(&text) {
            Ok(EnginePacket::Message(SocketPacket::Connect { namespace, auth }))
                if namespace == NAMESPACE =>
            {
                Ok(auth)
            }
            Ok(EnginePacket::Message(SocketPacket::ConnectWithBadAuth { namespace }))
                if namespace == NAMESPACE =>
            {
                Err(())
            }
            Ok(EnginePacket::Message(
                SocketPacket::Connect { namespace, .. }
                | SocketPacket::ConnectWithBadAuth { namespace },
            )) => {
                transport.metrics.rejected(Rejection::BadNamespace).inc();
                let refused = frames::connect_error(&namespace, "Invalid namespace", None);
                // A client that floods refusals and never reads is dropped.
                if !write_unqueued(socket, transport.write_timeout, refused).await {
                    return None;
                }
                continue;
            }
            Ok(EnginePacket::Close) => return None,
            Ok(EnginePacket::Ping(data)) => {
                if !write_unqueued(socket, transport.write_timeout, format!("3{data}")).await {
                    return None;
                }
                continue;
            }
            _ => continue,
        };
        let decided = match &auth {
            Ok(auth) => app.admit(Auth::Given(auth.as_ref())),
            Err(()) => app.admit(Auth::Unparsable),
        };
        let Refusal { message, code } = match decided {
            Ok(admission) => return Some(admission),
            Err(refusal) => refusal,
        };
        let refused = frames::connect_error(NAMESPACE, message, Some(code));
        if !write_unqueued(socket, transport.write_timeout, refused).await {
            return None;
        }
    }
}

async fn run_connected<C: Connection>(
    socket: &mut WebSocket,
    transport: &Transport,
    connection: &mut C,
    mut outbound: mpsc::Receiver<C::Item>,
    socket_id: &str,
) -> Ending {
    let write_timeout = transport.write_timeout;
    let greeting =
        std::iter::once(frames::connect_ok(NAMESPACE, socket_id)).chain(connection.greeting());
    for frame in greeting {
        if let Err(error) = write_now(socket, connection.queue(), write_timeout, frame).await {
            return error.into();
        }
    }
    let kick = connection.queue().kick.clone();
    let mut paused = false;
    let mut read_resumes_at = Instant::now();
    let mut ping_at = Instant::now() + transport.ping_interval;
    let mut awaiting_pong = false;
    loop {
        let timer_at = connection.next_timer();
        tokio::select! {
            biased;
            _ = kick.cancelled() => return Ending::Kicked,
            _ = transport.close_connections.cancelled() => return Ending::Kicked,
            item = outbound.recv() => {
                let Some(item) = item else { return Ending::Kicked };
                // A peer that stops reading blocks this write; being cut off
                // (its queue overflowed) or a shutdown must still end it.
                let written = tokio::select! {
                    biased;
                    _ = kick.cancelled() => return Ending::Kicked,
                    _ = transport.close_connections.cancelled() => return Ending::Kicked,
                    written = tokio::time::timeout(
                        write_timeout,
                        Box::pin(write_queued(socket, connection, item, &mut outbound)),
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
            received = socket.next(), if !paused => {
                let text = match received {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ChatError::invalid("binary frames are not supported");
                        let frame = frames::failure(None, &error);
                        if let Err(error) = write_now(socket, connection.queue(), write_timeout, frame).await {
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
                match Box::pin(handle_frame(socket, connection, &text, socket_id, write_timeout)).await {
                    FrameOutcome::Continue => {}
                    FrameOutcome::Pong => {
                        awaiting_pong = false;
                        ping_at = Instant::now() + transport.ping_interval;
                    }
                    FrameOutcome::Close => return Ending::ClientClosed,
                    FrameOutcome::WriteFailed(error) => return error.into(),
                }
                // A flood over budget is answered, but read no faster than
                // the refusals are worth: the rest waits in the peer's TCP
                // window instead of costing this gateway a core.
                if connection.take_over_budget() {
                    paused = true;
                    read_resumes_at = Instant::now() + OVER_BUDGET_PAUSE;
                }
            }
            _ = sleep_until(ping_at) => {
                if awaiting_pong {
                    return Ending::PingTimeout;
                }
                let ping = frames::PING.to_owned();
                if let Err(error) = write_now(socket, connection.queue(), write_timeout, ping).await {
                    return error.into();
                }
                awaiting_pong = true;
                ping_at = Instant::now() + transport.ping_timeout;
            }
            _ = sleep_until(timer_at) => {
                // Boxed, like a frame's handling: rare, and its state
                // should not make every idle connection larger.
                let outcome = Box::pin(connection.on_timer(Instant::now())).await;
                for frame in outcome.frames {
                    if let Err(error) = write_now(socket, connection.queue(), write_timeout, frame).await {
                        return error.into();
                    }
                }
                if let Some(reason) = outcome.close {
                    return Ending::Closed(reason);
                }
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

async fn handle_frame<C: Connection>(
    socket: &mut WebSocket,
    connection: &mut C,
    text: &str,
    socket_id: &str,
    write_timeout: Duration,
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
                connection.on_event(&name, payload, ack_id).await
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
        if let Err(error) = write_now(socket, connection.queue(), write_timeout, frame).await {
            return FrameOutcome::WriteFailed(error);
        }
    }
    FrameOutcome::Continue
}

/// Writes one queued item and whatever else is already queued (up to a
/// batch), then flushes once.
async fn write_queued<C: Connection>(
    socket: &mut WebSocket,
    connection: &mut C,
    first: C::Item,
    outbound: &mut mpsc::Receiver<C::Item>,
) -> Result<(), String> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(item) = next.take() {
        // Written or not, the item leaves the queue's byte count now; what
        // is being written is bounded by the write deadline instead.
        connection.queue().release(item.bytes());
        for frame in connection.render(item).await {
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

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A random identifier for sockets: 20 URL-safe characters.
pub fn random_id() -> String {
    let raw = uuid::Uuid::new_v4().simple().to_string();
    raw[..20].to_owned()
}
