//! `SendNote`: an internal note, written by staff for staff. Owns who may
//! write one (agents and admins who may write to the session; never a
//! customer), how a retried `client_msg_id` finds its original, the notes'
//! own numbering, and where a note goes: the session's staff channel only,
//! never the session's channel that customers' sockets hear.
//!
//! A note never touches the session row: not `last_seq` (message numbers
//! keep running without gaps), not its version, not the stats. Its number
//! is the session's latest note's plus one; two writers that ever number a
//! note alike collide on the store's unique (session, seq) and the batch is
//! decided again.

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::permissions::may_write_notes;
use chat_shared::protocol::{server_events, Message, Role};
use chat_shared::{ChatError, Timestamp};

use super::send_message::{new_message, open_to_write};
use super::{BatchState, Decision};

impl BatchState {
    pub(super) fn send_note(
        &mut self,
        actor: &Identity,
        session_id: &str,
        content: &str,
        client_msg_id: Option<&str>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        // Rights before the retry lookup: a customer learns nothing of a
        // note, not even that a client id names one.
        if actor.role == Role::Customer {
            return Decision::fail(ChatError::forbidden(
                "internal notes are for the session's agents and admins",
            ));
        }
        if let Some(client_id) = client_msg_id {
            if let Some(original) = self.find_note(session_id, &actor.user_id, client_id) {
                // Published again, as for messages: the first attempt may
                // have been stored without its event going out.
                return self.note_sent(original, true);
            }
        }
        if !may_write_notes(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's agents and admins who may write to it may add notes",
            ));
        }
        if let Err(e) = open_to_write(actor, &record.session) {
            return Decision::fail(e);
        }
        let seq = self.last_note_seq(session_id) + 1;
        let note = Message {
            seq,
            internal: true,
            // Placed after the conversation's latest message, as it is now
            // in this batch.
            after_seq: Some(record.session.last_seq),
            ..new_message(
                &record.session,
                actor,
                content,
                client_msg_id,
                now,
                new_id(),
            )
        };
        self.note_seqs.insert(session_id.to_owned(), seq);
        self.notes.push(note.clone());
        self.note_sent(note, false)
    }

    /// The reply to a note, and its `new-note` to the session's staff.
    /// Without a `seq` on the delivery: gateways keep their message cursors
    /// for messages alone.
    fn note_sent(&self, note: Message, duplicate: bool) -> Decision {
        let delivery = self.delivery(
            server_events::NEW_NOTE,
            &note,
            vec![self.names.session_staff_channel(&note.session_id)],
            Some(&note.session_id),
            None,
        );
        let mut decision = Decision::reply(ReplyBody::Message {
            message: note,
            duplicate,
        });
        decision.deliveries.push(delivery);
        decision
    }

    /// The session's latest note number, counting the batch's own notes.
    fn last_note_seq(&self, session_id: &str) -> i64 {
        self.note_seqs
            .get(session_id)
            .or_else(|| self.snapshot.last_note_seqs.get(session_id))
            .copied()
            .unwrap_or(0)
    }

    fn find_note(&self, session_id: &str, sender: &str, client_id: &str) -> Option<Message> {
        let in_batch = self.notes.iter().find(|n| {
            n.session_id == session_id
                && n.sender_id == sender
                && n.client_msg_id.as_deref() == Some(client_id)
        });
        in_batch.cloned().or_else(|| {
            self.snapshot
                .notes_by_client_id
                .get(&(
                    session_id.to_owned(),
                    sender.to_owned(),
                    client_id.to_owned(),
                ))
                .cloned()
        })
    }
}
