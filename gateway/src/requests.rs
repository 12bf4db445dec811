//! Request and reply, in one place: a command goes to the worker in an
//! envelope with the caller's identity and a reply address, appended to
//! the partition of its session; its reply comes back on this gateway's
//! channel (or, for a message sent from a socket that joined its session,
//! inside the message's own delivery) and is handed to whoever waits for
//! it. Socket events get their ack (or `error` event) written when the
//! reply arrives; REST calls wait on a oneshot. Each request has a deadline; past it the caller gets
//! `unavailable`, and retrying with the same `clientMsgId` is safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_shared::auth::Identity;
use chat_shared::backplane::Backplane;
use chat_shared::envelope::{self, Command, CommandEnvelope, Reply, ReplyBody, ReplyTo};
use chat_shared::names::partition_of;
use chat_shared::protocol::frames;
use chat_shared::{ChatError, Timestamp};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::metrics::{BackplaneOp, Metrics};
use crate::outbound::{Outbound, SocketHandle};

/// Who waits for a reply.
pub enum Waiter {
    Socket {
        socket: Arc<SocketHandle>,
        ack_id: Option<u64>,
        /// Whether the ack's latency is recorded: a sent message's (or
        /// note's) is the figure operators watch; the others are not.
        timed: bool,
        session_id: String,
        started: Instant,
    },
    Http(oneshot::Sender<Result<ReplyBody, ChatError>>),
}

/// Where this gateway's commands go and how long their replies may take.
pub struct RequestRoute {
    pub gateway_id: String,
    pub partitions: u32,
    pub timeout: Duration,
}

/// A request waiting for its reply.
struct Pending {
    deadline: Instant,
    waiter: Waiter,
    /// The session channel whose delivery may carry the reply; the hub keeps
    /// it subscribed while the request waits.
    events_channel: Option<String>,
}

pub struct Requests {
    route: RequestRoute,
    backplane: Arc<dyn Backplane>,
    metrics: Arc<Metrics>,
    next_id: AtomicU64,
    waiting: Mutex<Waiting>,
}

/// The waiting requests, and how many of them await a reply on each
/// session channel (so that a leave asks in constant time).
#[derive(Default)]
struct Waiting {
    pending: HashMap<u64, Pending>,
    by_events_channel: HashMap<String, usize>,
}

impl Waiting {
    fn insert(&mut self, id: u64, pending: Pending) {
        if let Some(channel) = &pending.events_channel {
            *self.by_events_channel.entry(channel.clone()).or_default() += 1;
        }
        self.pending.insert(id, pending);
    }

    fn remove(&mut self, id: u64) -> Option<Waiter> {
        let pending = self.pending.remove(&id)?;
        if let Some(channel) = &pending.events_channel {
            if let Some(count) = self.by_events_channel.get_mut(channel) {
                *count -= 1;
                if *count == 0 {
                    self.by_events_channel.remove(channel);
                }
            }
        }
        Some(pending.waiter)
    }

    /// Removes every request `picked` selects, handing their waiters back.
    fn remove_where(&mut self, picked: impl Fn(&Pending) -> bool) -> Vec<Waiter> {
        let ids: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| picked(pending))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }
}

impl Requests {
    pub fn new(route: RequestRoute, backplane: Arc<dyn Backplane>, metrics: Arc<Metrics>) -> Self {
        Requests {
            route,
            backplane,
            metrics,
            next_id: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
        }
    }

    /// Appends a command whose answer goes to `waiter`. If it cannot be
    /// appended, the waiter is answered with `unavailable` at once.
    pub async fn submit(&self, identity: &Identity, command: Command, waiter: Waiter) {
        self.submit_receiving(identity, command, waiter, None).await
    }

    /// As [`Self::submit`], for a message sent from a socket that has joined
    /// its session, when `events_channel` (the session's channel, which this
    /// gateway then receives) is given: the worker may send the reply inside
    /// the message's own delivery (`ReplyTo::with_session_events`), where
    /// the hub finds it.
    pub async fn submit_receiving(
        &self,
        identity: &Identity,
        command: Command,
        waiter: Waiter,
        events_channel: Option<String>,
    ) {
        let with_session_events = events_channel.is_some();
        let request_id = self.register(waiter, events_channel);
        let envelope = CommandEnvelope {
            reply_to: Some(ReplyTo {
                gateway_id: self.route.gateway_id.clone(),
                request_id,
                with_session_events,
            }),
            actor: identity.clone(),
            issued_at: Timestamp::now(),
            command,
        };
        if let Err(error) = self.append(&envelope).await {
            if let Some(waiter) = self.take(request_id) {
                answer(waiter, Err(error), &self.metrics);
            }
        }
    }

    /// Appends a command nobody waits for.
    pub async fn submit_detached(
        &self,
        identity: &Identity,
        command: Command,
    ) -> Result<(), ChatError> {
        let envelope = CommandEnvelope {
            reply_to: None,
            actor: identity.clone(),
            issued_at: Timestamp::now(),
            command,
        };
        self.append(&envelope).await
    }

    /// Sends a command and waits for the worker's answer (REST).
    pub async fn request(
        &self,
        identity: &Identity,
        command: Command,
    ) -> Result<ReplyBody, ChatError> {
        let (sender, receiver) = oneshot::channel();
        self.submit(identity, command, Waiter::Http(sender)).await;
        receiver
            .await
            .unwrap_or_else(|_| Err(ChatError::unavailable("the gateway is shutting down")))
    }

    /// Delivers a reply to its waiter; replies nobody waits for any more
    /// (timed out, socket gone) are dropped.
    pub fn complete(&self, reply: Reply) {
        let Some(waiter) = self.take(reply.request_id) else {
            return;
        };
        answer(waiter, reply.outcome, &self.metrics);
    }

    /// Answers every request past its deadline with `unavailable`.
    pub fn expire(&self, now: Instant) {
        let expired = self.lock().remove_where(|pending| pending.deadline <= now);
        for waiter in expired {
            self.metrics.request_timeouts.inc();
            answer(
                waiter,
                Err(ChatError::unavailable(
                    "no answer in time; retrying with the same clientMsgId is safe",
                )),
                &self.metrics,
            );
        }
    }

    /// Forgets the requests of a socket that closed: no answer can reach
    /// it any more, so a drain need not wait for them. Its commands are
    /// still applied.
    pub fn forget_socket(&self, key: u64) {
        self.lock().remove_where(|pending| match &pending.waiter {
            Waiter::Socket { socket, .. } => socket.key == key,
            Waiter::Http(_) => false,
        });
    }

    pub fn len(&self) -> usize {
        self.lock().pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a waiting request's reply may come in a delivery on
    /// `channel`, so that the channel must stay subscribed.
    pub fn awaits_events_on(&self, channel: &str) -> bool {
        self.lock().by_events_channel.contains_key(channel)
    }

    /// Registers a waiter and returns the request id to put in the command.
    fn register(&self, waiter: Waiter, events_channel: Option<String>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let pending = Pending {
            deadline: Instant::now() + self.route.timeout,
            waiter,
            events_channel,
        };
        self.lock().insert(id, pending);
        id
    }

    /// Forgets a request, handing its waiter back.
    fn take(&self, id: u64) -> Option<Waiter> {
        self.lock().remove(id)
    }

    async fn append(&self, envelope: &CommandEnvelope) -> Result<(), ChatError> {
        let bytes =
            envelope::encode(envelope).map_err(|e| ChatError::unavailable(e.to_string()))?;
        let partition = partition_of(envelope.command.partition_key(), self.route.partitions);
        self.backplane
            .append_command(partition, bytes)
            .await
            .map_err(|error| {
                self.metrics.backplane_error(BackplaneOp::Append);
                tracing::warn!(%error, "command not appended");
                ChatError::unavailable("the chat backplane is unavailable; try again")
            })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Hands an outcome to its waiter: a oneshot for REST, an ack frame (or an
/// `error` event when the client gave no ack callback) for sockets.
fn answer(waiter: Waiter, outcome: Result<ReplyBody, ChatError>, metrics: &Metrics) {
    match waiter {
        Waiter::Http(sender) => {
            let _ = sender.send(outcome);
        }
        Waiter::Socket {
            socket,
            ack_id,
            timed,
            session_id,
            started,
        } => {
            if timed {
                metrics.record_ack_latency(started.elapsed());
            }
            let frame = match outcome {
                Ok(body) => ack_id.map(|id| frames::ack(id, &success_payload(&session_id, body))),
                Err(error) => Some(frames::failure(ack_id, &error)),
            };
            if let Some(frame) = frame {
                socket.push(Outbound::Frame(Arc::new(Utf8Bytes::from(frame))), metrics);
            }
        }
    }
}

fn success_payload(session_id: &str, body: ReplyBody) -> Value {
    match body {
        ReplyBody::Message { message, .. } => json!({ "ok": true, "message": message }),
        ReplyBody::ReadPosition(position) => json!({
            "ok": true,
            "sessionId": session_id,
            "userId": position.user_id,
            "role": position.role,
            "upToSeq": position.up_to_seq,
        }),
        ReplyBody::Session(session) => json!({ "ok": true, "session": session }),
        ReplyBody::Done => json!({ "ok": true }),
        ReplyBody::Reactions { seq, reactions } => json!({
            "ok": true,
            "sessionId": session_id,
            "seq": seq,
            "reactions": reactions,
        }),
    }
}
