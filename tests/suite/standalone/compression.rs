//! permessage-deflate on the Socket.IO WebSocket, seen on the wire by a
//! client of the test's own (tungstenite refuses compressed frames): the
//! negotiated terms, large frames compressed and small ones not, the
//! client's compressed and fragmented frames understood, a frame that
//! inflates past the 64 KiB limit closing only its own connection, and no
//! extension at all with `WS_COMPRESSION=off`.

use std::net::SocketAddr;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::harness::server::TestServer;
use crate::harness::sio_client::MAX_PAYLOAD;
use crate::harness::tokens::token;
use crate::harness::WAIT;

const ACCEPTED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
const RSV1: u8 = 0x40;

/// One frame as it came off the wire.
struct WireFrame {
    first: u8,
    payload: Vec<u8>,
}

impl WireFrame {
    fn compressed(&self) -> bool {
        self.first & RSV1 != 0
    }

    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }

    /// The frame's text, inflated when it came compressed.
    fn text(&self) -> String {
        let bytes = if self.compressed() {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        };
        String::from_utf8(bytes).expect("UTF-8 text")
    }
}

fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(input.len() * 20 + 1024);
    let mut inflater = Decompress::new(false);
    inflater
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("valid DEFLATE data");
    assert_eq!(inflater.total_in() as usize, input.len(), "all inflated");
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut deflater = Compress::new(Compression::default(), false);
    deflater
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A WebSocket client that reads and writes raw frames.
struct RawClient {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// The server's `Sec-WebSocket-Extensions`, if it sent one.
    extensions: Option<String>,
}

impl RawClient {
    async fn open(addr: SocketAddr, offer: Option<&str>) -> RawClient {
        let mut stream = timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        let offer = offer
            .map(|o| format!("Sec-WebSocket-Extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {addr}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut client = RawClient {
            stream,
            buffer: Vec::new(),
            extensions: None,
        };
        let head = loop {
            if let Some(end) = client.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(client.buffer[..end].to_vec()).expect("head");
                client.buffer.drain(..end + 4);
                break head;
            }
            assert!(
                client.fill().await,
                "the server closed during the handshake"
            );
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // The key of RFC 6455's example, and its answer.
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
            "{head}"
        );
        client.extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        client
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0; 16 * 1024];
        let read = timeout(WAIT, self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next frame; None when the connection ends.
    async fn frame(&mut self) -> Option<WireFrame> {
        loop {
            if let Some((frame, used)) = parse(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The next data frame, answering the server's pings on the way.
    async fn data_frame(&mut self) -> Option<WireFrame> {
        loop {
            let frame = self.frame().await?;
            if frame.opcode() == 1 && frame.text() == "2" {
                self.send(0x1, b"3", false).await;
                continue;
            }
            return Some(frame);
        }
    }

    /// Sends one whole text (`opcode` 1) frame, compressed if asked.
    async fn send(&mut self, opcode: u8, data: &[u8], compress: bool) {
        if compress {
            let payload = deflate(data);
            self.send_frames(&[(0x80 | RSV1 | opcode, &payload)]).await;
        } else {
            self.send_frames(&[(0x80 | opcode, data)]).await;
        }
    }

    /// Sends frames as given (first byte, payload), masked.
    async fn send_frames(&mut self, frames: &[(u8, &[u8])]) {
        let mut bytes = Vec::new();
        for (first, payload) in frames {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            bytes.push(*first);
            match payload.len() {
                n if n < 126 => bytes.push(0x80 | n as u8),
                n if n <= 0xffff => {
                    bytes.push(0x80 | 126);
                    bytes.extend_from_slice(&(n as u16).to_be_bytes());
                }
                n => {
                    bytes.push(0x80 | 127);
                    bytes.extend_from_slice(&(n as u64).to_be_bytes());
                }
            }
            bytes.extend_from_slice(&key);
            bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        // The server may already have closed (the bomb): that is for the
        // reads to see.
        let _ = self.stream.write_all(&bytes).await;
    }

    /// The OPEN, then CONNECT to `/chat` (sent compressed when asked) and
    /// its answer and the `connected` greeting, all as frames.
    async fn join_chat(&mut self, token: &str, compress: bool) -> Vec<WireFrame> {
        let open = self.data_frame().await.expect("OPEN");
        assert!(open.text().starts_with('0'), "{}", open.text());
        let connect = format!("40/chat,{}", json!({ "token": token }));
        self.send(0x1, connect.as_bytes(), compress).await;
        let answer = self.data_frame().await.expect("CONNECT answer");
        assert!(answer.text().starts_with("40/chat,"), "{}", answer.text());
        let connected = self.data_frame().await.expect("connected");
        assert!(
            connected.text().contains("\"connected\""),
            "{}",
            connected.text()
        );
        vec![open, answer, connected]
    }

    /// Reads data frames until the ack with `id`; returns it and what came
    /// before it.
    async fn until_ack(&mut self, id: u64) -> (WireFrame, Vec<WireFrame>) {
        let prefix = format!("43/chat,{id}[");
        let mut before = Vec::new();
        loop {
            let frame = self.data_frame().await.expect("the ack");
            if frame.text().starts_with(&prefix) {
                return (frame, before);
            }
            before.push(frame);
        }
    }

    /// True once the server ends the connection (a close frame or EOF).
    async fn closed(&mut self) -> bool {
        loop {
            match self.frame().await {
                None => return true,
                Some(frame) if frame.opcode() == 0x8 => return true,
                Some(_) => {}
            }
        }
    }
}

/// One frame from the start of `bytes` and the bytes it took.
fn parse(bytes: &[u8]) -> Option<(WireFrame, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => {
            let mut raw = [0; 8];
            raw.copy_from_slice(&bytes[2..10]);
            (u64::from_be_bytes(raw) as usize, 10)
        }
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if bytes.len() < at + len {
        return None;
    }
    let frame = WireFrame {
        first: bytes[0],
        payload: bytes[at..at + len].to_vec(),
    };
    Some((frame, at + len))
}

/// The JSON array of a Socket.IO event or ack frame (`42/chat,…`).
fn packet_json(text: &str) -> Value {
    let start = text.find('[').expect("a JSON array");
    serde_json::from_str(&text[start..]).expect("JSON")
}

/// A session with `count` messages of about 100 bytes each.
async fn session_with_messages(server: &TestServer, customer: &str, count: usize) -> String {
    let session = server.create_session(customer, json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    server
        .post_messages(customer, &session_id, count, |n| {
            format!("message {n}: the quick brown fox jumps over the lazy dog, again and again")
        })
        .await;
    session_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_are_compressed_both_ways_and_a_bomb_closes_only_its_connection() {
    let server = TestServer::start(&[]).await;
    let customer = token("deflate-customer", "customer", &[]);
    let session_id = session_with_messages(&server, &customer, 30).await;

    let mut client = RawClient::open(
        server.addr,
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(client.extensions.as_deref(), Some(ACCEPTED));
    // The client's CONNECT goes compressed, and is understood; the small
    // frames the server writes go plain.
    for frame in client.join_chat(&customer, true).await {
        assert!(
            !frame.compressed(),
            "small frame compressed: {}",
            frame.text()
        );
    }

    // A join sent as a fragmented compressed message (RSV1 on the first of
    // three frames): the reply carries 30 messages, over 1 KiB, and comes
    // compressed.
    let join = format!(
        "42/chat,1[\"join-session\",{}]",
        json!({ "sessionId": session_id, "lastSeq": 0 })
    );
    let compressed = deflate(join.as_bytes());
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    client
        .send_frames(&[
            (0x01 | RSV1, a),
            (0x89, b"in between"),
            (0x00, b),
            (0x80, c),
        ])
        .await;
    let (ack, before) = client.until_ack(1).await;
    assert!(
        ack.compressed(),
        "a join reply of 30 messages goes compressed"
    );
    assert!(
        ack.payload.len() < ack.text().len() / 2,
        "and is much smaller"
    );
    let reply = packet_json(&ack.text());
    assert_eq!(reply[0]["ok"], json!(true), "{reply}");
    let messages = reply[0]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 30);
    assert_eq!(
        messages[29]["content"],
        "message 30: the quick brown fox jumps over the lazy dog, again and again"
    );
    // The ping in between was answered with a pong, and the event twin of
    // the reply came compressed too.
    let joined = before
        .iter()
        .find(|f| f.opcode() == 1 && f.text().contains("\"session-joined\""))
        .expect("session-joined before the ack");
    assert!(joined.compressed());
    assert!(before
        .iter()
        .any(|f| f.opcode() == 0xa && f.payload == b"in between"));

    // A small event: sent compressed, its small ack comes back plain.
    let send = format!(
        "42/chat,2[\"send-message\",{}]",
        json!({ "sessionId": session_id, "content": "hi", "clientMsgId": "deflate-1" })
    );
    client.send(0x1, send.as_bytes(), true).await;
    let (ack, _) = client.until_ack(2).await;
    assert!(!ack.compressed(), "{}", ack.text());
    assert_eq!(
        packet_json(&ack.text())[0]["ok"],
        json!(true),
        "{}",
        ack.text()
    );

    // Exactly the limit inflated is read (and refused for its content).
    let prefix = format!(
        "42/chat,3[\"send-message\",{{\"sessionId\":\"{session_id}\",\"clientMsgId\":\"big\",\"content\":\""
    );
    let padding = MAX_PAYLOAD - prefix.len() - 3;
    let exact = format!("{prefix}{}\"}}]", "a".repeat(padding));
    assert_eq!(exact.len(), MAX_PAYLOAD);
    client.send(0x1, exact.as_bytes(), true).await;
    let (ack, _) = client.until_ack(3).await;
    assert_eq!(
        packet_json(&ack.text())[0]["error"]["code"],
        "invalid_payload"
    );

    // A second connection sends a few hundred bytes that inflate past
    // 64 KiB: that connection ends, the first one carries on.
    let mut bomber = RawClient::open(server.addr, Some("permessage-deflate")).await;
    bomber.join_chat(&customer, false).await;
    let bomb = format!("42/chat,[\"typing\",\"{}\"]", "a".repeat(MAX_PAYLOAD));
    let payload = deflate(bomb.as_bytes());
    assert!(payload.len() < 1024);
    bomber.send_frames(&[(0x81 | RSV1, &payload)]).await;
    assert!(bomber.closed().await);

    let send = format!(
        "42/chat,4[\"send-message\",{}]",
        json!({ "sessionId": session_id, "content": "still here", "clientMsgId": "deflate-2" })
    );
    client.send(0x1, send.as_bytes(), false).await;
    let (ack, _) = client.until_ack(4).await;
    assert_eq!(
        packet_json(&ack.text())[0]["ok"],
        json!(true),
        "{}",
        ack.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_the_gateway_cannot_meet_and_compression_off_get_plain_frames() {
    let server = TestServer::start(&[("WS_COMPRESSION", "off")]).await;
    let customer = token("plain-customer", "customer", &[]);
    let session_id = session_with_messages(&server, &customer, 30).await;
    let mut client = RawClient::open(
        server.addr,
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(
        client.extensions, None,
        "no extension with WS_COMPRESSION=off"
    );
    client.join_chat(&customer, false).await;
    let join = format!(
        "42/chat,1[\"join-session\",{}]",
        json!({ "sessionId": session_id, "lastSeq": 0 })
    );
    client.send(0x1, join.as_bytes(), false).await;
    let (ack, _) = client.until_ack(1).await;
    assert!(!ack.compressed());
    assert!(ack.payload.len() > 1024);
    assert_eq!(
        packet_json(&ack.text())[0]["messages"]
            .as_array()
            .map(Vec::len),
        Some(30)
    );

    // With compression on, a smaller server window than the deflater has
    // is declined, and so is RSV1 on a connection that did not negotiate.
    let server = TestServer::start(&[]).await;
    let client = RawClient::open(
        server.addr,
        Some("permessage-deflate; server_max_window_bits=10"),
    )
    .await;
    assert_eq!(client.extensions, None);
    let mut client = RawClient::open(server.addr, None).await;
    assert_eq!(client.extensions, None);
    client.join_chat(&customer, false).await;
    client.send(0x1, b"42/chat,[\"typing\"]", true).await;
    assert!(
        client.closed().await,
        "RSV1 without the extension is a protocol error"
    );
}
