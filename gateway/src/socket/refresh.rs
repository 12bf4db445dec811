//! The rooms a socket is in besides its sessions (its user's, its pools',
//! the admins'), and `refresh-token`: a new expiry, and when the pools
//! change, the rooms, presence and joined sessions follow.

use chat_shared::permissions::may_read;
use chat_shared::protocol::{frames, server_events, RefreshToken, Role};
use chat_shared::ChatError;
use serde_json::{json, Value};

use super::session::{EventResult, SocketSession};

impl SocketSession {
    /// The rooms every socket of this identity is in: its user's, its
    /// pools' (agents) or the admins'.
    pub(super) fn granted_base_rooms(&self) -> Vec<String> {
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
    pub(super) async fn join_base_rooms(
        &mut self,
    ) -> Result<(), chat_shared::backplane::BackplaneError> {
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
    pub(super) async fn refresh_token(&mut self, payload: Value) -> EventResult {
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
            self.state.presence.agent_disconnected(&current).await;
        }
        self.handle.set_identity(verified.identity);
        if pools_changed {
            self.state
                .presence
                .agent_connected(&self.handle.identity())
                .await;
            self.follow_new_pools().await?;
        }
        self.lifetime.renew(verified.expires_at);
        Ok(Some(
            json!({ "ok": true, "expiresAt": verified.expires_at }),
        ))
    }

    /// After a change of pools: leave the pool rooms no longer granted,
    /// join the new ones, and leave the sessions no longer readable.
    pub(super) async fn follow_new_pools(&mut self) -> EventResult {
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
}
