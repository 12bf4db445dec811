//! The client events that read or change sessions: join and leave (served
//! by the gateway itself from the store), send-message, mark-read,
//! mark-delivered and react (forwarded to the worker, acked when it
//! answers).

use chat_shared::envelope::Command;
use chat_shared::permissions::may_read;
use chat_shared::protocol::{
    frames, server_events, AgentEnvelope, JoinSession, LeaveSession, MarkDelivered, MarkRead,
    React, SendMessage, Session, SessionJoined, SetStatus,
};
use chat_shared::ChatError;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::delivery::{CATCH_UP, LATEST};
use super::session::{store_unavailable, EventResult, JoinedSession, SocketSession};
use crate::history;
use crate::requests::Waiter;

/// Timeline entries a join reply carries, the latest; older ones are
/// read over REST.
const JOIN_EVENTS: usize = 50;

impl SocketSession {
    pub(super) async fn join(&mut self, payload: Value) -> EventResult {
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
        // Internal notes: staff also hear the session's notes, subscribed
        // before the read like the session's own channel.
        let staff = match self.join_staff_room(&session.id).await {
            Ok(staff) => staff,
            Err(error) => {
                if !self.joined.contains_key(&session.id) {
                    self.state.hub.leave(&channel, &self.handle).await;
                }
                return Err(error);
            }
        };
        // Held while the reply is read and encoded, the costly part.
        let _permit = self.state.history_reads.acquire().await;
        let joined = match self.read_join_state(&session.id, request.last_seq).await {
            Ok(joined) => joined,
            Err(error) => {
                if !self.joined.contains_key(&session.id) {
                    self.state.hub.leave(&channel, &self.handle).await;
                    self.leave_staff_room(&session.id).await;
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
                staff,
            },
        );
        let value =
            serde_json::to_value(&joined).map_err(|e| ChatError::unavailable(e.to_string()))?;
        // Written at once, like the ack: live messages already queued for
        // this socket (those past `cursor`) must follow it, not precede it.
        self.immediate
            .push(frames::event(server_events::SESSION_JOINED, &value));
        if self.handle.identity().user_id == joined.session.customer_id {
            // A waiting customer learns their place at once; later moves
            // come from the worker.
            if let Ok(Some(place)) =
                crate::routing::queue_position(&self.state, &joined.session).await
            {
                self.immediate
                    .push(frames::event(server_events::QUEUE_POSITION, &place));
            }
        }
        let mut ack = value;
        if let Value::Object(fields) = &mut ack {
            fields.insert("ok".into(), Value::Bool(true));
        }
        Ok(Some(ack))
    }

    pub(super) async fn read_join_state(
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
        let delivery_positions = store
            .delivery_positions(session_id)
            .await
            .map_err(store_unavailable)?;
        let events = store
            .session_events(session_id, JOIN_EVENTS)
            .await
            .map_err(store_unavailable)?;
        // Read after the messages so that its lastSeq covers them.
        let session = self.load_session(session_id).await?;
        // Internal notes, for staff only (read after the session, so
        // that the rights they are read under are current).
        let notes = self.join_notes(&session).await?;
        Ok(SessionJoined {
            session,
            messages: page.items,
            has_more: page.has_more,
            read_positions,
            delivery_positions,
            events,
            notes,
        })
    }

    pub(super) async fn load_session(&self, id: &str) -> Result<Session, ChatError> {
        self.state
            .store
            .get_session(id)
            .await
            .map_err(store_unavailable)?
            .ok_or_else(ChatError::session_not_found)
    }

    pub(super) async fn leave(&mut self, payload: Value) -> EventResult {
        let request = LeaveSession::parse(payload)?;
        self.leave_session(&request.session_id).await;
        Ok(Some(json!({ "ok": true })))
    }

    /// The hub stopped sending this socket the session (its rights
    /// changed): stop typing there and forget it. Its room membership goes
    /// when it leaves, rejoins or disconnects.
    pub(super) async fn forget_session(&mut self, session_id: &str) {
        if let Some(channel) = self.drop_session(session_id).await {
            self.revoked_rooms.push(channel);
        }
    }

    pub(super) async fn leave_session(&mut self, session_id: &str) {
        if let Some(channel) = self.drop_session(session_id).await {
            self.state.hub.leave(&channel, &self.handle).await;
        }
    }

    /// Stops typing in the session and forgets it; returns its channel
    /// when the socket had joined it.
    pub(super) async fn drop_session(&mut self, session_id: &str) -> Option<String> {
        self.stop_typing(session_id).await;
        let joined = self.joined.remove(session_id)?;
        if joined.staff {
            // Internal notes: the staff channel goes with the session. A
            // socket whose rights were revoked leaves it at once too; the
            // hub has already stopped delivering it there.
            self.leave_staff_room(session_id).await;
        }
        Some(self.state.hub.names().session_channel(session_id))
    }

    pub(super) async fn send(&mut self, payload: Value, ack_id: Option<u64>) -> EventResult {
        let started = Instant::now();
        let request = SendMessage::parse(payload)?;
        self.stop_typing(&request.session_id).await;
        let session_id: String = request.session_id.into();
        if request.internal {
            // Internal notes: never a `new-message`, never to customers.
            return self
                .send_note(
                    session_id,
                    request.content,
                    request.client_msg_id.into(),
                    ack_id,
                    started,
                )
                .await;
        }
        // A joined socket keeps this gateway subscribed to the session, so
        // the ack can come with the message's own delivery.
        let events_channel = self
            .joined
            .contains_key(&session_id)
            .then(|| self.state.hub.names().session_channel(&session_id));
        let waiter = Waiter::Socket {
            socket: self.handle.clone(),
            ack_id,
            timed: true,
            session_id: session_id.clone(),
            started,
        };
        let command = Command::SendMessage {
            session_id,
            content: request.content,
            client_msg_id: Some(request.client_msg_id.into()),
            attachment_ids: request.attachment_ids,
        };
        self.state
            .requests
            .submit_receiving(&self.handle.identity(), command, waiter, events_channel)
            .await;
        Ok(None)
    }

    pub(super) async fn set_status(&mut self, payload: Value) -> EventResult {
        let request = SetStatus::parse(payload)?;
        let agent =
            crate::routing::set_status(&self.state, &self.handle.identity(), request.status)
                .await?;
        let value = serde_json::to_value(AgentEnvelope { agent })
            .map_err(|e| ChatError::unavailable(e.to_string()))?;
        let mut ack = value;
        if let Value::Object(fields) = &mut ack {
            fields.insert("ok".into(), Value::Bool(true));
        }
        Ok(Some(ack))
    }

    pub(super) async fn mark_read(&mut self, payload: Value, ack_id: Option<u64>) -> EventResult {
        let MarkRead {
            session_id,
            up_to_seq,
        } = MarkRead::parse(payload)?;
        self.forward(session_id.into(), ack_id, |session_id| Command::MarkRead {
            session_id,
            up_to_seq,
        })
        .await
    }

    pub(super) async fn mark_delivered(
        &mut self,
        payload: Value,
        ack_id: Option<u64>,
    ) -> EventResult {
        let MarkDelivered {
            session_id,
            up_to_seq,
        } = MarkDelivered::parse(payload)?;
        self.forward(session_id.into(), ack_id, |session_id| {
            Command::MarkDelivered {
                session_id,
                up_to_seq,
            }
        })
        .await
    }

    pub(super) async fn react(&mut self, payload: Value, ack_id: Option<u64>) -> EventResult {
        let React {
            session_id,
            seq,
            emoji,
            on,
        } = React::parse(payload)?;
        self.forward(session_id.into(), ack_id, |session_id| Command::React {
            session_id,
            seq,
            emoji,
            on,
        })
        .await
    }

    /// Sends the worker the command `command` builds for the session; the
    /// ack (or `error` event) is written when it answers; its shape follows
    /// the reply. Only a sent message's ack is timed.
    async fn forward(
        &self,
        session_id: String,
        ack_id: Option<u64>,
        command: impl FnOnce(String) -> Command,
    ) -> EventResult {
        let waiter = Waiter::Socket {
            socket: self.handle.clone(),
            ack_id,
            timed: false,
            session_id: session_id.clone(),
            started: Instant::now(),
        };
        self.state
            .requests
            .submit(&self.handle.identity(), command(session_id), waiter)
            .await;
        Ok(None)
    }
}
