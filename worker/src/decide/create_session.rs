//! `CreateSession`: a customer opens a session, which waits in its pool's
//! queue until an agent takes it. Owns who may open one, what a redelivered
//! create answers, and how a first message rides along with the session.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{Role, SessionStatus};
use chat_shared::store::SessionRecord;
use chat_shared::{ChatError, Timestamp};

use super::send_message::new_message;
use super::{BatchState, Decision};

impl BatchState {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create_session(
        &mut self,
        actor: &Identity,
        session_id: &str,
        pool: &str,
        subject: &Option<String>,
        first_message: &Option<String>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        if actor.role != Role::Customer {
            return Decision::fail(ChatError::forbidden("only customers open sessions"));
        }
        if let Some(existing) = self.snapshot.sessions.get(session_id) {
            // A redelivered command: answer with what the first delivery made.
            // While the session still waits, announce it again: if the first
            // attempt committed but died before publishing, this is the
            // pool's only news of it (agents drop repeats by session id).
            if existing.session.customer_id == actor.user_id {
                let session = existing.session.clone();
                let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
                if session.status == SessionStatus::Pending {
                    decision
                        .deliveries
                        .push(self.pending_announcement(&session));
                    decision.stats_pools.push(session.pool);
                }
                return decision;
            }
            return Decision::fail(ChatError::conflict("session id already in use"));
        }
        let mut record = SessionRecord::opened(
            session_id.to_owned(),
            actor.user_id.clone(),
            actor.name.clone(),
            pool.to_owned(),
            subject.clone(),
            now,
        );
        if let Some(content) = first_message {
            let message = new_message(&record.session, actor, content, None, now, new_id());
            record.session.last_seq = message.seq;
            record.session.last_message_at = Some(now);
            self.messages.push(message);
        }
        let session = record.session.clone();
        self.store_session(record.clone());
        let announcement = self.pending_announcement(&session);
        if let Some(mut assigned) = self.try_auto_assign(&record, now) {
            // The pool still hears of it first, as of any new session,
            // then of its assignment; the customer's answer is the
            // session as it now is.
            assigned.deliveries.insert(0, announcement);
            return assigned;
        }
        let mut decision = Decision::reply(ReplyBody::Session(session.clone()));
        decision.deliveries.push(announcement);
        decision.stats_pools.push(pool.to_owned());
        decision
    }
}
