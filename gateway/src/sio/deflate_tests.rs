//! [`DeflateStream`] under a real tungstenite server, with the client's
//! side written by hand: compressed and fragmented client messages read as
//! plain ones, large server frames compressed and small ones not, through a
//! socket that takes a few bytes at a time, and a frame that inflates past
//! the limit refused.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use flate2::{Compress, Compression, FlushCompress};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::{Deflate, DeflateStream};
use crate::sio::deflate_codec::{apply_mask, inflate};

const LIMIT: usize = 64 * 1024;
const TERMS: Deflate = Deflate {
    min_bytes: 1024,
    max_payload: LIMIT,
};

/// A socket that moves at most `step` bytes per call and says Pending
/// every other call, like a congested connection.
struct Trickle {
    inner: DuplexStream,
    step: usize,
    stall: bool,
}

impl Trickle {
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> bool {
        self.stall = !self.stall;
        if self.stall {
            cx.waker().wake_by_ref();
        }
        self.stall
    }
}

impl AsyncRead for Trickle {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.poll_stall(cx) {
            return Poll::Pending;
        }
        let mut small = vec![0; this.step.min(buf.remaining())];
        let mut part = ReadBuf::new(&mut small);
        match Pin::new(&mut this.inner).poll_read(cx, &mut part) {
            Poll::Ready(Ok(())) => {
                buf.put_slice(part.filled());
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.poll_stall(cx) {
            return Poll::Pending;
        }
        let step = this.step.min(buf.len());
        Pin::new(&mut this.inner).poll_write(cx, &buf[..step])
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn server(
    step: usize,
    deflate: Option<Deflate>,
) -> (WebSocketStream<DeflateStream<Trickle>>, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let socket = Trickle {
        inner: ours,
        step,
        stall: false,
    };
    let config = WebSocketConfig::default()
        .max_frame_size(Some(LIMIT))
        .max_message_size(Some(LIMIT))
        .read_buffer_size(1024)
        .write_buffer_size(4096);
    let ws = WebSocketStream::from_raw_socket(
        DeflateStream::new(socket, deflate),
        Role::Server,
        Some(config),
    )
    .await;
    (ws, theirs)
}

/// A masked client frame.
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0xa1, 0x02, 0x7c, 0x55];
    let mut frame = vec![first];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&key);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], key, 0);
    frame
}

/// `data` deflated as a client would (whether or not that is smaller),
/// without the sync flush's tail.
fn compressed(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 64);
    let mut deflater = Compress::new(Compression::best(), false);
    deflater
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Reads one server frame: its first byte and payload.
async fn server_frame(client: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0; 2];
    client.read_exact(&mut head).await.expect("frame header");
    assert_eq!(head[1] & 0x80, 0, "server frames are unmasked");
    let len = match head[1] & 0x7f {
        126 => {
            let mut raw = [0; 2];
            client.read_exact(&mut raw).await.expect("length");
            u16::from_be_bytes(raw) as usize
        }
        127 => {
            let mut raw = [0; 8];
            client.read_exact(&mut raw).await.expect("length");
            u64::from_be_bytes(raw) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0; len];
    client.read_exact(&mut payload).await.expect("payload");
    (head[0], payload)
}

fn big_text(n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"seq\":{i},\"content\":\"hello number {i}\"}},"))
        .collect()
}

#[tokio::test]
async fn compressed_and_fragmented_client_messages_read_as_plain_ones() {
    for step in [3, 5000] {
        let (mut ws, mut client) = server(step, Some(TERMS)).await;
        let text = big_text(200);
        let whole = compressed(text.as_bytes());
        let (a, b) = whole.split_at(whole.len() / 2);
        let mut bytes = client_frame(0x81 | 0x40, &compressed(b"42/chat,[\"small\"]"));
        bytes.extend(client_frame(0x01 | 0x40, a));
        bytes.extend(client_frame(0x89, b"ping in between"));
        bytes.extend(client_frame(0x80, b));
        bytes.extend(client_frame(0x81, b"plain"));
        bytes.extend(client_frame(0x82 | 0x40, &compressed(&[7; 3000])));
        client.write_all(&bytes).await.expect("write");

        let mut got = Vec::new();
        while got.len() < 5 {
            match ws.next().await.expect("a message").expect("readable") {
                Message::Text(t) => got.push(t.as_str().as_bytes().to_vec()),
                Message::Binary(b) => got.push(b.to_vec()),
                Message::Ping(p) => got.push(p.to_vec()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got[0], b"42/chat,[\"small\"]");
        assert_eq!(
            got[1], b"ping in between",
            "the ping is read before the message it interrupts"
        );
        assert_eq!(got[2], text.as_bytes());
        assert_eq!(got[3], b"plain");
        assert_eq!(got[4], vec![7; 3000]);
    }
}

#[tokio::test]
async fn large_server_frames_go_compressed_and_small_ones_plain() {
    for step in [1, 7, 100_000] {
        let (mut ws, mut client) = server(step, Some(TERMS)).await;
        let large = big_text(300);
        let writer = tokio::spawn(async move {
            ws.feed(Message::text("2")).await.expect("small");
            ws.feed(Message::text(large.clone())).await.expect("large");
            ws.feed(Message::text("x".repeat(1023)))
                .await
                .expect("just under");
            ws.feed(Message::text(big_text(40)))
                .await
                .expect("second large");
            ws.flush().await.expect("flush");
            ws
        });
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!((first, payload.as_slice()), (0x81, &b"2"[..]));
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!(first, 0xc1, "FIN, RSV1, text");
        assert_eq!(
            inflate(&payload, 1 << 20).unwrap(),
            big_text(300).as_bytes()
        );
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!(first, 0x81);
        assert_eq!(payload.len(), 1023);
        let (first, payload) = server_frame(&mut client).await;
        assert_eq!(first, 0xc1);
        assert_eq!(inflate(&payload, 1 << 20).unwrap(), big_text(40).as_bytes());
        writer.await.expect("writer");
    }
}

#[tokio::test]
async fn frames_that_would_grow_go_out_as_written() {
    let (mut ws, mut client) = server(100_000, Some(TERMS)).await;
    let mut state = 0x9e37_79b9_u32;
    let noise: Vec<u8> = (0..4000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[1]
        })
        .collect();
    let sent = noise.clone();
    let writer = tokio::spawn(async move {
        ws.send(Message::binary(sent)).await.expect("send");
        ws
    });
    let (first, payload) = server_frame(&mut client).await;
    assert_eq!(first, 0x82);
    assert_eq!(payload, noise);
    writer.await.expect("writer");
}

#[tokio::test]
async fn a_message_inflating_past_the_limit_is_an_error() {
    let (mut ws, mut client) = server(100_000, Some(TERMS)).await;
    let bomb = compressed(&vec![b'a'; 10 * LIMIT]);
    assert!(bomb.len() < 8 * 1024);
    client
        .write_all(&client_frame(0x81 | 0x40, &bomb))
        .await
        .expect("write");
    let error = ws.next().await.expect("an answer").expect_err("refused");
    assert!(error.to_string().contains("inflates past"), "{error}");
}

#[tokio::test]
async fn without_the_extension_rsv1_is_tungstenites_to_refuse_and_nothing_is_compressed() {
    let (mut ws, mut client) = server(100_000, None).await;
    let large = big_text(300);
    let writer = tokio::spawn(async move {
        ws.send(Message::text(large)).await.expect("send");
        ws
    });
    let (first, payload) = server_frame(&mut client).await;
    assert_eq!(first, 0x81);
    assert_eq!(payload, big_text(300).as_bytes());
    let mut ws = writer.await.expect("writer");
    client
        .write_all(&client_frame(0x81 | 0x40, &compressed(b"hello")))
        .await
        .expect("write");
    assert!(ws.next().await.expect("an answer").is_err());
}
