//! `typing`: published straight to the session's channel, never stored;
//! a typist who goes quiet for `TYPING_EXPIRY` is reported as stopped.

use std::time::Duration;

use chat_shared::envelope::{self, Delivery};
use chat_shared::protocol::{frames, server_events, Typing, UserTyping};
use chat_shared::ChatError;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::session::{EventResult, SocketSession};
use crate::metrics::BackplaneOp;

/// Silence after which a typist is reported as stopped.
pub const TYPING_EXPIRY: Duration = Duration::from_secs(5);

impl SocketSession {
    pub(super) async fn typing(&mut self, payload: Value) -> EventResult {
        let request = Typing::parse(payload)?;
        if !self.joined.contains_key(request.session_id.as_str()) {
            // §3's order: an unknown session is not_found before any
            // question of rights.
            self.load_session(&request.session_id).await?;
            return Err(ChatError::forbidden("join the session before typing in it"));
        }
        if request.is_typing {
            let was_typing = self
                .typing
                .insert(
                    request.session_id.to_string(),
                    Instant::now() + TYPING_EXPIRY,
                )
                .is_some();
            if !was_typing {
                self.publish_typing(&request.session_id, true).await;
            }
        } else {
            self.stop_typing(&request.session_id).await;
        }
        Ok(Some(json!({ "ok": true })))
    }

    pub(super) async fn stop_typing(&mut self, session_id: &str) {
        if self.typing.remove(session_id).is_some() {
            self.publish_typing(session_id, false).await;
        }
    }

    /// The earliest moment a typist expires, if anyone is typing.
    pub(super) fn typing_deadline(&self) -> Option<Instant> {
        self.typing.values().min().copied()
    }

    pub(super) async fn expire_typing(&mut self, now: Instant) {
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

    pub(super) async fn publish_typing(&self, session_id: &str, is_typing: bool) {
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
            reply: None,
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
            self.state.metrics.backplane_error(BackplaneOp::Publish);
            tracing::warn!(%error, "typing signal not published");
        }
    }
}
