//! `React`: a writer of the session adds or takes back their reaction to
//! one of its messages. Owns the rules of reactions: who may react (those
//! who may write), that only messages that exist take them, the caps (20
//! different emoji on a message, 10 reactions of one user), and that
//! reacting twice or taking back what was never given changes nothing and
//! announces nothing. The batch keeps each message's reaction rows as it
//! changes them, so later commands of the batch see them and the list sent
//! is ordered as the store will read it back (`store::reaction_list`).

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::protocol::{server_events, MessageReactions, SessionStatus};
use chat_shared::store::{reaction_list, Mutation, ReactionRow};
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

/// Different emoji one message holds at most.
pub const MAX_EMOJI_PER_MESSAGE: usize = 20;
/// Reactions one user gives one message at most.
pub const MAX_REACTIONS_PER_USER: usize = 10;

impl BatchState {
    pub(super) fn react(
        &mut self,
        actor: &Identity,
        session_id: &str,
        seq: i64,
        emoji: &str,
        on: bool,
        now: Timestamp,
    ) -> Decision {
        let record = match self.session_of_participant(
            actor,
            session_id,
            "only those who may write to the session may react",
        ) {
            Ok(record) => record,
            Err(e) => return Decision::fail(e),
        };
        if record.session.status == SessionStatus::Closed {
            return Decision::fail(ChatError::session_closed());
        }
        if seq < 1 || seq > record.session.last_seq {
            return Decision::fail(ChatError::not_found("no such message in this session"));
        }
        let key = (session_id.to_owned(), seq);
        let rows = self.snapshot.reactions.entry(key).or_default();
        let given = rows
            .iter()
            .position(|row| row.emoji == emoji && row.user_id == actor.user_id);
        let changed = match (on, given) {
            (true, None) => {
                let emoji_used = rows.iter().any(|row| row.emoji == emoji);
                let mut distinct: Vec<&str> = rows.iter().map(|row| row.emoji.as_str()).collect();
                distinct.sort_unstable();
                distinct.dedup();
                if !emoji_used && distinct.len() >= MAX_EMOJI_PER_MESSAGE {
                    return Decision::fail(ChatError::conflict(format!(
                        "a message holds at most {MAX_EMOJI_PER_MESSAGE} different emoji"
                    )));
                }
                let own = rows
                    .iter()
                    .filter(|row| row.user_id == actor.user_id)
                    .count();
                if own >= MAX_REACTIONS_PER_USER {
                    return Decision::fail(ChatError::conflict(format!(
                        "you may give a message at most {MAX_REACTIONS_PER_USER} reactions"
                    )));
                }
                rows.push(ReactionRow {
                    emoji: emoji.to_owned(),
                    user_id: actor.user_id.clone(),
                    created_at: now,
                });
                true
            }
            (false, Some(at)) => {
                rows.remove(at);
                true
            }
            // Already given, or never given: nothing to change.
            (true, Some(_)) | (false, None) => false,
        };
        let reactions = reaction_list(rows);
        let mut decision = Decision::reply(ReplyBody::Reactions {
            seq,
            reactions: reactions.clone(),
        });
        if changed {
            self.reaction_changes.push(Mutation::SetReaction {
                session_id: session_id.to_owned(),
                seq,
                emoji: emoji.to_owned(),
                user_id: actor.user_id.clone(),
                on,
                at: now,
            });
            let payload = MessageReactions {
                session_id: session_id.to_owned(),
                seq,
                reactions,
            };
            decision.deliveries.push(self.delivery(
                server_events::MESSAGE_REACTIONS,
                &payload,
                vec![self.names.session_channel(session_id)],
                Some(session_id),
                None,
            ));
        }
        decision
    }
}
