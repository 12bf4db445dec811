//! One connected socket of the chat: the sessions it has joined (with its
//! delivery cursor in each), who it is typing as, its event budgets and
//! its token's lifetime. Client events are dispatched here, in the order
//! of §3: budget first, then the event's own checks.

use std::collections::HashMap;
use std::sync::Arc;

use chat_shared::protocol::client_events;
use chat_shared::protocol::frames;
use chat_shared::ChatError;
use serde_json::Value;
use tokio::time::Instant;

use crate::outbound::SocketHandle;
use crate::rate_limit::EventBudgets;
use crate::state::GatewayState;
use crate::token_lifetime::TokenLifetime;

/// What a socket has of a joined session.
#[derive(Debug, Clone, Copy)]
pub(super) struct JoinedSession {
    /// Highest `seq` the socket has been given.
    pub(super) cursor: i64,
    /// The join left more history than it returned: the client pages it
    /// over REST, so live messages go out without gap repair.
    pub(super) paging: bool,
    /// The socket is also in the session's staff channel (internal notes).
    pub(super) staff: bool,
}

/// The answer to one event: an immediate ack payload, or nothing yet (the
/// worker's reply will produce the ack).
pub(super) type EventResult = Result<Option<Value>, ChatError>;

pub(super) struct SocketSession {
    pub(super) state: Arc<GatewayState>,
    pub(super) handle: Arc<SocketHandle>,
    /// Channels joined besides sessions (user, pools, admins).
    pub(super) base_rooms: Vec<String>,
    pub(super) joined: HashMap<String, JoinedSession>,
    /// When each session's typist here is reported as stopped.
    pub(super) typing: HashMap<String, Instant>,
    budgets: EventBudgets,
    /// Frames the current event writes before its own answer.
    pub(super) immediate: Vec<String>,
    /// Until when the socket's token grants its rights.
    pub(super) lifetime: TokenLifetime,
    /// Session rooms the hub revoked: left on disconnect.
    pub(super) revoked_rooms: Vec<String>,
    /// An event was refused for its budget since the connection last
    /// asked: it then reads this socket's next frame a little later.
    pub(super) over_budget: bool,
}

impl SocketSession {
    pub(super) fn new(
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

    /// Handles one client event; returns the frames to write at once, in
    /// order, ahead of anything queued.
    pub(super) async fn handle_event(
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
            client_events::SET_STATUS => self.set_status(payload).await,
            // Reactions and delivery positions.
            client_events::MARK_DELIVERED => self.mark_delivered(payload, ack_id).await,
            client_events::REACT => self.react(payload, ack_id).await,
            other => {
                let shown: String = other.chars().take(64).collect();
                Err(ChatError::invalid(format!("unknown event {shown:?}")))
            }
        }
    }

    /// Leaves every room, withdraws typing and forgets the socket's
    /// pending acks; called once on disconnect.
    pub(super) async fn close(&mut self) {
        self.state.requests.forget_socket(self.handle.key);
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

pub(super) fn store_unavailable(error: chat_shared::store::StoreError) -> ChatError {
    tracing::warn!(%error, "store read failed");
    ChatError::unavailable("the chat store is unavailable; try again")
}
