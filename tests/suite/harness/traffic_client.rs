//! A Socket.IO v5 client built for traffic rather than for inspecting
//! single frames: a reader task answers pings, hands every acknowledgement
//! to the call waiting for it, and queues every event in arrival order, so
//! that one task can keep many sends in flight while it records what the
//! server pushes. When the connection ends, waiting calls fail at once and
//! the event queue ends, which is how its owner learns to reconnect.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Why an acknowledged emit brought no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The connection ended first.
    Closed,
    /// Nothing came within the wait.
    Timeout,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AckError::Closed => f.write_str("connection closed before the ack"),
            AckError::Timeout => f.write_str("no ack in time"),
        }
    }
}

type PendingAcks = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A Socket.IO client connected to the `/chat` namespace.
pub struct TrafficClient {
    out: mpsc::UnboundedSender<WsMessage>,
    acks: PendingAcks,
    next_ack: AtomicU64,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for TrafficClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TrafficClient {
    /// Opens a WebSocket to the gateway at `addr` and connects to `/chat`
    /// with `token`; Err when that fails or takes longer than `wait`.
    pub async fn connect(addr: SocketAddr, token: &str, wait: Duration) -> Result<Self, String> {
        timeout(wait, Self::connect_unbounded(addr, token))
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {wait:?}")))
            .map_err(|e| format!("connecting to {addr}: {e}"))
    }

    async fn connect_unbounded(addr: SocketAddr, token: &str) -> Result<Self, String> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<WsMessage>();
        let (deliver, events) = mpsc::unbounded_channel();
        let (connect_tx, connect_rx) = oneshot::channel::<Result<(), String>>();
        let acks: PendingAcks = Arc::default();

        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let reader_acks = acks.clone();
        let pong = out.clone();
        let reader = tokio::spawn(async move {
            let mut connect_tx = Some(connect_tx);
            while let Some(Ok(message)) = stream.next().await {
                let WsMessage::Text(text) = message else {
                    if matches!(message, WsMessage::Close(_)) {
                        break;
                    }
                    continue;
                };
                match decode(text.as_str()) {
                    Packet::Ping => {
                        let _ = pong.send(WsMessage::text("3"));
                    }
                    Packet::ConnectOk => {
                        if let Some(tx) = connect_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Packet::ConnectError(payload) => {
                        if let Some(tx) = connect_tx.take() {
                            let _ = tx.send(Err(format!("CONNECT_ERROR {payload}")));
                        }
                        break;
                    }
                    Packet::Event(name, payload) => {
                        let _ = deliver.send((name, payload));
                    }
                    Packet::Ack(id, payload) => {
                        let waiter = reader_acks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(payload);
                        }
                    }
                    Packet::Disconnect => break,
                    Packet::Other => {}
                }
            }
            // Waiting calls fail at once; the event queue ends after what
            // was already received.
            reader_acks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        });

        let client = TrafficClient {
            out,
            acks,
            next_ack: AtomicU64::new(0),
            events,
            tasks: [reader, writer],
        };
        client.send_raw(format!("40/chat,{}", json!({ "token": token })));
        match connect_rx.await {
            Ok(Ok(())) => Ok(client),
            Ok(Err(error)) => Err(error),
            Err(_) => Err("the connection ended during CONNECT".to_owned()),
        }
    }

    fn send_raw(&self, text: String) {
        let _ = self.out.send(WsMessage::text(text));
    }

    /// Emits `event` with an ack id; the receiver gets the ack's first
    /// argument, or fails when the connection ends first.
    pub fn emit_ack(&self, event: &str, payload: Value) -> oneshot::Receiver<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.acks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.send_raw(format!("42/chat,{id}{}", json!([event, payload])));
        rx
    }

    /// Emits `event` and waits up to `wait` for its ack.
    pub async fn request(
        &self,
        event: &str,
        payload: Value,
        wait: Duration,
    ) -> Result<Value, AckError> {
        await_ack(self.emit_ack(event, payload), wait).await
    }

    /// The next event the server pushed, in arrival order; None once the
    /// connection has ended and every earlier event was taken.
    pub async fn next_event(&mut self) -> Option<(String, Value)> {
        self.events.recv().await
    }

    /// Closes the connection the way a client going away does.
    pub fn close(&self) {
        let _ = self.out.send(WsMessage::Close(None));
    }
}

/// Waits up to `wait` for an ack obtained from [`TrafficClient::emit_ack`].
pub async fn await_ack(ack: oneshot::Receiver<Value>, wait: Duration) -> Result<Value, AckError> {
    match timeout(wait, ack).await {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(_)) => Err(AckError::Closed),
        Err(_) => Err(AckError::Timeout),
    }
}

/// A server frame, as far as these tests care.
enum Packet {
    Ping,
    ConnectOk,
    ConnectError(Value),
    Disconnect,
    Event(String, Value),
    Ack(u64, Value),
    Other,
}

/// Decodes an Engine.IO text frame and the Socket.IO packet inside it
/// (namespace `/chat` or the main one).
fn decode(text: &str) -> Packet {
    if text == "2" {
        return Packet::Ping;
    }
    let Some(rest) = text.strip_prefix('4') else {
        return Packet::Other;
    };
    let Some(kind) = rest.chars().next() else {
        return Packet::Other;
    };
    let rest = &rest[1..];
    let rest = match rest.strip_prefix('/') {
        Some(named) => named.split_once(',').map_or("", |(_, data)| data),
        None => rest,
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = rest[..digits].parse::<u64>().ok();
    let data: Value = serde_json::from_str(&rest[digits..]).unwrap_or(Value::Null);
    match (kind, data) {
        ('0', _) => Packet::ConnectOk,
        ('1', _) => Packet::Disconnect,
        ('4', payload) => Packet::ConnectError(payload),
        ('2', Value::Array(mut args)) if args.first().is_some_and(Value::is_string) => {
            let name = args.remove(0).as_str().unwrap_or_default().to_owned();
            let payload = if args.is_empty() {
                Value::Null
            } else {
                args.remove(0)
            };
            Packet::Event(name, payload)
        }
        ('3', Value::Array(mut args)) => match ack_id {
            Some(id) => Packet::Ack(
                id,
                if args.is_empty() {
                    Value::Null
                } else {
                    args.remove(0)
                },
            ),
            None => Packet::Other,
        },
        _ => Packet::Other,
    }
}
