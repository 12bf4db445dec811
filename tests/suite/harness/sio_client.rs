//! The Socket.IO v5 client of the tests, over a raw WebSocket. It exposes
//! every frame the server writes, so that tests can assert on the wire
//! itself: a reader task decodes frames into a channel (answering pings
//! unless told not to), and frames a wait skips are kept for later waits.
//! For traffic, an emit can also hand its ack to a receiver of its own
//! ([`SioClient::call`]), so that one task keeps many sends in flight while
//! it reads the events the server pushes ([`SioClient::recv_event`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

use super::WAIT;

/// The largest Engine.IO frame the server accepts.
pub const MAX_PAYLOAD: usize = 64 * 1024;

pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
}

/// Opens a WebSocket to `url` (on `addr`); `recv_buffer` sets the client's
/// TCP receive buffer before connecting.
pub async fn raw_websocket(
    addr: SocketAddr,
    url: &str,
    recv_buffer: Option<u32>,
) -> WebSocketStream<TcpStream> {
    let socket = TcpSocket::new_v4().expect("TCP socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    let stream = timeout(WAIT, socket.connect(addr))
        .await
        .expect("TCP connect in time")
        .expect("TCP connect");
    let (ws, _) = timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("WebSocket handshake in time")
        .expect("WebSocket handshake");
    ws
}

/// A frame the server wrote, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// Engine.IO OPEN: the handshake object.
    Open(Value),
    /// Engine.IO PING.
    Ping,
    /// Engine.IO PONG with its data.
    Pong(String),
    /// Socket.IO CONNECT answer.
    ConnectOk { namespace: String, payload: Value },
    /// Socket.IO CONNECT_ERROR.
    ConnectError { namespace: String, payload: Value },
    /// Socket.IO DISCONNECT from the server.
    Disconnect { namespace: String },
    /// Socket.IO EVENT: name and first argument.
    Event { name: String, payload: Value },
    /// Socket.IO ACK: id and first argument.
    Ack { id: u64, payload: Value },
    /// A text frame this client does not understand.
    Other,
    /// A binary WebSocket frame.
    Binary(Vec<u8>),
    /// The connection ended; the close code if the server sent one.
    Closed(Option<u16>),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub frame: Frame,
    /// The text as received (empty for non-text frames).
    pub raw: String,
    pub at: Instant,
}

/// Decodes one server text frame.
pub fn decode_frame(text: &str) -> Frame {
    let Some(kind) = text.chars().next() else {
        return Frame::Other;
    };
    let rest = &text[kind.len_utf8()..];
    match kind {
        '0' => serde_json::from_str(rest)
            .map(Frame::Open)
            .unwrap_or(Frame::Other),
        '2' => Frame::Ping,
        '3' => Frame::Pong(rest.to_owned()),
        '4' => decode_socket_frame(rest),
        _ => Frame::Other,
    }
}

fn decode_socket_frame(text: &str) -> Frame {
    let Some(kind) = text.chars().next() else {
        return Frame::Other;
    };
    let rest = &text[kind.len_utf8()..];
    let (namespace, rest) = if rest.starts_with('/') {
        match rest.find(',') {
            Some(comma) => (rest[..comma].to_owned(), &rest[comma + 1..]),
            None => (rest.to_owned(), ""),
        }
    } else {
        ("/".to_owned(), rest)
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let ack_id = rest[..digits].parse::<u64>().ok();
    let data = &rest[digits..];
    let json = || serde_json::from_str::<Value>(data).ok();
    let first_arg = |value: Value| match value {
        Value::Array(mut items) if !items.is_empty() => Some(items.remove(0)),
        Value::Array(_) => Some(Value::Null),
        _ => None,
    };
    match kind {
        '0' => json().map_or(Frame::Other, |payload| Frame::ConnectOk {
            namespace,
            payload,
        }),
        '1' => Frame::Disconnect { namespace },
        '2' => match json() {
            Some(Value::Array(mut items)) if items.first().is_some_and(Value::is_string) => {
                let name = items.remove(0).as_str().unwrap_or_default().to_owned();
                let payload = if items.is_empty() {
                    Value::Null
                } else {
                    items.remove(0)
                };
                Frame::Event { name, payload }
            }
            _ => Frame::Other,
        },
        '3' => match (ack_id, json().and_then(first_arg)) {
            (Some(id), Some(payload)) => Frame::Ack { id, payload },
            _ => Frame::Other,
        },
        '4' => json().map_or(Frame::Other, |payload| Frame::ConnectError {
            namespace,
            payload,
        }),
        _ => Frame::Other,
    }
}

/// How a [`SioClient`] behaves.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// Answer the server's Engine.IO pings with pongs.
    pub answer_pings: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions { answer_pings: true }
    }
}

/// A minimal Socket.IO client: a reader task decodes every frame into a
/// channel (answering pings unless told not to), a writer task sends what
/// the test queues. Frames a wait skips are kept for later waits.
pub struct SioClient {
    out: mpsc::UnboundedSender<WsMessage>,
    incoming: mpsc::UnboundedReceiver<Received>,
    backlog: VecDeque<Received>,
    next_ack: AtomicU64,
    /// Acks that go straight to a waiting [`SioClient::call`] rather than
    /// into the stream of frames.
    calls: PendingCalls,
    /// The Engine.IO handshake object.
    pub open: Value,
    /// The payload of `connected`, once connected to `/chat`.
    pub connected: Value,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for SioClient {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SioClient {
    /// Opens the WebSocket and reads the Engine.IO OPEN packet.
    pub async fn open(addr: SocketAddr, options: ClientOptions) -> SioClient {
        let ws = raw_websocket(addr, &ws_url(addr), None).await;
        SioClient::over(ws, options).await
    }

    /// Wraps an open WebSocket and reads the Engine.IO OPEN packet.
    pub async fn over(ws: WebSocketStream<TcpStream>, options: ClientOptions) -> SioClient {
        let mut client = SioClient::spawn(ws, options);
        if let Err(error) = client.read_open().await {
            panic!("{error}");
        }
        client
    }

    /// Starts the reader and writer tasks over an open WebSocket.
    fn spawn(ws: WebSocketStream<TcpStream>, options: ClientOptions) -> SioClient {
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<WsMessage>();
        let (deliver, incoming) = mpsc::unbounded_channel::<Received>();
        let writer = tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if sink.send(message).await.is_err() {
                    return;
                }
            }
        });
        let pong = out.clone();
        let calls = PendingCalls::default();
        let reader_calls = calls.clone();
        let reader = tokio::spawn(async move {
            let mut close_code = None;
            while let Some(item) = stream.next().await {
                let at = Instant::now();
                let received = match item {
                    Ok(WsMessage::Text(text)) => {
                        let frame = decode_frame(text.as_str());
                        if frame == Frame::Ping && options.answer_pings {
                            let _ = pong.send(WsMessage::text("3"));
                        }
                        if let Frame::Ack { id, payload } = &frame {
                            let waiter = reader_calls.lock().remove(id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(payload.clone());
                                continue;
                            }
                        }
                        Received {
                            frame,
                            raw: text.as_str().to_owned(),
                            at,
                        }
                    }
                    Ok(WsMessage::Binary(bytes)) => Received {
                        frame: Frame::Binary(bytes.to_vec()),
                        raw: String::new(),
                        at,
                    },
                    Ok(WsMessage::Close(frame)) => {
                        close_code = frame.map(|f| u16::from(f.code));
                        continue;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                };
                if deliver.send(received).is_err() {
                    return;
                }
            }
            // Waiting calls fail at once; the frames end after what was
            // already received.
            reader_calls.lock().clear();
            let _ = deliver.send(Received {
                frame: Frame::Closed(close_code),
                raw: String::new(),
                at: Instant::now(),
            });
        });
        SioClient {
            out,
            incoming,
            backlog: VecDeque::new(),
            next_ack: AtomicU64::new(0),
            calls,
            open: Value::Null,
            connected: Value::Null,
            tasks: vec![reader, writer],
        }
    }

    /// Reads the Engine.IO OPEN packet.
    async fn read_open(&mut self) -> Result<(), String> {
        let first = self
            .next_frame(WAIT)
            .await
            .ok_or("no Engine.IO OPEN packet")?;
        match first.frame {
            Frame::Open(handshake) => {
                self.open = handshake;
                Ok(())
            }
            other => Err(format!("expected OPEN, got {other:?} ({})", first.raw)),
        }
    }

    /// Connects to `/chat` on the gateway at `addr` with `token` like
    /// [`SioClient::connect`], for a caller that handles failure (a
    /// gateway that is down, draining or refuses): Err when it fails or
    /// takes longer than `wait`.
    pub async fn try_connect(
        addr: SocketAddr,
        token: &str,
        wait: Duration,
    ) -> Result<Self, String> {
        let attempt = async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| format!("TCP connect: {e}"))?;
            let (ws, _) = tokio_tungstenite::client_async(ws_url(addr), stream)
                .await
                .map_err(|e| format!("WebSocket handshake: {e}"))?;
            let mut client = SioClient::spawn(ws, ClientOptions::default());
            client.read_open().await?;
            client.send_raw(format!("40/chat,{}", json!({ "token": token })));
            let answer = client
                .try_next_matching(WAIT, |f| {
                    matches!(f, Frame::ConnectOk { .. } | Frame::ConnectError { .. })
                })
                .await
                .ok_or("the connection ended during CONNECT")?;
            if let Frame::ConnectError { payload, .. } = answer.frame {
                return Err(format!("CONNECT_ERROR {payload}"));
            }
            client
                .try_next_matching(
                    WAIT,
                    |f| matches!(f, Frame::Event { name, .. } if name == "connected"),
                )
                .await
                .ok_or("no connected event")?;
            Ok(client)
        };
        timeout(wait, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("no connection within {wait:?}")))
            .map_err(|e| format!("connecting to {addr}: {e}"))
    }

    /// Opens a connection and connects to `/chat` with `token`; panics if
    /// the server refuses.
    pub async fn connect(addr: SocketAddr, token: &str) -> SioClient {
        SioClient::connect_with(addr, token, ClientOptions::default()).await
    }

    pub async fn connect_with(addr: SocketAddr, token: &str, options: ClientOptions) -> SioClient {
        let mut client = SioClient::open(addr, options).await;
        if let Err(error) = client.join_namespace(Some(json!({ "token": token }))).await {
            panic!("CONNECT refused: {error}");
        }
        client
    }

    /// Sends CONNECT to `/chat` with `auth`; Ok after `40/chat` and the
    /// `connected` event, Err with the CONNECT_ERROR payload.
    pub async fn join_namespace(&mut self, auth: Option<Value>) -> Result<Value, Value> {
        let frame = match auth {
            Some(auth) => format!("40/chat,{auth}"),
            None => "40/chat,".to_owned(),
        };
        self.send_raw(frame);
        let answer = self
            .next_matching(WAIT, |f| {
                matches!(f, Frame::ConnectOk { .. } | Frame::ConnectError { .. })
            })
            .await;
        match answer.frame {
            Frame::ConnectOk { namespace, payload } => {
                assert_eq!(
                    namespace, "/chat",
                    "CONNECT answered on another namespace: {}",
                    answer.raw
                );
                assert!(
                    payload["sid"].is_string(),
                    "CONNECT answer without sid: {}",
                    answer.raw
                );
                self.connected = self.next_event("connected", |_| true, WAIT).await;
                Ok(self.connected.clone())
            }
            Frame::ConnectError { payload, .. } => Err(payload),
            _ => unreachable!(),
        }
    }

    /// Queues a text frame as is.
    pub fn send_raw(&self, text: impl Into<String>) {
        let _ = self.out.send(WsMessage::text(text.into()));
    }

    /// Queues any WebSocket message.
    pub fn send_ws(&self, message: WsMessage) {
        let _ = self.out.send(message);
    }

    /// Closes the WebSocket politely.
    pub fn close(&self) {
        let _ = self.out.send(WsMessage::Close(None));
    }

    /// Emits an event without an ack callback.
    pub fn emit(&self, event: &str, payload: Value) {
        self.send_raw(format!("42/chat,{}", json!([event, payload])));
    }

    /// Emits an event with the next ack id and returns that id.
    pub fn emit_ack(&mut self, event: &str, payload: Value) -> u64 {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        self.send_raw(format!("42/chat,{id}{}", json!([event, payload])));
        id
    }

    /// Emits an event whose ack goes to the returned receiver instead of
    /// the stream of frames, so that many can be in flight while the
    /// client's owner reads what the server pushes; the receiver fails when
    /// the connection ends first.
    pub fn call(&self, event: &str, payload: Value) -> oneshot::Receiver<Value> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.calls.lock().insert(id, tx);
        self.send_raw(format!("42/chat,{id}{}", json!([event, payload])));
        rx
    }

    /// [`SioClient::call`] and a wait of up to `wait` for its ack.
    pub async fn request(
        &self,
        event: &str,
        payload: Value,
        wait: Duration,
    ) -> Result<Value, AckError> {
        await_ack(self.call(event, payload), wait).await
    }

    /// The next event the server pushed (kept ones first), in arrival
    /// order; None once the connection has ended (or the server
    /// disconnected the namespace) and every earlier event was taken.
    pub async fn recv_event(&mut self) -> Option<(String, Value)> {
        loop {
            let received = match self.backlog.pop_front() {
                Some(kept) => kept,
                None => self.incoming.recv().await?,
            };
            match received.frame {
                Frame::Event { name, payload } => return Some((name, payload)),
                Frame::Closed(_) | Frame::Disconnect { .. } => return None,
                _ => {}
            }
        }
    }

    /// Emits an event and waits for its ack.
    pub async fn emit_with_ack(&mut self, event: &str, payload: Value) -> Value {
        let id = self.emit_ack(event, payload);
        self.ack(id, WAIT).await
    }

    /// Waits for the ack with `id`.
    pub async fn ack(&mut self, id: u64, wait: Duration) -> Value {
        let received = self
            .next_matching(
                wait,
                |f| matches!(f, Frame::Ack { id: got, .. } if *got == id),
            )
            .await;
        match received.frame {
            Frame::Ack { payload, .. } => payload,
            _ => unreachable!(),
        }
    }

    /// The next frame (kept ones first), or None after `wait`.
    pub async fn next_frame(&mut self, wait: Duration) -> Option<Received> {
        if let Some(kept) = self.backlog.pop_front() {
            return Some(kept);
        }
        match timeout(wait, self.incoming.recv()).await {
            Ok(Some(received)) => Some(received),
            Ok(None) | Err(_) => None,
        }
    }

    /// The next frame other than pings, or None after `wait`.
    pub async fn next_non_ping(&mut self, wait: Duration) -> Option<Received> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = self.next_frame(left).await?;
            if received.frame != Frame::Ping {
                return Some(received);
            }
        }
    }

    /// The first frame matching `predicate`, kept ones first; others are
    /// kept for later. Panics after `wait`.
    pub async fn next_matching(
        &mut self,
        wait: Duration,
        predicate: impl Fn(&Frame) -> bool,
    ) -> Received {
        self.try_next_matching(wait, predicate)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no matching frame within {wait:?}; kept: {:?}",
                    self.backlog_summary()
                )
            })
    }

    /// Like [`next_matching`](Self::next_matching), None after `wait`.
    pub async fn try_next_matching(
        &mut self,
        wait: Duration,
        predicate: impl Fn(&Frame) -> bool,
    ) -> Option<Received> {
        if let Some(index) = self.backlog.iter().position(|r| predicate(&r.frame)) {
            return self.backlog.remove(index);
        }
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let received = match timeout(left, self.incoming.recv()).await {
                Ok(Some(received)) => received,
                Ok(None) | Err(_) => return None,
            };
            if predicate(&received.frame) {
                return Some(received);
            }
            self.backlog.push_back(received);
        }
    }

    /// The payload of the first event `name` whose payload matches.
    pub async fn next_event(
        &mut self,
        name: &str,
        predicate: impl Fn(&Value) -> bool,
        wait: Duration,
    ) -> Value {
        let received = self
            .next_matching(wait, |f| matches!(f, Frame::Event { name: n, payload } if n == name && predicate(payload)))
            .await;
        match received.frame {
            Frame::Event { payload, .. } => payload,
            _ => unreachable!(),
        }
    }

    /// Waits for the end of the connection; its close code, if any.
    pub async fn closed(&mut self, wait: Duration) -> Option<u16> {
        let received = self
            .next_matching(wait, |f| matches!(f, Frame::Closed(_)))
            .await;
        match received.frame {
            Frame::Closed(code) => code,
            _ => unreachable!(),
        }
    }

    /// Whether an end of connection is among the frames received so far.
    pub fn has_closed(&mut self) -> bool {
        while let Ok(received) = self.incoming.try_recv() {
            self.backlog.push_back(received);
        }
        self.backlog
            .iter()
            .any(|r| matches!(r.frame, Frame::Closed(_)))
    }

    /// Takes every kept frame.
    pub fn drain_backlog(&mut self) -> Vec<Received> {
        self.backlog.drain(..).collect()
    }

    fn backlog_summary(&self) -> Vec<String> {
        self.backlog
            .iter()
            .rev()
            .take(10)
            .map(|r| short(&r.raw, &r.frame))
            .collect()
    }

    /// Joins a session; returns the ack (which must be ok).
    pub async fn join_session(&mut self, session_id: &str, last_seq: Option<i64>) -> Value {
        let mut payload = json!({ "sessionId": session_id });
        if let Some(last) = last_seq {
            payload["lastSeq"] = json!(last);
        }
        let ack = self.emit_with_ack("join-session", payload).await;
        assert_eq!(ack["ok"], json!(true), "join-session: {ack}");
        ack
    }

    /// Sends a message and returns the stored message from the ack.
    pub async fn send_message(
        &mut self,
        session_id: &str,
        content: &str,
        client_msg_id: &str,
    ) -> Value {
        let ack = self
            .emit_with_ack(
                "send-message",
                json!({ "sessionId": session_id, "content": content, "clientMsgId": client_msg_id }),
            )
            .await;
        assert_eq!(ack["ok"], json!(true), "send-message: {ack}");
        ack["message"].clone()
    }
}

fn short(raw: &str, frame: &Frame) -> String {
    if raw.is_empty() {
        format!("{frame:?}")
    } else {
        raw.chars().take(160).collect()
    }
}

/// The sequence numbers of a list of messages.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages
        .iter()
        .map(|m| m["seq"].as_i64().expect("seq"))
        .collect()
}

/// Whether `frame` is a `new-message` of `session_id`.
pub fn is_new_message(frame: &Frame, session_id: &str) -> bool {
    matches!(frame, Frame::Event { name, payload } if name == "new-message" && payload["sessionId"] == session_id)
}

/// Acks awaited by [`SioClient::call`], by id.
#[derive(Clone, Default)]
struct PendingCalls(Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>);

impl PendingCalls {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, oneshot::Sender<Value>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

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

/// Waits up to `wait` for an ack obtained from [`SioClient::call`].
pub async fn await_ack(ack: oneshot::Receiver<Value>, wait: Duration) -> Result<Value, AckError> {
    match timeout(wait, ack).await {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(_)) => Err(AckError::Closed),
        Err(_) => Err(AckError::Timeout),
    }
}
