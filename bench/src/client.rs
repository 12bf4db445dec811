//! A minimal Socket.IO v5 client over a raw WebSocket (Engine.IO v4), just
//! enough for benchmarking: connect to `/chat` with a token, emit events
//! with ack ids, and a reader task per socket that answers server pings and
//! turns the frames the bench cares about (acks and `new-message`) into
//! [`Incoming`] items stamped with their arrival time. Everything else the
//! server sends (pool broadcasts, stats) is read and dropped, so a socket
//! never falls behind.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<TcpStream>;
pub type WsSink = SplitSink<Ws, Message>;
pub type WsStream = SplitStream<Ws>;
/// The write half, shared by the reader (pongs) and whoever emits.
pub type SharedSink = Arc<Mutex<WsSink>>;

/// WebSocket read buffer per connection: frames here are small, and the
/// idle probe opens thousands of sockets.
const READ_BUFFER: usize = 4 * 1024;

/// A gateway's address, from `http://host:port` (or `host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .unwrap_or(url);
        if url.starts_with("https://") || url.starts_with("wss://") {
            return Err(format!(
                "{url}: TLS is not supported; point the bench at the plain port"
            ));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| format!("{url}: bad port {port:?}"))?;
                (host, port)
            }
            _ => return Err(format!("{url}: expected http://HOST:PORT")),
        };
        Ok(Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }

    /// `host:port`, with brackets around IPv6 literals.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}", self.authority())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    #[error("refused by the server: {0}")]
    Refused(String),
    #[error("the server closed the connection during the handshake")]
    Closed,
    #[error("no `connected` event within {0:?}")]
    Timeout(Duration),
}

impl ClientError {
    /// True when the failure is this process (or the system) running out of
    /// file descriptors or local ports, which a higher `ulimit -n` or fewer
    /// connections fixes.
    pub fn is_resource_exhaustion(&self) -> bool {
        let io = match self {
            ClientError::Connect { source, .. } => Some(source),
            ClientError::WebSocket(tungstenite::Error::Io(source)) => Some(source),
            _ => None,
        };
        // EMFILE, ENFILE, EADDRNOTAVAIL, and EADDRINUSE from binding a
        // source address whose ports are all taken.
        matches!(
            io.and_then(std::io::Error::raw_os_error),
            Some(24 | 23 | 99 | 98)
        )
    }
}

/// An authenticated socket, split for a reader task and a shared writer.
pub struct Socket {
    pub sink: SharedSink,
    pub stream: WsStream,
}

/// Opens a WebSocket to `/socket.io/`, CONNECTs to `/chat` with `token`,
/// and waits for the `connected` event.
pub async fn connect(
    endpoint: &Endpoint,
    token: &str,
    timeout: Duration,
) -> Result<Socket, ClientError> {
    connect_over(endpoint, token, timeout, TcpOptions::default()).await
}

/// [`connect`] from the local address `source` (port chosen by the
/// kernel): one source address has only about 28,000 ephemeral ports, so
/// runs of more sockets than that spread them over several loopback
/// addresses.
pub async fn connect_from(
    endpoint: &Endpoint,
    token: &str,
    timeout: Duration,
    source: IpAddr,
) -> Result<Socket, ClientError> {
    let options = TcpOptions {
        source: Some(source),
        ..TcpOptions::default()
    };
    connect_over(endpoint, token, timeout, options).await
}

/// [`connect`] over a TCP socket whose kernel receive buffer (`SO_RCVBUF`)
/// is set to `receive_buffer` bytes before connecting: a client that stops
/// reading then holds little of what the server sends it.
pub async fn connect_with_receive_buffer(
    endpoint: &Endpoint,
    token: &str,
    timeout: Duration,
    receive_buffer: u32,
) -> Result<Socket, ClientError> {
    let options = TcpOptions {
        receive_buffer: Some(receive_buffer),
        ..TcpOptions::default()
    };
    connect_over(endpoint, token, timeout, options).await
}

/// [`connect`] over a TCP socket set up as `options` say, within `timeout`.
async fn connect_over(
    endpoint: &Endpoint,
    token: &str,
    timeout: Duration,
    options: TcpOptions,
) -> Result<Socket, ClientError> {
    tokio::time::timeout(timeout, handshake(endpoint, token, options))
        .await
        .map_err(|_| ClientError::Timeout(timeout))?
}

/// How the TCP socket under a WebSocket is set up before it connects.
#[derive(Debug, Clone, Copy, Default)]
struct TcpOptions {
    receive_buffer: Option<u32>,
    source: Option<IpAddr>,
}

async fn open_tcp(addr: &str, options: TcpOptions) -> std::io::Result<TcpStream> {
    if options.receive_buffer.is_none() && options.source.is_none() {
        return TcpStream::connect(addr).await;
    }
    let target = tokio::net::lookup_host(addr).await?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
    })?;
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = options.receive_buffer {
        socket.set_recv_buffer_size(size)?;
    }
    if let Some(source) = options.source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(target).await
}

async fn handshake(
    endpoint: &Endpoint,
    token: &str,
    options: TcpOptions,
) -> Result<Socket, ClientError> {
    let addr = endpoint.authority();
    let tcp = open_tcp(&addr, options)
        .await
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    // Latency is what is measured: never hold small frames back.
    tcp.set_nodelay(true)
        .map_err(|source| ClientError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _response) =
        tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    let connect = format!("40/chat,{}", serde_json::json!({ "token": token }));
    let mut sent_connect = false;
    loop {
        let text = match ws.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(_))) | None => return Err(ClientError::Closed),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.into()),
        };
        let text = text.as_str();
        if text.starts_with('0') && !sent_connect {
            // Engine.IO open; the namespace CONNECT follows.
            ws.send(Message::text(connect.clone())).await?;
            sent_connect = true;
        } else if let Some(data) = text.strip_prefix('2') {
            ws.send(Message::text(format!("3{data}"))).await?;
        } else if let Some(error) = text.strip_prefix("44/chat,") {
            return Err(ClientError::Refused(error.to_owned()));
        } else if text.starts_with(r#"42/chat,["connected","#) {
            let (sink, stream) = ws.split();
            return Ok(Socket {
                sink: Arc::new(Mutex::new(sink)),
                stream,
            });
        }
        // `40/chat,{"sid":…}` and anything else: keep waiting.
    }
}

/// A Socket.IO EVENT frame, with an ack id when one is given:
/// `42/chat,7["name",payload]`.
pub fn event_frame(ack_id: Option<u64>, event: &str, payload: &serde_json::Value) -> String {
    let body = serde_json::json!([event, payload]);
    match ack_id {
        Some(id) => format!("42/chat,{id}{body}"),
        None => format!("42/chat,{body}"),
    }
}

/// Writes one frame through the shared sink.
pub async fn send_frame(sink: &SharedSink, frame: String) -> Result<(), tungstenite::Error> {
    sink.lock().await.send(Message::text(frame)).await
}

/// What a reader hands on, stamped with when it arrived.
#[derive(Debug)]
pub struct Received {
    /// The caller's label for the socket (customer or agent).
    pub tag: u8,
    pub at: Instant,
    pub item: Incoming,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Ack {
        id: u64,
        outcome: AckOutcome,
    },
    NewMessage(NewMessage),
    /// An ack or `new-message` frame that did not parse.
    Unparsable(String),
    /// The connection ended; the reader has stopped.
    Closed(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    /// `{ ok: true, ... }`, with the stored message's `seq` when it has one.
    Ok { seq: Option<i64> },
    /// `{ ok: false, error: { code } }`.
    Failed { code: String },
}

/// The fields of a `new-message` payload the bench checks.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    pub session_id: String,
    pub seq: i64,
    #[serde(default)]
    pub client_msg_id: Option<String>,
}

#[derive(Deserialize)]
struct AckBody {
    ok: bool,
    #[serde(default)]
    message: Option<SeqOnly>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: i64,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
}

/// How a reader treats one text frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Engine.IO ping: answer `3` with the same data.
    Ping(String),
    Item(Incoming),
    /// The server left the namespace.
    Disconnect,
    Ignored,
}

const NEW_MESSAGE_PREFIX: &str = r#"42/chat,["new-message","#;

pub fn parse_frame(text: &str) -> Parsed {
    if let Some(data) = text.strip_prefix('2') {
        return Parsed::Ping(data.to_owned());
    }
    if let Some(rest) = text.strip_prefix("43/chat,") {
        return Parsed::Item(parse_ack(rest).unwrap_or_else(|| Incoming::Unparsable(clip(text))));
    }
    if text.starts_with(NEW_MESSAGE_PREFIX) {
        let body = &text["42/chat,".len()..];
        return Parsed::Item(
            match serde_json::from_str::<(IgnoredAny, NewMessage)>(body) {
                Ok((_, message)) => Incoming::NewMessage(message),
                Err(_) => Incoming::Unparsable(clip(text)),
            },
        );
    }
    if text.starts_with("41/chat") || text == "1" {
        return Parsed::Disconnect;
    }
    Parsed::Ignored
}

fn parse_ack(rest: &str) -> Option<Incoming> {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest.get(..digits)?.parse::<u64>().ok()?;
    let (body,): (AckBody,) = serde_json::from_str(&rest[digits..]).ok()?;
    let outcome = if body.ok {
        AckOutcome::Ok {
            seq: body.message.map(|m| m.seq),
        }
    } else {
        AckOutcome::Failed {
            code: body.error.map_or_else(|| "unknown".to_owned(), |e| e.code),
        }
    };
    Some(Incoming::Ack { id, outcome })
}

fn clip(text: &str) -> String {
    text.chars().take(120).collect()
}

/// Reads `stream` until it ends: answers pings through `sink`, and sends
/// acks and `new-message` events to `events` (when given) with `tag`.
/// A `Closed` item is sent last.
pub fn spawn_reader(
    mut stream: WsStream,
    sink: SharedSink,
    tag: u8,
    events: Option<mpsc::UnboundedSender<Received>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let reason = loop {
            let text = match stream.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    break frame.map_or_else(
                        || "closed by the server".to_owned(),
                        |f| format!("closed: {}", f.reason),
                    );
                }
                None => break "connection ended".to_owned(),
                Some(Ok(_)) => continue,
                Some(Err(error)) => break error.to_string(),
            };
            let at = Instant::now();
            match parse_frame(text.as_str()) {
                Parsed::Ping(data) => {
                    if let Err(error) = send_frame(&sink, format!("3{data}")).await {
                        break format!("cannot answer a ping: {error}");
                    }
                }
                Parsed::Item(item) => {
                    if let Some(events) = &events {
                        let _ = events.send(Received { tag, at, item });
                    }
                }
                Parsed::Disconnect => break "disconnected by the server".to_owned(),
                Parsed::Ignored => {}
            }
        };
        if let Some(events) = &events {
            let _ = events.send(Received {
                tag,
                at: Instant::now(),
                item: Incoming::Closed(reason),
            });
        }
    })
}

/// Sends a WebSocket close; errors mean it is already gone.
pub async fn close(sink: &SharedSink) {
    let mut sink = sink.lock().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_parse_with_or_without_scheme() {
        let e = Endpoint::parse("http://127.0.0.1:3001").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 3001));
        assert_eq!(
            Endpoint::parse("localhost:3002/").unwrap().authority(),
            "localhost:3002"
        );
        assert_eq!(
            Endpoint::parse("http://[::1]:80").unwrap().authority(),
            "[::1]:80"
        );
        assert!(Endpoint::parse("http://host").is_err());
        assert!(Endpoint::parse("https://host:443").is_err());
        assert!(Endpoint::parse("http://host:99999").is_err());
    }

    #[test]
    fn parses_acks() {
        let ok = r#"43/chat,12[{"message":{"id":"m","seq":7,"content":"x"},"ok":true}]"#;
        assert_eq!(
            parse_frame(ok),
            Parsed::Item(Incoming::Ack {
                id: 12,
                outcome: AckOutcome::Ok { seq: Some(7) }
            })
        );
        let failed = r#"43/chat,3[{"error":{"code":"rate_limited","message":"slow"},"ok":false}]"#;
        assert_eq!(
            parse_frame(failed),
            Parsed::Item(Incoming::Ack {
                id: 3,
                outcome: AckOutcome::Failed {
                    code: "rate_limited".into()
                }
            })
        );
        assert!(matches!(
            parse_frame("43/chat,[{}]"),
            Parsed::Item(Incoming::Unparsable(_))
        ));
        assert!(matches!(
            parse_frame("43/chat,4[nope"),
            Parsed::Item(Incoming::Unparsable(_))
        ));
    }

    #[test]
    fn parses_new_message_and_control_frames() {
        let frame = format!(
            "42/chat,{}",
            json!(["new-message", {"sessionId": "s1", "seq": 3, "clientMsgId": "r-1-2", "content": "hi"}])
        );
        assert_eq!(
            parse_frame(&frame),
            Parsed::Item(Incoming::NewMessage(NewMessage {
                session_id: "s1".into(),
                seq: 3,
                client_msg_id: Some("r-1-2".into())
            }))
        );
        assert!(matches!(
            parse_frame(r#"42/chat,["new-message",{"seq":"x"}]"#),
            Parsed::Item(Incoming::Unparsable(_))
        ));
        assert_eq!(parse_frame("2"), Parsed::Ping(String::new()));
        assert_eq!(parse_frame("41/chat,"), Parsed::Disconnect);
        assert_eq!(
            parse_frame(r#"42/chat,["stats-update",{}]"#),
            Parsed::Ignored
        );
        assert_eq!(parse_frame(""), Parsed::Ignored);
    }

    #[test]
    fn event_frames_carry_ack_ids() {
        assert_eq!(
            event_frame(Some(0), "join-session", &json!({"sessionId": "s"})),
            r#"42/chat,0["join-session",{"sessionId":"s"}]"#
        );
        assert_eq!(
            event_frame(None, "typing", &json!({})),
            r#"42/chat,["typing",{}]"#
        );
    }
}
