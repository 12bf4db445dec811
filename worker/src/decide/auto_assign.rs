//! `AutoAssign` and `ReturnToQueue`: the two commands routing issues on
//! its own. The first gives a session of an automatic pool out when its
//! turn comes (see `routing`); the second gives the chat of an agent who
//! has been gone too long back to its pool's queue. Both change nothing
//! when the session has moved on since they were issued.

use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::SessionStatus;
use chat_shared::Timestamp;

use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn auto_assign(&mut self, session_id: &str, pool: &str, now: Timestamp) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) if record.session.pool == pool => record.clone(),
            Ok(_) => return Decision::reply(ReplyBody::Done),
            Err(e) => return Decision::fail(e),
        };
        self.try_auto_assign(&record, now)
            .unwrap_or_else(|| Decision::reply(ReplyBody::Done))
    }

    pub(super) fn return_to_queue(&mut self, session_id: &str, agent_id: &str) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        let still_theirs = record.session.status == SessionStatus::Active
            && record.session.agent_id.as_deref() == Some(agent_id);
        if !still_theirs {
            return Decision::reply(ReplyBody::Done);
        }
        let pool = record.session.pool.clone();
        let mut updated = record;
        updated.session.agent_id = None;
        updated.session.agent_name = None;
        updated.session.status = SessionStatus::Pending;
        updated.session.assigned_at = None;
        self.finish_reassignment(updated, Some(agent_id.to_owned()), &pool, None)
    }
}
