//! The client events of docs/protocol.md for one connected socket: join and
//! leave (served by the gateway itself from the store), send-message and
//! mark-read (forwarded to the worker, acked when it answers), and typing
//! (published straight to the session, never stored). Also the per-socket
//! delivery rules for `new-message`: drop what the socket already has,
//! repair any gap from the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chat_shared::envelope::{self, Command, Delivery};
use chat_shared::protocol::{
    client_events, server_events, JoinSession, LeaveSession, MarkRead, Message, RefreshToken, Role,
    SendMessage, Session, SessionJoined, Typing, UserTyping,
};
use chat_shared::ChatError;
use serde_json::{json, Value};
use tokio::time::Instant;

use chat_shared::permissions::may_read;

use crate::commands::submit;
use crate::config::JOIN_REPLY_MAX_BYTES;
use crate::history;
use crate::hub::SocketHandle;
use crate::presence;
use crate::rate_limit::EventBudgets;
use crate::requests::{AckKind, Waiter};
use crate::state::GatewayState;
use crate::token_lifetime::TokenLifetime;
use chat_shared::protocol::frames;

/// Silence after which a typist is reported as stopped.
pub const TYPING_EXPIRY: Duration = Duration::from_secs(5);
/// Most messages a join returns after `lastSeq`.
pub const JOIN_CATCH_UP_LIMIT: usize = 500;
/// Messages a join returns without `lastSeq`.
pub const JOIN_LATEST_LIMIT: usize = 50;
/// What a join after `lastSeq`, a gap repair or a resync may write at once.
const CATCH_UP: history::Budget = history::Budget {
    messages: JOIN_CATCH_UP_LIMIT,
    bytes: JOIN_REPLY_MAX_BYTES,
};
/// What a join without `lastSeq` may write at once.
const LATEST: history::Budget = history::Budget {
    messages: JOIN_LATEST_LIMIT,
    bytes: JOIN_REPLY_MAX_BYTES,
};

/// What a socket has of a joined session.
#[derive(Debug, Clone, Copy)]
struct JoinedSession {
    /// Highest `seq` the socket has been given.
    cursor: i64,
    /// The join left more history than it returned: the client pages it
    /// over REST, so live messages go out without gap repair.
    paging: bool,
}

/// The answer to one event: an immediate ack payload, or nothing yet (the
/// worker's reply will produce the ack).
pub type EventResult = Result<Option<Value>, ChatError>;

pub struct SocketSession {
    state: Arc<GatewayState>,
    pub handle: Arc<SocketHandle>,
    /// Channels joined besides sessions (user, pools, admins).
    pub base_rooms: Vec<String>,
    joined: HashMap<String, JoinedSession>,
    typing: HashMap<String, Instant>,
    budgets: EventBudgets,
    /// Frames the current event writes before its own answer.
    immediate: Vec<String>,
    /// Until when the socket's token grants its rights.
    pub lifetime: TokenLifetime,
    /// Session rooms the hub revoked: left on disconnect.
    revoked_rooms: Vec<String>,
    /// An event was refused for its budget since the connection last
    /// asked: it then reads this socket's next frame a little later.
    over_budget: bool,
}

impl SocketSession {
    pub fn new(
        state: Arc<GatewayState>,
        handle: Arc<SocketHandle>,
        lifetime: TokenLifetime,
    ) -> Self {
        let budgets = EventBudgets::new(
            state.config.rate_limit_per_sec,
            state.config.rate_limit_burst,
        );
        SocketSession {
            state,
            handle,
            base_rooms: Vec::new(),
            joined: HashMap::new(),
            typing: HashMap::new(),
            budgets,
            immediate: Vec::new(),
            lifetime,
            revoked_rooms: Vec::new(),
            over_budget: false,
        }
    }

    /// Whether an event went over its budget since the last call.
    pub fn take_over_budget(&mut self) -> bool {
        std::mem::take(&mut self.over_budget)
    }

    /// The rooms every socket of this identity is in: its user's, its
    /// pools' (agents) or the admins'.
    fn granted_base_rooms(&self) -> Vec<String> {
        let names = self.state.hub.names();
        let identity = self.handle.identity();
        let mut rooms = vec![names.user_channel(&identity.user_id)];
        match identity.role {
            Role::Agent => rooms.extend(identity.pools.iter().map(|p| names.pool_channel(p))),
            Role::Admin => rooms.push(names.admin_channel()),
            Role::Customer => {}
        }
        rooms
    }

    /// Joins the granted base rooms it is not in yet.
    pub async fn join_base_rooms(&mut self) -> Result<(), chat_shared::backplane::BackplaneError> {
        for room in self.granted_base_rooms() {
            if self.base_rooms.contains(&room) {
                continue;
            }
            self.state.hub.join(&room, &self.handle).await?;
            self.base_rooms.push(room);
        }
        Ok(())
    }

    /// `refresh-token`: the same user and role with a new expiry; when the
    /// pools differ, the socket's pool rooms and presence follow, and it
    /// leaves every joined session it may no longer read, after a
    /// `session-updated` saying how the session stands.
    async fn refresh_token(&mut self, payload: Value) -> EventResult {
        let request = RefreshToken::parse(payload)?;
        let token = request
            .token
            .strip_prefix("Bearer ")
            .unwrap_or(&request.token);
        let verified = self.state.verifier.verify_token(token).map_err(|error| {
            tracing::debug!(%error, "refresh token refused");
            let message = match error {
                chat_shared::auth::AuthError::TokenExpired => "the token has expired",
                _ => "the token is not valid",
            };
            ChatError::new(chat_shared::ErrorCode::Unauthorized, message)
        })?;
        let current = self.handle.identity();
        if verified.identity.user_id != current.user_id || verified.identity.role != current.role {
            return Err(ChatError::forbidden(
                "a refreshed token must name the same user and role",
            ));
        }
        let pools_changed = verified.identity.pools != current.pools;
        if pools_changed {
            presence::agent_disconnected(&self.state, &current).await;
        }
        self.handle.set_identity(verified.identity);
        if pools_changed {
            presence::agent_connected(&self.state, &self.handle.identity()).await;
            self.follow_new_pools().await?;
        }
        self.lifetime.renew(verified.expires_at);
        Ok(Some(
            json!({ "ok": true, "expiresAt": verified.expires_at }),
        ))
    }

    /// After a change of pools: leave the pool rooms no longer granted,
    /// join the new ones, and leave the sessions no longer readable.
    async fn follow_new_pools(&mut self) -> EventResult {
        let granted = self.granted_base_rooms();
        let stale: Vec<String> = self
            .base_rooms
            .iter()
            .filter(|room| !granted.contains(room))
            .cloned()
            .collect();
        for room in stale {
            self.state.hub.leave(&room, &self.handle).await;
            self.base_rooms.retain(|r| r != &room);
        }
        self.join_base_rooms().await.map_err(|error| {
            tracing::warn!(%error, "pool rooms not joined after a refresh");
            ChatError::unavailable("the chat backplane is unavailable; try again")
        })?;
        let joined: Vec<String> = self.joined.keys().cloned().collect();
        for session_id in joined {
            let session = self.load_session(&session_id).await?;
            if !may_read(&self.handle.identity(), &session) {
                self.immediate.push(frames::event(
                    server_events::SESSION_UPDATED,
                    &json!({ "session": session }),
                ));
                self.leave_session(&session_id).await;
            }
        }
        Ok(None)
    }

    /// Handles one client event; returns the frames to write at once, in
    /// order, ahead of anything queued.
    pub async fn handle_event(
        &mut self,
        name: &str,
        payload: Value,
        ack_id: Option<u64>,
    ) -> Vec<String> {
        self.state.metrics.event_received(name);
        // Before anything else: a flood costs the server as little as can be.
        let result = if !self.budgets.try_take(name, std::time::Instant::now()) {
            self.state.metrics.rate_limited.inc();
            self.over_budget = true;
            Err(ChatError::new(
                chat_shared::ErrorCode::RateLimited,
                "too many events of this kind; slow down",
            ))
        } else {
            self.dispatch(name, payload, ack_id).await
        };
        let mut out = std::mem::take(&mut self.immediate);
        match result {
            Ok(Some(value)) => out.extend(ack_id.map(|id| frames::ack(id, &value))),
            Ok(None) => {}
            Err(error) => out.push(frames::failure(ack_id, &error)),
        }
        out
    }

    async fn dispatch(&mut self, name: &str, payload: Value, ack_id: Option<u64>) -> EventResult {
        match name {
            client_events::JOIN_SESSION => self.join(payload).await,
            client_events::LEAVE_SESSION => self.leave(payload).await,
            client_events::SEND_MESSAGE => self.send(payload, ack_id).await,
            client_events::TYPING => self.typing(payload).await,
            client_events::MARK_READ => self.mark_read(payload, ack_id).await,
            client_events::REFRESH_TOKEN => self.refresh_token(payload).await,
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(ChatError::invalid(format!("unknown event {shown:?}")))
            }
        }
    }

    async fn join(&mut self, payload: Value) -> EventResult {
        let request = JoinSession::parse(payload)?;
        let session = self.load_session(&request.session_id).await?;
        if !may_read(&self.handle.identity(), &session) {
            return Err(ChatError::forbidden("you may not join this session"));
        }
        let channel = self.state.hub.names().session_channel(&session.id);
        // Subscribe before reading history: anything committed after the
        // read arrives live, anything before is in the read.
        self.state
            .hub
            .join(&channel, &self.handle)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "join subscription failed");
                ChatError::unavailable("the chat backplane is unavailable; try again")
            })?;
        // Held while the reply is read and encoded, the costly part.
        let _permit = self.state.history_reads.acquire().await;
        let joined = match self.read_join_state(&session.id, request.last_seq).await {
            Ok(joined) => joined,
            Err(error) => {
                if !self.joined.contains_key(&session.id) {
                    self.state.hub.leave(&channel, &self.handle).await;
                }
                return Err(error);
            }
        };
        let cursor = joined
            .messages
            .last()
            .map_or(0, |m| m.seq)
            .max(request.last_seq.unwrap_or(0).min(joined.session.last_seq));
        self.joined.insert(
            session.id.clone(),
            JoinedSession {
                cursor,
                // Only a catch-up leaves older messages to page over REST
                // before live ones; the latest page ends at the newest.
                paging: request.last_seq.is_some() && joined.has_more,
            },
        );
        let value =
            serde_json::to_value(&joined).map_err(|e| ChatError::unavailable(e.to_string()))?;
        // Written at once, like the ack: live messages already queued for
        // this socket (those past `cursor`) must follow it, not precede it.
        self.immediate
            .push(frames::event(server_events::SESSION_JOINED, &value));
        let mut ack = value;
        if let Value::Object(fields) = &mut ack {
            fields.insert("ok".into(), Value::Bool(true));
        }
        Ok(Some(ack))
    }

    async fn read_join_state(
        &self,
        session_id: &str,
        last_seq: Option<i64>,
    ) -> Result<SessionJoined, ChatError> {
        let store = &self.state.store;
        let page = match last_seq {
            Some(last) => history::after(&**store, session_id, last, None, CATCH_UP).await,
            None => history::latest(&**store, session_id, LATEST).await,
        }
        .map_err(store_unavailable)?;
        let read_positions = store
            .read_positions(session_id)
            .await
            .map_err(store_unavailable)?;
        // Read after the messages so that its lastSeq covers them.
        let session = self.load_session(session_id).await?;
        Ok(SessionJoined {
            session,
            messages: page.items,
            has_more: page.has_more,
            read_positions,
        })
    }

    async fn load_session(&self, id: &str) -> Result<Session, ChatError> {
        self.state
            .store
            .get_session(id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(ChatError::session_not_found)
    }

    async fn leave(&mut self, payload: Value) -> EventResult {
        let request = LeaveSession::parse(payload)?;
        self.leave_session(&request.session_id).await;
        Ok(Some(json!({ "ok": true })))
    }

    /// The hub stopped sending this socket the session (its rights
    /// changed): stop typing there and forget it. Its room membership goes
    /// when it leaves, rejoins or disconnects.
    pub async fn forget_session(&mut self, session_id: &str) {
        if let Some(channel) = self.drop_session(session_id).await {
            self.revoked_rooms.push(channel);
        }
    }

    async fn leave_session(&mut self, session_id: &str) {
        if let Some(channel) = self.drop_session(session_id).await {
            self.state.hub.leave(&channel, &self.handle).await;
        }
    }

    /// Stops typing in the session and forgets it; returns its channel
    /// when the socket had joined it.
    async fn drop_session(&mut self, session_id: &str) -> Option<String> {
        self.stop_typing(session_id).await;
        self.joined
            .remove(session_id)
            .map(|_| self.state.hub.names().session_channel(session_id))
    }

    async fn send(&mut self, payload: Value, ack_id: Option<u64>) -> EventResult {
        let started = Instant::now();
        let request = SendMessage::parse(payload)?;
        self.stop_typing(&request.session_id).await;
        let waiter = Waiter::Socket {
            socket: self.handle.clone(),
            ack_id,
            kind: AckKind::SendMessage,
            session_id: request.session_id.clone(),
            started,
        };
        let command = Command::SendMessage {
            session_id: request.session_id,
            content: request.content,
            client_msg_id: Some(request.client_msg_id),
        };
        submit(&self.state, &self.handle.identity(), command, waiter).await;
        Ok(None)
    }

    async fn mark_read(&mut self, payload: Value, ack_id: Option<u64>) -> EventResult {
        let request = MarkRead::parse(payload)?;
        let waiter = Waiter::Socket {
            socket: self.handle.clone(),
            ack_id,
            kind: AckKind::MarkRead,
            session_id: request.session_id.clone(),
            started: Instant::now(),
        };
        let command = Command::MarkRead {
            session_id: request.session_id,
            up_to_seq: request.up_to_seq,
        };
        submit(&self.state, &self.handle.identity(), command, waiter).await;
        Ok(None)
    }

    async fn typing(&mut self, payload: Value) -> EventResult {
        let request = Typing::parse(payload)?;
        if !self.joined.contains_key(&request.session_id) {
            // §3's order: an unknown session is not_found before any
            // question of rights.
            self.load_session(&request.session_id).await?;
            return Err(ChatError::forbidden("join the session before typing in it"));
        }
        if request.is_typing {
            let was_typing = self
                .typing
                .insert(request.session_id.clone(), Instant::now() + TYPING_EXPIRY)
                .is_some();
            if !was_typing {
                self.publish_typing(&request.session_id, true).await;
            }
        } else {
            self.stop_typing(&request.session_id).await;
        }
        Ok(Some(json!({ "ok": true })))
    }

    async fn stop_typing(&mut self, session_id: &str) {
        if self.typing.remove(session_id).is_some() {
            self.publish_typing(session_id, false).await;
        }
    }

    /// The earliest moment a typist expires, if anyone is typing.
    pub fn typing_deadline(&self) -> Option<Instant> {
        self.typing.values().min().copied()
    }

    pub async fn expire_typing(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .typing
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(session, _)| session.clone())
            .collect();
        for session_id in expired {
            self.stop_typing(&session_id).await;
        }
    }

    async fn publish_typing(&self, session_id: &str, is_typing: bool) {
        let identity = self.handle.identity();
        let payload = UserTyping {
            session_id: session_id.to_owned(),
            user_id: identity.user_id.clone(),
            name: identity.name.clone(),
            role: identity.role,
            is_typing,
        };
        let channel = self.state.hub.names().session_channel(session_id);
        let delivery = Delivery {
            event: server_events::USER_TYPING.to_owned(),
            audience: vec![channel.clone()],
            session_id: Some(session_id.to_owned()),
            seq: None,
            except_socket: Some(self.handle.sid.clone()),
            frame: frames::event(server_events::USER_TYPING, &payload),
            committed_at_ms: None,
        };
        let published = match envelope::encode(&delivery) {
            Ok(bytes) => self
                .state
                .backplane
                .publish(&channel, bytes)
                .await
                .map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = published {
            self.state
                .metrics
                .backplane_error(crate::metrics::BackplaneOp::Publish);
            tracing::warn!(%error, "typing signal not published");
        }
    }

    /// Decides what a `new-message` frame becomes for this socket: nothing
    /// if the socket left the session or already has that `seq`, otherwise
    /// the frame, preceded by any messages missing before it.
    pub async fn session_message(
        &mut self,
        session_id: &str,
        seq: i64,
        frame: axum::extract::ws::Utf8Bytes,
    ) -> Vec<axum::extract::ws::Utf8Bytes> {
        let Some(joined) = self.joined.get(session_id).copied() else {
            return Vec::new();
        };
        if seq <= joined.cursor {
            return Vec::new();
        }
        let mut frames_out = Vec::new();
        if seq > joined.cursor + 1 && !joined.paging {
            frames_out.extend(self.missing_before(session_id, joined.cursor, seq).await);
        }
        frames_out.push(frame);
        if let Some(joined) = self.joined.get_mut(session_id) {
            joined.cursor = seq;
        }
        frames_out
    }

    /// Messages after `cursor` and before `seq`, read from the store, for a
    /// socket that missed them (a lost pub/sub message, a backplane
    /// reconnect).
    async fn missing_before(
        &self,
        session_id: &str,
        cursor: i64,
        seq: i64,
    ) -> Vec<axum::extract::ws::Utf8Bytes> {
        let _permit = self.state.history_reads.acquire().await;
        match history::after(&*self.state.store, session_id, cursor, Some(seq), CATCH_UP).await {
            Ok(page) => page
                .items
                .iter()
                .map(|m: &Message| frames::event(server_events::NEW_MESSAGE, m).into())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "gap repair failed");
                Vec::new()
            }
        }
    }

    /// Sends every joined session's messages committed after the socket's
    /// cursor: after a backplane reconnect, live events may have been lost.
    pub async fn catch_up(&mut self) -> Vec<axum::extract::ws::Utf8Bytes> {
        let mut frames_out = Vec::new();
        let sessions: Vec<(String, JoinedSession)> =
            self.joined.iter().map(|(id, j)| (id.clone(), *j)).collect();
        for (session_id, joined) in sessions {
            if joined.paging {
                continue;
            }
            let _permit = self.state.history_reads.acquire().await;
            let page = match history::after(
                &*self.state.store,
                &session_id,
                joined.cursor,
                None,
                CATCH_UP,
            )
            .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "catch-up read failed");
                    continue;
                }
            };
            if let Some(last) = page.items.last() {
                if let Some(entry) = self.joined.get_mut(&session_id) {
                    entry.cursor = last.seq;
                    entry.paging = page.has_more;
                }
            }
            frames_out.extend(
                page.items
                    .iter()
                    .map(|m| frames::event(server_events::NEW_MESSAGE, m).into()),
            );
        }
        frames_out
    }

    /// Leaves every room, withdraws typing and forgets the socket's
    /// pending acks; called once on disconnect.
    pub async fn close(&mut self) {
        self.state.hub.requests.forget_socket(self.handle.key);
        let sessions: Vec<String> = self.joined.keys().cloned().collect();
        for session_id in sessions {
            self.leave_session(&session_id).await;
        }
        let typing: Vec<String> = self.typing.keys().cloned().collect();
        for session_id in typing {
            self.stop_typing(&session_id).await;
        }
        for channel in std::mem::take(&mut self.base_rooms) {
            self.state.hub.leave(&channel, &self.handle).await;
        }
        for channel in std::mem::take(&mut self.revoked_rooms) {
            self.state.hub.leave(&channel, &self.handle).await;
        }
    }
}

fn store_unavailable(error: chat_shared::store::StoreError) -> ChatError {
    tracing::warn!(%error, "store read failed");
    ChatError::unavailable("the chat store is unavailable; try again")
}
