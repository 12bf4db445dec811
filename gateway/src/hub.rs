//! The gateway's view of its own sockets: who is connected, which rooms
//! (backplane channels) each socket belongs to, and the one subscription
//! connection that feeds them. The hub subscribes to a channel while at
//! least one local socket needs it and unsubscribes when the last leaves
//! (or, while a reply may still come inside one of its deliveries, once
//! none is awaited). Its dispatcher forwards each delivery's pre-encoded
//! frame to the room's sockets without re-encoding, and routes replies
//! (apart, or carried by a delivery) to waiting requests.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chat_shared::auth::Identity;
use chat_shared::backplane::{Backplane, BackplaneError, Subscriber, SubscriptionEvent};
use chat_shared::envelope::{self, Delivery, Reply, RidingReply};
use chat_shared::names::Names;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use chat_shared::permissions::may_read;
use chat_shared::protocol::{server_events, Role, Session};

use crate::channel_locks::ChannelLocks;
use crate::metrics::{BackplaneOp, Metrics};
use crate::outbound::{Outbound, SessionFrame, SocketHandle};
use crate::requests::Requests;
use crate::sio::queue::{self, QueueLimits};

/// The payload of `session-updated`.
#[derive(serde::Deserialize)]
struct SessionUpdated {
    session: Session,
}

#[derive(Default)]
struct Rooms {
    by_channel: HashMap<String, HashMap<u64, Arc<SocketHandle>>>,
    /// Members of a session's room who may no longer read it: they stay
    /// members (so that an event sent to several of their channels still
    /// reaches them once) but get nothing more from that room, until they
    /// leave it or join it again.
    revoked: HashSet<(String, u64)>,
    /// Channels still subscribed after their last member left, because a
    /// request's reply may yet arrive inside one of their deliveries (a
    /// message sent just before leaving); released once nothing awaits them.
    lingering: HashSet<String>,
}

impl Rooms {
    fn is_member(&self, channel: &str, key: u64) -> bool {
        self.by_channel
            .get(channel)
            .is_some_and(|members| members.contains_key(&key))
    }
}

pub struct Hub {
    names: Names,
    gateway_id: String,
    rooms: Mutex<Rooms>,
    subscriber: Box<dyn Subscriber>,
    /// Serialises subscribe/unsubscribe per channel so a channel's first
    /// join and last leave never interleave.
    subscription_changes: ChannelLocks,
    next_key: AtomicU64,
    requests: Arc<Requests>,
    pub metrics: Arc<Metrics>,
    outbound_limits: QueueLimits,
}

impl Hub {
    /// Opens the hub's subscription and subscribes to this gateway's reply
    /// channel. The returned receiver must be driven by `run_dispatcher`.
    pub async fn connect(
        backplane: &dyn Backplane,
        names: Names,
        gateway_id: String,
        requests: Arc<Requests>,
        metrics: Arc<Metrics>,
        outbound_limits: QueueLimits,
    ) -> Result<(Arc<Hub>, mpsc::UnboundedReceiver<SubscriptionEvent>), BackplaneError> {
        let (subscriber, events) = backplane.subscriber().await?;
        subscriber
            .subscribe(&names.gateway_channel(&gateway_id))
            .await?;
        let hub = Hub {
            names,
            gateway_id,
            rooms: Mutex::new(Rooms::default()),
            subscriber,
            subscription_changes: ChannelLocks::default(),
            next_key: AtomicU64::new(1),
            requests,
            metrics,
            outbound_limits,
        };
        Ok((Arc::new(hub), events))
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn gateway_id(&self) -> &str {
        &self.gateway_id
    }

    /// Creates the handle of a new socket and the receiver its connection
    /// task drains.
    pub fn new_socket(
        &self,
        sid: String,
        identity: Identity,
    ) -> (Arc<SocketHandle>, mpsc::Receiver<Outbound>) {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let (queue, receiver) = queue::channel(key, sid, self.outbound_limits);
        (Arc::new(SocketHandle::new(queue, identity)), receiver)
    }

    /// Adds `socket` to `channel`, subscribing first if it is the channel's
    /// first local member. Once this returns, every message published on
    /// the channel reaches the socket.
    pub async fn join(
        &self,
        channel: &str,
        socket: &Arc<SocketHandle>,
    ) -> Result<(), BackplaneError> {
        let _change = self.subscription_changes.lock(channel).await;
        let needs_subscription = {
            let mut rooms = self.lock_rooms();
            !rooms.by_channel.contains_key(channel) && !rooms.lingering.remove(channel)
        };
        if needs_subscription {
            if let Err(error) = self.subscriber.subscribe(channel).await {
                self.metrics.backplane_error(BackplaneOp::Subscribe);
                return Err(error);
            }
        }
        let mut rooms = self.lock_rooms();
        rooms.revoked.remove(&(channel.to_owned(), socket.key));
        rooms
            .by_channel
            .entry(channel.to_owned())
            .or_default()
            .insert(socket.key, socket.clone());
        Ok(())
    }

    /// Removes `socket` from `channel`, unsubscribing when it was the last
    /// (or, while a reply may still come on it, once nothing awaits one).
    pub async fn leave(&self, channel: &str, socket: &SocketHandle) {
        let _change = self.subscription_changes.lock(channel).await;
        // Asked first: no lock of the requests is taken under the rooms'.
        let awaited = self.requests.awaits_events_on(channel);
        let now_empty = {
            let mut rooms = self.lock_rooms();
            rooms.revoked.remove(&(channel.to_owned(), socket.key));
            match rooms.by_channel.get_mut(channel) {
                Some(members) => {
                    members.remove(&socket.key);
                    if members.is_empty() {
                        rooms.by_channel.remove(channel);
                        if awaited {
                            rooms.lingering.insert(channel.to_owned());
                        }
                        !awaited
                    } else {
                        false
                    }
                }
                None => false,
            }
        };
        if now_empty {
            self.unsubscribe(channel).await;
        }
    }

    /// Unsubscribes the lingering channels that no request awaits any more.
    pub async fn release_lingering(&self) {
        let lingering: Vec<String> = self.lock_rooms().lingering.iter().cloned().collect();
        for channel in lingering {
            let _change = self.subscription_changes.lock(&channel).await;
            if self.requests.awaits_events_on(&channel) {
                continue;
            }
            // A join since then has taken the subscription over.
            let released = self.lock_rooms().lingering.remove(&channel);
            if released {
                self.unsubscribe(&channel).await;
            }
        }
    }

    async fn unsubscribe(&self, channel: &str) {
        if let Err(error) = self.subscriber.unsubscribe(channel).await {
            tracing::warn!(%error, %channel, "unsubscribe failed");
        }
    }

    pub fn is_member(&self, channel: &str, socket: &SocketHandle) -> bool {
        self.lock_rooms().is_member(channel, socket.key)
    }

    /// Every connected socket once (for shutdown).
    pub fn all_sockets(&self) -> Vec<Arc<SocketHandle>> {
        let rooms = self.lock_rooms();
        let mut seen = HashMap::new();
        for members in rooms.by_channel.values() {
            for (key, socket) in members {
                seen.entry(*key).or_insert_with(|| socket.clone());
            }
        }
        seen.into_values().collect()
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forwards everything the subscription receives until it closes or
    /// `shutdown` fires.
    pub async fn run_dispatcher(
        self: Arc<Self>,
        mut events: mpsc::UnboundedReceiver<SubscriptionEvent>,
        shutdown: CancellationToken,
    ) {
        let reply_channel = self.names.gateway_channel(&self.gateway_id);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                event = events.recv() => event,
            };
            match event {
                Some(SubscriptionEvent::Message(message)) if message.channel == reply_channel => {
                    match envelope::decode::<Reply>(&message.payload) {
                        Ok(reply) => self.requests.complete(reply),
                        Err(error) => tracing::warn!(%error, "undecodable reply"),
                    }
                }
                Some(SubscriptionEvent::Message(message)) => {
                    match envelope::decode::<Delivery>(&message.payload) {
                        Ok(mut delivery) => {
                            // The ack before the event: the sender sees its
                            // answer first, as when replies came apart.
                            if let Some(riding) = delivery.reply.take() {
                                self.answer_riding(riding);
                            }
                            self.dispatch(&message.channel, delivery)
                        }
                        Err(error) => tracing::warn!(%error, "undecodable delivery"),
                    }
                }
                Some(SubscriptionEvent::Resubscribed) => {
                    tracing::info!("subscription restored; sockets catch up from the store");
                    for socket in self.all_sockets() {
                        socket.push(Outbound::Resync, &self.metrics);
                    }
                }
                None => return,
            }
        }
    }

    /// Completes the request a delivery's reply answers, when it is ours.
    fn answer_riding(&self, riding: RidingReply) {
        if riding.gateway_id != self.gateway_id {
            return;
        }
        match envelope::decode::<Reply>(&riding.reply) {
            Ok(reply) => self.requests.complete(reply),
            Err(error) => tracing::warn!(%error, "undecodable reply"),
        }
    }

    /// The session a `session-updated` on that session's own channel
    /// describes: after it, its room keeps only those who may still read.
    fn revoked_session(&self, channel: &str, delivery: &Delivery) -> Option<Session> {
        if delivery.event != server_events::SESSION_UPDATED {
            return None;
        }
        let session_id = delivery.session_id.as_deref()?;
        if channel != self.names.session_channel(session_id) {
            return None;
        }
        let json = delivery.frame.strip_prefix("42/chat,")?;
        let (_, payload): (String, SessionUpdated) = match serde_json::from_str(json) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::warn!(%error, "undecodable session-updated");
                return None;
            }
        };
        Some(payload.session)
    }

    fn dispatch(&self, channel: &str, delivery: Delivery) {
        let revoked_session = self.revoked_session(channel, &delivery);
        let staff_only = delivery.event == server_events::NEW_NOTE;
        // The envelope's decoder checked the frame as UTF-8 once; the
        // String becomes the room's shared frame without another check.
        let frame = Utf8Bytes::from(delivery.frame);
        let earlier: &[String] = match delivery.audience.iter().position(|c| c == channel) {
            Some(index) => &delivery.audience[..index],
            None => &[],
        };
        // One item for the whole room: each socket's queue holds a pointer.
        let item = match (delivery.seq, delivery.session_id) {
            (Some(seq), Some(session_id)) => Outbound::SessionMessage(Arc::new(SessionFrame {
                session_id,
                seq,
                frame,
            })),
            _ => Outbound::Frame(Arc::new(frame)),
        };
        let mut rooms = self.lock_rooms();
        let Some(members) = rooms.by_channel.get(channel) else {
            return;
        };
        let mut revoked: Vec<Arc<SocketHandle>> = Vec::new();
        let channel_key = channel.to_owned();
        let mut sent = 0u64;
        for socket in members.values() {
            if delivery.except_socket.as_deref() == Some(socket.sid.as_str()) {
                continue;
            }
            if rooms.revoked.contains(&(channel_key.clone(), socket.key)) {
                continue;
            }
            // Internal notes go to staff only. Customers' sockets never
            // join a staff channel; this holds even if one ever did.
            if staff_only && socket.identity().role == Role::Customer {
                continue;
            }
            let loses_access = revoked_session
                .as_ref()
                .is_some_and(|session| !may_read(&socket.identity(), session));
            if loses_access {
                revoked.push(socket.clone());
            }
            if earlier.iter().any(|c| rooms.is_member(c, socket.key)) {
                continue;
            }
            socket.push(item.clone(), &self.metrics);
            sent += 1;
        }
        // Nothing more of the session reaches them after the update that
        // ended their access.
        if let Some(session) = &revoked_session {
            // Internal notes: the session's staff channel stops with it.
            let staff_channel = self.names.session_staff_channel(&session.id);
            for socket in &revoked {
                rooms.revoked.insert((channel_key.clone(), socket.key));
                if rooms.is_member(&staff_channel, socket.key) {
                    rooms.revoked.insert((staff_channel.clone(), socket.key));
                }
                socket.push(
                    Outbound::Revoked(Arc::new(session.id.clone())),
                    &self.metrics,
                );
            }
        }
        drop(rooms);
        self.metrics.events_emitted(&delivery.event, sent);
        if let (Some(committed_at), true) = (delivery.committed_at_ms, sent > 0) {
            self.metrics
                .record_fanout(committed_at, chat_shared::Timestamp::now().millis());
        }
    }
}
