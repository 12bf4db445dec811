//! Clients that behave like `socket.io-client` across a drain: they
//! connect through a "load balancer" that only picks ready gateways,
//! reconnect when their connection ends, rejoin with `lastSeq`, and resend
//! what was not acknowledged with the same `clientMsgId`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::eventually::eventually;
use super::http::get;
use super::sio_client::{is_new_message, Frame, Received, SioClient};

/// Whether the admin endpoint at `admin` says ready.
pub async fn is_ready(admin: SocketAddr) -> bool {
    matches!(get(admin, "/readyz").await, Some((200, _)))
}

/// A gateway as a load balancer sees it: where clients go, and the
/// readiness endpoint it checks.
#[derive(Debug, Clone, Copy)]
pub struct Upstream {
    pub public: SocketAddr,
    pub admin: SocketAddr,
}

/// A load balancer without sticky sessions: the next ready gateway in
/// turn, the way a balancer stops sending clients to a pod whose readiness
/// fails.
pub async fn pick_ready(upstreams: &[Upstream], turn: usize) -> Option<Upstream> {
    for offset in 0..upstreams.len() {
        let upstream = upstreams[(turn + offset) % upstreams.len()];
        if is_ready(upstream.admin).await {
            return Some(upstream);
        }
    }
    None
}

/// What one client of a session saw.
#[derive(Debug, Default)]
pub struct View {
    /// The `seq` of every message received (join catch-ups and live
    /// `new-message` events), in arrival order.
    pub seqs: Vec<i64>,
    /// Close codes of the connections that ended, and when.
    pub closes: Vec<(Option<u16>, Instant)>,
    /// The gateway of each connection, in order.
    pub gateways: Vec<SocketAddr>,
    /// clientMsgId → seq of every acknowledged message this client sent.
    pub acked: Vec<(String, i64)>,
}

impl View {
    pub fn last_seq(&self) -> i64 {
        self.seqs.iter().copied().max().unwrap_or(0)
    }
}

/// A client of one session that reconnects like `socket.io-client` would.
pub struct ChatClient {
    pub token: String,
    pub session_id: String,
    client: Option<SioClient>,
    pub view: View,
    upstreams: Vec<Upstream>,
    turn: usize,
}

impl ChatClient {
    /// Connects through the "load balancer" and joins the session.
    pub async fn join(
        token: String,
        session_id: String,
        upstreams: Vec<Upstream>,
        turn: usize,
    ) -> ChatClient {
        let mut client = ChatClient {
            token,
            session_id,
            client: None,
            view: View::default(),
            upstreams,
            turn,
        };
        client.reconnect().await;
        client
    }

    /// The gateway of the current connection.
    pub fn gateway(&self) -> Option<SocketAddr> {
        self.view.gateways.last().copied()
    }

    /// Connects to a ready gateway (waiting up to 10 s for one) and joins
    /// with `lastSeq`, recording the messages the join returns.
    async fn reconnect(&mut self) {
        let (upstreams, turn) = (&self.upstreams, self.turn);
        let upstream = eventually(Duration::from_secs(10), "a gateway became ready", || {
            pick_ready(upstreams, turn)
        })
        .await;
        self.turn += 1;
        let mut client = SioClient::connect(upstream.public, &self.token).await;
        self.view.gateways.push(upstream.public);
        let last_seq = self.view.last_seq();
        let ack = client
            .join_session(&self.session_id, (last_seq > 0).then_some(last_seq))
            .await;
        for message in ack["messages"].as_array().cloned().unwrap_or_default() {
            self.view.seqs.push(message["seq"].as_i64().expect("seq"));
        }
        assert_ne!(
            ack["hasMore"],
            json!(true),
            "a catch-up larger than one join; the test sends fewer"
        );
        self.client = Some(client);
    }

    /// Handles frames in the order they arrived: records the session's
    /// `new-message` events, and on the end of the connection records the
    /// close and reconnects. True when the connection had ended.
    async fn absorb(&mut self, frames: Vec<Received>) -> bool {
        let mut ended = None;
        for received in frames {
            match received.frame {
                Frame::Event { name, payload }
                    if ended.is_none()
                        && name == "new-message"
                        && payload["sessionId"] == json!(self.session_id) =>
                {
                    self.view.seqs.push(payload["seq"].as_i64().expect("seq"));
                }
                Frame::Closed(code) => ended = Some((code, received.at)),
                _ => {}
            }
        }
        match ended {
            Some(close) => {
                self.view.closes.push(close);
                self.client = None;
                self.reconnect().await;
                true
            }
            None => false,
        }
    }

    /// Handles everything received so far. True when the connection had
    /// ended (and was re-established).
    pub async fn pump(&mut self) -> bool {
        let Some(client) = self.client.as_mut() else {
            return false;
        };
        let _ = client.has_closed();
        let frames = client.drain_backlog();
        self.absorb(frames).await
    }

    /// Waits up to `wait` for a frame `wanted` accepts (or the end of the
    /// connection), then handles it and everything before it, in order.
    /// Returns that frame.
    async fn wait_for(&mut self, wait: Duration, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let client = self.client.as_mut()?;
        let matched = client
            .try_next_matching(wait, |frame| {
                wanted(frame) || matches!(frame, Frame::Closed(_))
            })
            .await;
        let mut frames = client.drain_backlog();
        let frame = matched.as_ref().map(|r| r.frame.clone());
        frames.extend(matched);
        self.absorb(frames).await;
        frame
    }

    /// Sends one message and waits for its ack, across reconnections and
    /// `unavailable` answers, always with the same `clientMsgId`, as a
    /// client resending unacknowledged messages does.
    pub async fn send(&mut self, content: &str, client_msg_id: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(
                Instant::now() < deadline,
                "{client_msg_id} not acknowledged within 30 s"
            );
            self.pump().await;
            let client = self.client.as_mut().expect("connected");
            let id = client.emit_ack(
                "send-message",
                json!({ "sessionId": self.session_id, "content": content, "clientMsgId": client_msg_id }),
            );
            let answer = self
                .wait_for(
                    Duration::from_secs(15),
                    |frame| matches!(frame, Frame::Ack { id: got, .. } if *got == id),
                )
                .await;
            match answer {
                Some(Frame::Ack { payload, .. }) if payload["ok"] == json!(true) => {
                    let seq = payload["message"]["seq"].as_i64().expect("seq");
                    self.view.acked.push((client_msg_id.to_owned(), seq));
                    return seq;
                }
                Some(Frame::Ack { payload, .. }) => {
                    assert_eq!(
                        payload["error"]["code"],
                        json!("unavailable"),
                        "send-message refused: {payload}"
                    );
                }
                // The connection ended (already re-established by
                // `wait_for`): send again.
                Some(_) => {}
                // No answer at all: treat the connection as lost.
                None => {
                    self.client = None;
                    self.reconnect().await;
                }
            }
        }
    }

    /// Waits (up to `wait`) until this client has seen `seq`.
    pub async fn wait_for_seq(&mut self, seq: i64, wait: Duration) {
        let deadline = Instant::now() + wait;
        self.pump().await;
        while self.view.last_seq() < seq {
            assert!(
                Instant::now() < deadline,
                "message {seq} of {} never arrived; saw {:?}",
                self.session_id,
                self.view.seqs
            );
            let session = self.session_id.clone();
            self.wait_for(Duration::from_millis(200), |frame| {
                is_new_message(frame, &session)
            })
            .await;
        }
    }
}

/// Asserts that `view` holds every message 1..=`last` exactly once, in order.
pub fn assert_exactly_once_in_order(who: &str, view: &View, last: i64) {
    let expected: Vec<i64> = (1..=last).collect();
    assert_eq!(
        view.seqs, expected,
        "{who} did not receive every message exactly once in order"
    );
}
