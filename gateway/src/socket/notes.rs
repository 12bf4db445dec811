//! Internal notes on a socket: staff sockets joined to a session also join
//! its staff channel (`session-staff:<id>`), the only channel `new-note`
//! is published on, and their join reply carries the latest notes. A
//! customer's socket never joins that channel and its join reply has no
//! `notes` key, so no note reaches a customer on any gateway, whatever
//! path an event takes. `send-message` with `internal: true` becomes the
//! worker's `SendNote`.

use chat_shared::envelope::Command;
use chat_shared::permissions::may_read_notes;
use chat_shared::protocol::{Message, Role, Session};
use chat_shared::store::MessageRange;
use chat_shared::ChatError;
use tokio::time::Instant;

use super::session::{store_unavailable, EventResult, SocketSession};
use crate::requests::Waiter;

/// Notes a join reply carries, the latest; older ones are read over REST.
pub const JOIN_NOTES: usize = 50;

impl SocketSession {
    /// Whether this socket's identity is staff (agent or admin), whose
    /// joins include the session's notes.
    pub(super) fn is_staff(&self) -> bool {
        self.handle.identity().role != Role::Customer
    }

    /// Joins the session's staff channel, for staff sockets only; returns
    /// whether it did.
    pub(super) async fn join_staff_room(&mut self, session_id: &str) -> Result<bool, ChatError> {
        if !self.is_staff() {
            return Ok(false);
        }
        let channel = self.state.hub.names().session_staff_channel(session_id);
        self.state
            .hub
            .join(&channel, &self.handle)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "notes subscription failed");
                ChatError::unavailable("the chat backplane is unavailable; try again")
            })?;
        Ok(true)
    }

    /// Leaves the session's staff channel (a no-op for sockets not in it).
    pub(super) async fn leave_staff_room(&self, session_id: &str) {
        let channel = self.state.hub.names().session_staff_channel(session_id);
        self.state.hub.leave(&channel, &self.handle).await;
    }

    /// The notes of a join reply: the latest, oldest first, for staff who
    /// may read them; `None` (no key at all) for everyone else.
    pub(super) async fn join_notes(
        &self,
        session: &Session,
    ) -> Result<Option<Vec<Message>>, ChatError> {
        if !may_read_notes(&self.handle.identity(), session) {
            return Ok(None);
        }
        let page = self
            .state
            .store
            .notes(&session.id, MessageRange::Latest, JOIN_NOTES)
            .await
            .map_err(store_unavailable)?;
        Ok(Some(page.items))
    }

    /// `send-message` with `internal: true`: the worker checks who may
    /// write notes and answers the ack.
    pub(super) async fn send_note(
        &mut self,
        session_id: String,
        content: String,
        client_msg_id: String,
        ack_id: Option<u64>,
        started: Instant,
    ) -> EventResult {
        let waiter = Waiter::Socket {
            socket: self.handle.clone(),
            ack_id,
            timed: true,
            session_id: session_id.clone(),
            started,
        };
        let command = Command::SendNote {
            session_id,
            content,
            client_msg_id: Some(client_msg_id),
        };
        self.state
            .requests
            .submit(&self.handle.identity(), command, waiter)
            .await;
        Ok(None)
    }
}
