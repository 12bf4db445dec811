//! `MarkDelivered`: a recipient's client says how far the session's
//! messages reached it. Owns that a delivery position, like a read
//! position, only moves forward and never past the last message, that
//! those who may read the session (its participants and its pool's agents)
//! may move theirs, and that only a real move is stored and announced.
//! Delivery and reading are kept apart: neither moves the other.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::permissions::may_read;
use chat_shared::protocol::{server_events, MessagesDelivered};
use chat_shared::store::Mutation;
use chat_shared::{ChatError, Timestamp};

use super::mark_read::advanced;
use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn mark_delivered(
        &mut self,
        actor: &Identity,
        session_id: &str,
        up_to_seq: i64,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        // Invited colleagues are readers while the session is open.
        if !may_read(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's participants and its pool's agents may mark it delivered",
            ));
        }
        let key = (session_id.to_owned(), actor.user_id.clone());
        let current = self
            .snapshot
            .delivery_positions
            .get(&key)
            .copied()
            .unwrap_or(0);
        let (position, moved) = advanced(actor, current, up_to_seq, record.session.last_seq);
        let mut decision = Decision::reply(ReplyBody::ReadPosition(position.clone()));
        if let Some(wanted) = moved {
            self.snapshot.delivery_positions.insert(key, wanted);
            self.reaction_changes.push(Mutation::SetDeliveryPosition {
                session_id: session_id.to_owned(),
                position,
                delivered_at: now,
            });
            let payload = MessagesDelivered {
                session_id: session_id.to_owned(),
                user_id: actor.user_id.clone(),
                role: actor.role,
                up_to_seq: wanted,
                delivered_at: now,
            };
            decision.deliveries.push(self.delivery(
                server_events::MESSAGES_DELIVERED,
                &payload,
                vec![self.names.session_channel(session_id)],
                Some(session_id),
                None,
            ));
        }
        decision
    }
}
