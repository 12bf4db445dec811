//! Requests waiting for the worker's reply: socket events whose ack (or
//! `error` event) is written when the reply arrives, and REST calls waiting
//! on a oneshot. Each has a deadline; past it the caller gets `unavailable`,
//! and retrying with the same `clientMsgId` is safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chat_shared::envelope::{Reply, ReplyBody};
use chat_shared::ChatError;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::hub::{Outbound, SocketHandle};
use crate::metrics::Metrics;
use chat_shared::protocol::frames;

/// How a socket event's reply becomes its ack payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    SendMessage,
    MarkRead,
}

pub enum Waiter {
    Socket {
        socket: Arc<SocketHandle>,
        ack_id: Option<u64>,
        kind: AckKind,
        session_id: String,
        started: Instant,
    },
    Http(oneshot::Sender<Result<ReplyBody, ChatError>>),
}

#[derive(Default)]
pub struct PendingRequests {
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, (Instant, Waiter)>>,
}

impl PendingRequests {
    /// Registers a waiter and returns the request id to put in the command.
    pub fn register(&self, waiter: Waiter, timeout: Duration) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(id, (Instant::now() + timeout, waiter));
        id
    }

    /// Forgets a request whose command could not be sent, handing its
    /// waiter back so the caller can answer it.
    pub fn take(&self, id: u64) -> Option<Waiter> {
        self.lock().remove(&id).map(|(_, waiter)| waiter)
    }

    /// Forgets the requests of a socket that closed: no answer can reach
    /// it any more, so a drain need not wait for them. Its commands are
    /// still applied.
    pub fn forget_socket(&self, key: u64) {
        self.lock().retain(|_, (_, waiter)| match waiter {
            Waiter::Socket { socket, .. } => socket.key != key,
            Waiter::Http(_) => true,
        });
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Delivers a reply to its waiter; replies nobody waits for any more
    /// (timed out, socket gone) are dropped.
    pub fn complete(&self, reply: Reply, metrics: &Metrics) {
        let Some(waiter) = self.take(reply.request_id) else {
            return;
        };
        answer(waiter, reply.outcome, metrics);
    }

    /// Answers every request past its deadline with `unavailable`.
    pub fn expire(&self, now: Instant, metrics: &Metrics) {
        let expired: Vec<Waiter> = {
            let mut waiting = self.lock();
            let ids: Vec<u64> = waiting
                .iter()
                .filter(|(_, (deadline, _))| *deadline <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| waiting.remove(&id).map(|(_, waiter)| waiter))
                .collect()
        };
        for waiter in expired {
            metrics.request_timeouts.inc();
            answer(
                waiter,
                Err(ChatError::unavailable(
                    "no answer in time; retrying with the same clientMsgId is safe",
                )),
                metrics,
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, (Instant, Waiter)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands an outcome to its waiter: a oneshot for REST, an ack frame (or an
/// `error` event when the client gave no ack callback) for sockets.
pub fn answer(waiter: Waiter, outcome: Result<ReplyBody, ChatError>, metrics: &Metrics) {
    match waiter {
        Waiter::Http(sender) => {
            let _ = sender.send(outcome);
        }
        Waiter::Socket {
            socket,
            ack_id,
            kind,
            session_id,
            started,
        } => {
            if kind == AckKind::SendMessage {
                metrics.record_ack_latency(started.elapsed());
            }
            let frame = match outcome {
                Ok(body) => {
                    ack_id.map(|id| frames::ack(id, &success_payload(kind, &session_id, body)))
                }
                Err(error) => Some(frames::failure(ack_id, &error)),
            };
            if let Some(frame) = frame {
                socket.push(Outbound::Frame(Utf8Bytes::from(frame)), metrics);
            }
        }
    }
}

fn success_payload(kind: AckKind, session_id: &str, body: ReplyBody) -> Value {
    match (kind, body) {
        (_, ReplyBody::Message { message, .. }) => json!({ "ok": true, "message": message }),
        (_, ReplyBody::ReadPosition(position)) => json!({
            "ok": true,
            "sessionId": session_id,
            "userId": position.user_id,
            "role": position.role,
            "upToSeq": position.up_to_seq,
        }),
        (_, ReplyBody::Session(session)) => json!({ "ok": true, "session": session }),
        (_, ReplyBody::Done) => json!({ "ok": true }),
    }
}
