//! `Close`: a participant ends a session for good. Owns who may close it,
//! that a session closes once, and who hears who closed it and why.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{
    server_events, ClosedBy, SessionClosed, SessionEventKind, SessionStatus,
};
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn close(
        &mut self,
        actor: &Identity,
        session_id: &str,
        reason: &Option<String>,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session_of_participant(
            actor,
            session_id,
            "only the session's participants may close it",
        ) {
            Ok(record) => record,
            Err(e) => return Decision::fail(e),
        };
        if record.session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        let mut updated = record;
        updated.session.status = SessionStatus::Closed;
        updated.session.closed_at = Some(now);
        let session = updated.session.clone();
        self.store_session(updated);
        let timeline = self.timeline_entry(&session, SessionEventKind::Closed, Some(actor));
        let payload = SessionClosed {
            session_id: session.id.clone(),
            closed_by: ClosedBy {
                user_id: actor.user_id.clone(),
                role: actor.role,
            },
            reason: reason.clone(),
            closed_at: now,
        };
        let mut audience = vec![
            self.names.session_channel(&session.id),
            self.names.pool_channel(&session.pool),
            self.names.admin_channel(),
            self.names.user_channel(&session.customer_id),
        ];
        if let Some(agent) = &session.agent_id {
            audience.push(self.names.user_channel(agent));
        }
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(self.delivery(
            server_events::SESSION_CLOSED,
            &payload,
            audience,
            Some(&session.id),
            None,
        ));
        decision.deliveries.push(timeline);
        decision.stats_pools.push(session.pool);
        decision
    }
}
