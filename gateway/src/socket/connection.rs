//! The chat as the Socket.IO transport sees it: who may connect (a valid
//! token, a free slot of the user's), what a new socket joins (its user's,
//! pools' or admins' rooms) and announces (agent presence), what its
//! queued items become on the wire, its timers (token lifetime, typing
//! expiry), and what it withdraws when it goes.

use std::sync::Arc;

use chat_shared::auth::{AuthError, VerifiedToken};
use chat_shared::protocol::{frames, server_events, Connected};
use chat_shared::Timestamp;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::session::SocketSession;
use crate::metrics::Rejection;
use crate::outbound::Outbound;
use crate::sio::application::{Application, Auth, Connection, Ending, Refusal, TimerOutcome};
use crate::sio::queue::OutboundQueue;
use crate::state::GatewayState;
use crate::token_lifetime::{LifetimeStep, TokenLifetime};
use crate::user_sockets::SocketSlot;

const UNAUTHORIZED: &str = "unauthorized";

/// Every chat socket of one gateway.
pub struct ChatSockets {
    state: Arc<GatewayState>,
}

impl ChatSockets {
    pub fn new(state: Arc<GatewayState>) -> Self {
        ChatSockets { state }
    }
}

/// A CONNECT that was let in: whose token, and the user's socket slot.
pub struct Admission {
    verified: VerifiedToken,
    slot: SocketSlot,
}

/// One connected chat socket.
pub struct ChatConnection {
    session: SocketSession,
    /// The lifetime step the timer was last set for, and when it is due.
    planned_lifetime: (Instant, Option<LifetimeStep>),
    /// Given back when the connection ends.
    _slot: SocketSlot,
}

impl Application for ChatSockets {
    type Admission = Admission;
    type Item = Outbound;
    type Connection = ChatConnection;

    fn admit(&self, auth: Auth<'_>) -> Result<Admission, Refusal> {
        let state = &self.state;
        let verified = match auth {
            Auth::Given(auth) => authenticate(state, auth),
            Auth::Unparsable => Err(AuthError::InvalidToken("auth is not valid JSON".into())),
        };
        let verified = verified.map_err(|error| {
            state
                .metrics
                .rejected(Rejection::from_auth_code(error.code()))
                .inc();
            Refusal {
                message: UNAUTHORIZED,
                code: error.code(),
            }
        })?;
        let cap = state.config.max_sockets_per_user;
        match state.user_sockets.take(&verified.identity.user_id, cap) {
            Some(slot) => Ok(Admission { verified, slot }),
            None => {
                state.metrics.rejected(Rejection::RateLimited).inc();
                Err(Refusal {
                    message: "too many connections",
                    code: "rate_limited",
                })
            }
        }
    }

    async fn open(
        &self,
        admission: Admission,
        sid: String,
    ) -> Result<(ChatConnection, mpsc::Receiver<Outbound>), Refusal> {
        let state = &self.state;
        let Admission { verified, slot } = admission;
        let role = verified.identity.role;
        let (handle, outbound) = state.hub.new_socket(sid, verified.identity);
        let lifetime = TokenLifetime::new(verified.expires_at);
        let mut session = SocketSession::new(state.clone(), handle.clone(), lifetime);
        if let Err(error) = session.join_base_rooms().await {
            tracing::warn!(%error, "socket rejected: backplane unavailable");
            state.metrics.rejected(Rejection::Unavailable).inc();
            session.close().await;
            return Err(Refusal {
                message: "unavailable",
                code: "unavailable",
            });
        }
        state.metrics.connections_accepted.inc();
        state.metrics.sockets_gauge(role).inc();
        state.presence.agent_connected(&handle.identity()).await;
        let connection = ChatConnection {
            session,
            planned_lifetime: (Instant::now(), None),
            _slot: slot,
        };
        Ok((connection, outbound))
    }
}

impl Connection for ChatConnection {
    type Item = Outbound;

    fn queue(&self) -> &OutboundQueue<Outbound> {
        self.session.handle.queue()
    }

    fn greeting(&self) -> Vec<String> {
        let identity = self.session.handle.identity();
        let connected = Connected {
            user_id: identity.user_id.clone(),
            name: identity.name.clone(),
            role: identity.role,
            pools: identity.pools.clone(),
            socket_id: self.session.handle.sid.clone(),
            server_time: Timestamp::now(),
        };
        vec![frames::event(server_events::CONNECTED, &connected)]
    }

    async fn on_event(&mut self, name: &str, payload: Value, ack_id: Option<u64>) -> Vec<String> {
        self.session.handle_event(name, payload, ack_id).await
    }

    async fn render(&mut self, item: Outbound) -> Vec<Utf8Bytes> {
        match item {
            Outbound::Frame(frame) => vec![Utf8Bytes::clone(&frame)],
            Outbound::SessionMessage(shared) => {
                self.session
                    .session_message(&shared.session_id, shared.seq, shared.frame.clone())
                    .await
            }
            Outbound::Resync => self.session.catch_up().await,
            Outbound::Revoked(session_id) => {
                self.session.forget_session(&session_id).await;
                Vec::new()
            }
        }
    }

    fn take_over_budget(&mut self) -> bool {
        std::mem::take(&mut self.session.over_budget)
    }

    fn next_timer(&mut self) -> Instant {
        let (lifetime_in, step) = self.session.lifetime.next(Timestamp::now());
        let lifetime_at = Instant::now() + lifetime_in;
        self.planned_lifetime = (lifetime_at, step);
        match self.session.typing_deadline() {
            Some(typing_at) => typing_at.min(lifetime_at),
            None => lifetime_at,
        }
    }

    async fn on_timer(&mut self, now: Instant) -> TimerOutcome {
        let mut outcome = TimerOutcome::default();
        let (lifetime_at, step) = self.planned_lifetime;
        match step.filter(|_| lifetime_at <= now) {
            Some(LifetimeStep::Warn) => {
                self.session.lifetime.warned();
                let expires_at = self.session.lifetime.expires_at();
                outcome.frames.push(frames::event(
                    server_events::TOKEN_EXPIRING,
                    &serde_json::json!({ "expiresAt": expires_at }),
                ));
            }
            Some(LifetimeStep::Expire) => {
                outcome.frames.push(frames::event(
                    server_events::ERROR,
                    &serde_json::json!({ "code": "token_expired", "message": "the token has expired; reconnect with a fresh one" }),
                ));
                outcome.close = Some("token expired");
                return outcome;
            }
            None => {}
        }
        self.session.expire_typing(now).await;
        outcome
    }

    async fn close(mut self, _ending: &Ending) {
        self.session.close().await;
        let identity = self.session.handle.identity();
        self.session
            .state
            .presence
            .agent_disconnected(&identity)
            .await;
        self.session
            .state
            .metrics
            .sockets_gauge(identity.role)
            .dec();
    }
}

/// No auth, no `token` key, `null` or an empty string are a missing token;
/// a token of any other type is an invalid one.
fn authenticate(state: &GatewayState, auth: Option<&Value>) -> Result<VerifiedToken, AuthError> {
    let token = match auth.and_then(|a| a.get("token")) {
        None | Some(Value::Null) => "",
        Some(Value::String(token)) => token.strip_prefix("Bearer ").unwrap_or(token),
        Some(_) => return Err(AuthError::InvalidToken("the token is not a string".into())),
    };
    state.verifier.verify_token(token)
}
