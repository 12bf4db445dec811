//! `MarkRead`: a participant says how far they have read a session. Owns
//! that a read position only moves forward and never past the last message,
//! so retried or out-of-order reads cannot undo one another, and that only
//! a real move is stored and announced.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{server_events, MessagesRead, ReadPosition};
use chat_shared::Timestamp;

use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn mark_read(
        &mut self,
        actor: &Identity,
        session_id: &str,
        up_to_seq: i64,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session_of_participant(
            actor,
            session_id,
            "only the session's participants may mark it read",
        ) {
            Ok(record) => record,
            Err(e) => return Decision::fail(e),
        };
        let key = (session_id.to_owned(), actor.user_id.clone());
        let current = self.snapshot.read_positions.get(&key).copied().unwrap_or(0);
        let (position, moved) = advanced(actor, current, up_to_seq, record.session.last_seq);
        let mut decision = Decision::reply(ReplyBody::ReadPosition(position.clone()));
        if let Some(wanted) = moved {
            self.snapshot.read_positions.insert(key, wanted);
            self.read_positions
                .push((session_id.to_owned(), position.clone(), now));
            let payload = MessagesRead {
                session_id: session_id.to_owned(),
                user_id: actor.user_id.clone(),
                role: actor.role,
                up_to_seq: wanted,
                read_at: now,
            };
            decision.deliveries.push(self.delivery(
                server_events::MESSAGES_READ,
                &payload,
                vec![self.names.session_channel(session_id)],
                Some(session_id),
                None,
            ));
        }
        decision
    }
}

/// A position that moves forward only and never past the session's last
/// message (read and delivery positions alike): the position held once
/// `up_to_seq` is asked for, and its new value when it moves.
pub(super) fn advanced(
    actor: &Identity,
    current: i64,
    up_to_seq: i64,
    last_seq: i64,
) -> (ReadPosition, Option<i64>) {
    let wanted = up_to_seq.min(last_seq);
    let position = ReadPosition {
        user_id: actor.user_id.clone(),
        role: actor.role,
        up_to_seq: current.max(wanted),
    };
    (position, (wanted > current).then_some(wanted))
}
