//! Helpers shared by the standalone integration tests: a server on a free
//! port over a temporary data directory, token minting, a small HTTP/1.1
//! client for the REST API, and a minimal Socket.IO v5 client over a raw
//! WebSocket that exposes every frame the server writes.
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chat_shared::auth::{Identity, TokenMinter};
use chat_shared::backplane::Backplane;
use chat_shared::config::Env;
use chat_shared::protocol::Role;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support_chat::{RunningChat, StandaloneConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// The HS256 secret every test server verifies tokens with.
pub const SECRET: &str = "standalone-integration-secret-0123456789";
/// The default bound on any single wait.
pub const WAIT: Duration = Duration::from_secs(10);
/// The largest Engine.IO frame the server accepts.
pub const MAX_PAYLOAD: usize = 64 * 1024;

// ------------------------------------------------------------------ server

/// A standalone chat on 127.0.0.1 and a free port, over its own data
/// directory, which outlives restarts.
pub struct TestServer {
    pub addr: SocketAddr,
    pub admin_addr: Option<SocketAddr>,
    running: Option<RunningChat>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    /// The backplane restarts keep, when the test gave one.
    backplane: Option<Arc<dyn Backplane>>,
}

impl TestServer {
    /// Starts a server; `extra_env` adds to or overrides the defaults
    /// (`PORT=0`, `HOST=127.0.0.1`, `JWT_SECRET`, `RATE_LIMIT_PER_SEC=0`, a
    /// temporary `CHAT_DATA_DIR`, and a `WEB_DIR` that does not exist).
    pub async fn start(extra_env: &[(&str, &str)]) -> TestServer {
        TestServer::start_over(extra_env, None).await
    }

    /// `start` over the given in-process backplane instead of a new one.
    pub async fn start_over(
        extra_env: &[(&str, &str)],
        backplane: Option<Arc<dyn Backplane>>,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary data directory");
        let data = dir.path().to_string_lossy().into_owned();
        let web = dir.path().join("no-web-ui").to_string_lossy().into_owned();
        let mut env: Vec<(String, String)> = [
            ("PORT", "0"),
            ("HOST", "127.0.0.1"),
            ("JWT_SECRET", SECRET),
            ("RATE_LIMIT_PER_SEC", "0"),
            ("CHAT_DATA_DIR", data.as_str()),
            ("WEB_DIR", web.as_str()),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (key, value) in extra_env {
            env.retain(|(k, _)| k != key);
            env.push(((*key).to_owned(), (*value).to_owned()));
        }
        let running = launch(&env, backplane.clone()).await;
        TestServer {
            addr: running.addr,
            admin_addr: running.admin_addr,
            running: Some(running),
            env,
            dir,
            backplane,
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// Stops the server (if running) and returns how long `stop()` took.
    pub async fn stop(&mut self) -> Duration {
        let Some(running) = self.running.take() else {
            return Duration::ZERO;
        };
        let started = Instant::now();
        timeout(Duration::from_secs(30), running.stop())
            .await
            .expect("the server stops within 30 s");
        started.elapsed()
    }

    /// Stops and starts again on the same data directory (on a new port).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = launch(&self.env, self.backplane.clone()).await;
        self.addr = running.addr;
        self.admin_addr = running.admin_addr;
        self.running = Some(running);
    }

    pub fn ws_url(&self) -> String {
        ws_url(self.addr)
    }

    /// A Socket.IO client connected to `/chat` with `token`.
    pub async fn connect(&self, token: &str) -> SioClient {
        SioClient::connect(self.addr, token).await
    }

    /// A REST call on the public port; see [`rest`].
    pub async fn rest(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        rest(self.addr, method, path, token, body).await
    }

    /// `POST /api/chat/sessions` as a customer; panics unless it is 201.
    pub async fn create_session(&self, customer: &str, body: Value) -> Value {
        let (status, session) = self
            .rest("POST", "/api/chat/sessions", Some(customer), Some(body))
            .await;
        assert_eq!(status, 201, "create session: {session}");
        session
    }

    /// `POST /api/chat/sessions/{id}/assign` as an agent; panics unless 200.
    /// Posts `count` messages to the session over REST, the `n`th (from 1)
    /// with `content(n)`, each acknowledged with 201.
    pub async fn post_messages(
        &self,
        token: &str,
        session_id: &str,
        count: usize,
        content: impl Fn(usize) -> String,
    ) {
        let path = format!("/api/chat/sessions/{session_id}/messages");
        for n in 1..=count {
            let message = json!({ "content": content(n), "clientMsgId": format!("rest-{n}") });
            let (status, body) = self.rest("POST", &path, Some(token), Some(message)).await;
            assert_eq!(status, 201, "message {n}: {body}");
        }
    }

    pub async fn assign(&self, agent: &str, session_id: &str) -> Value {
        let path = format!("/api/chat/sessions/{session_id}/assign");
        let (status, session) = self.rest("POST", &path, Some(agent), Some(json!({}))).await;
        assert_eq!(status, 200, "assign: {session}");
        session
    }

    /// `GET /api/chat/sessions/{id}`; panics unless 200.
    pub async fn session(&self, token: &str, session_id: &str) -> Value {
        let (status, session) = self
            .rest(
                "GET",
                &format!("/api/chat/sessions/{session_id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, 200, "get session: {session}");
        session
    }

    /// A session's whole history, paged with `afterSeq`.
    pub async fn history(&self, token: &str, session_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let path =
                format!("/api/chat/sessions/{session_id}/messages?afterSeq={after}&limit=200");
            let (status, page) = self.rest("GET", &path, Some(token), None).await;
            assert_eq!(status, 200, "history: {page}");
            let items = page["items"].as_array().expect("items").clone();
            if let Some(last) = items.last() {
                after = last["seq"].as_i64().expect("seq");
            }
            all.extend(items);
            if page["hasMore"] != json!(true) {
                return all;
            }
        }
    }

    /// The server's Prometheus text, from the admin port if there is one.
    pub async fn metrics(&self) -> String {
        let addr = self.admin_addr.unwrap_or(self.addr);
        let response = http(addr, "GET", "/metrics", &[], &[]).await;
        assert_eq!(response.status, 200, "metrics");
        response.text()
    }

    /// One sample of the metrics, by its full name with labels.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics().await, series)
    }
}

async fn launch(env: &[(String, String)], backplane: Option<Arc<dyn Backplane>>) -> RunningChat {
    let env = Env::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let config = StandaloneConfig::from_env(&env).expect("valid test configuration");
    let started = match backplane {
        Some(backplane) => support_chat::start_over(config, backplane).await,
        None => support_chat::start(config).await,
    };
    started.expect("the server starts")
}

/// The value of `series` (name and labels exactly as rendered).
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse::<f64>().expect("numeric sample"))
        })
        .unwrap_or_else(|| panic!("no series {series} in metrics:\n{text}"))
}

// ------------------------------------------------------------------ tokens

fn identity(user: &str, role: &str, pools: &[&str]) -> Identity {
    Identity {
        user_id: user.to_owned(),
        name: format!("{user} name"),
        role: Role::parse(role).expect("customer, agent or admin"),
        pools: pools.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// A token valid for an hour.
pub fn token(user: &str, role: &str, pools: &[&str]) -> String {
    token_with_ttl(user, role, pools, 3600)
}

/// A token expiring `ttl_seconds` from now (negative: already expired).
pub fn token_with_ttl(user: &str, role: &str, pools: &[&str], ttl_seconds: i64) -> String {
    token_signed_with(SECRET, user, role, pools, ttl_seconds)
}

pub fn token_signed_with(
    secret: &str,
    user: &str,
    role: &str,
    pools: &[&str],
    ttl_seconds: i64,
) -> String {
    TokenMinter::new(secret)
        .mint(&identity(user, role, pools), ttl_seconds)
        .expect("token minted")
}

// ------------------------------------------------------------------ HTTP

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; reads the response to
/// the end of the connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect for HTTP");
        let mut request =
            format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH") {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        // A server may answer (413) before reading the whole body; what
        // matters is the answer, so a failed write is not fatal here.
        let _ = stream.write_all(&bytes).await;
        let mut raw = Vec::new();
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
                Err(error) if raw.is_empty() => panic!("{method} {path}: no response: {error}"),
                Err(_) => break,
            }
        }
        parse_response(&raw)
    };
    timeout(WAIT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no response within {WAIT:?}"))
}

fn parse_response(raw: &[u8]) -> HttpResponse {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "incomplete HTTP response: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("chunk size");
        data = &data[end + 2..];
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
    out
}

/// A JSON REST call: `Authorization: Bearer <token>` when given, a JSON
/// body when given; returns the status and the JSON answer (`null` when the
/// body is empty or not JSON).
pub async fn rest(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let authorization = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(value) = &authorization {
        headers.push(("Authorization", value.as_str()));
    }
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    if !payload.is_empty() {
        headers.push(("Content-Type", "application/json"));
    }
    let response = http(addr, method, path, &headers, payload.as_bytes()).await;
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, value)
}

// ------------------------------------------------------------------ Socket.IO

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
    next_ack: u64,
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
            let _ = deliver.send(Received {
                frame: Frame::Closed(close_code),
                raw: String::new(),
                at: Instant::now(),
            });
        });
        let mut client = SioClient {
            out,
            incoming,
            backlog: VecDeque::new(),
            next_ack: 0,
            open: Value::Null,
            connected: Value::Null,
            tasks: vec![reader, writer],
        };
        let first = client
            .next_frame(WAIT)
            .await
            .expect("the Engine.IO OPEN packet");
        match first.frame {
            Frame::Open(handshake) => client.open = handshake,
            other => panic!("expected OPEN, got {other:?} ({})", first.raw),
        }
        client
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
        let id = self.next_ack;
        self.next_ack += 1;
        self.send_raw(format!("42/chat,{id}{}", json!([event, payload])));
        id
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

    /// Discards kept frames matching `predicate`.
    pub fn forget(&mut self, predicate: impl Fn(&Frame) -> bool) {
        self.backlog.retain(|r| !predicate(&r.frame));
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
