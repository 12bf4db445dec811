//! `SendMessage`: a participant adds a message to a session. Owns who may
//! send and when, how a retried `client_msg_id` finds its original instead
//! of storing a second copy, the first-response time of the assigned agent,
//! the files a message may carry, and the shape of a new message (shared
//! with a session's first message).

use chat_shared::auth::Identity;
use chat_shared::envelope::ReplyBody;
use chat_shared::permissions::may_write;
use chat_shared::protocol::{server_events, Attachment, Message, Role, Session, SessionStatus};
use chat_shared::{ChatError, Timestamp};

use super::{BatchState, Decision};

/// What a sender asks to add: the text, the client's id for it, and the
/// files it carries.
pub(super) struct Outgoing<'a> {
    pub content: &'a str,
    pub client_msg_id: Option<&'a str>,
    pub attachment_ids: &'a [String],
}

impl BatchState {
    pub(super) fn send_message(
        &mut self,
        actor: &Identity,
        session_id: &str,
        outgoing: Outgoing<'_>,
        now: Timestamp,
        new_id: &mut dyn FnMut() -> String,
    ) -> Decision {
        let Outgoing {
            content,
            client_msg_id,
            attachment_ids,
        } = outgoing;
        let record = match self.session(session_id) {
            Ok(record) => record.clone(),
            Err(e) => return Decision::fail(e),
        };
        if let Some(client_id) = client_msg_id {
            if let Some(original) = self.find_by_client_id(session_id, &actor.user_id, client_id) {
                // The event goes out again: if the first attempt stored the
                // message but died before publishing, this is its only
                // delivery. Sockets that saw it already drop it by `seq`.
                return self.message_sent(original, true);
            }
        }
        if !may_write(actor, &record.session) {
            return Decision::fail(ChatError::forbidden(
                "only the session's participants may send",
            ));
        }
        if let Err(e) = open_to_write(actor, &record.session) {
            return Decision::fail(e);
        }
        let attachments = match self.attachments_to_carry(actor, session_id, attachment_ids) {
            Ok(attachments) => attachments,
            Err(e) => return Decision::fail(e),
        };
        let mut message = new_message(
            &record.session,
            actor,
            content,
            client_msg_id,
            now,
            new_id(),
        );
        message.attachments = attachments;
        let mut updated = record;
        updated.session.last_seq = message.seq;
        updated.session.last_message_at = Some(now);
        if actor.role == Role::Agent && updated.first_response_at.is_none() {
            if let Some(assigned_at) = updated.session.assigned_at {
                updated.first_response_at = Some(now);
                updated.first_response_ms = Some((now.millis() - assigned_at.millis()).max(0));
            }
        }
        let pool = updated.session.pool.clone();
        self.store_session(updated);
        self.messages.push(message.clone());
        let mut decision = self.message_sent(message, false);
        decision.stats_pools.push(pool);
        decision
    }

    /// The reply to a send, and the message's event to its session: the
    /// same for a new message and for the original a retry finds.
    fn message_sent(&self, message: Message, duplicate: bool) -> Decision {
        let delivery = self.delivery(
            server_events::NEW_MESSAGE,
            &message,
            vec![self.names.session_channel(&message.session_id)],
            Some(&message.session_id),
            Some(message.seq),
        );
        let mut decision = Decision::reply(ReplyBody::Message { message, duplicate });
        decision.deliveries.push(delivery);
        decision
    }

    /// The files a new message of `actor` may carry: their own uploads to
    /// this session that no message carries yet, this batch's included.
    fn attachments_to_carry(
        &self,
        actor: &Identity,
        session_id: &str,
        attachment_ids: &[String],
    ) -> Result<Vec<Attachment>, ChatError> {
        attachment_ids
            .iter()
            .map(|id| {
                let free = self.snapshot.attachments.get(id).filter(|file| {
                    file.session_id == session_id
                        && file.uploader_id == actor.user_id
                        && file.referenced_by_seq.is_none()
                        && !self
                            .messages
                            .iter()
                            .any(|m| m.attachments.iter().any(|taken| taken.id == *id))
                });
                free.map(|file| file.public()).ok_or_else(|| {
                    ChatError::invalid(format!(
                        "attachment {id} is not a file you uploaded to this session that \
                         no message carries yet"
                    ))
                })
            })
            .collect()
    }

    fn find_by_client_id(
        &self,
        session_id: &str,
        sender: &str,
        client_id: &str,
    ) -> Option<Message> {
        let in_batch = self.messages.iter().find(|m| {
            m.session_id == session_id
                && m.sender_id == sender
                && m.client_msg_id.as_deref() == Some(client_id)
        });
        in_batch.cloned().or_else(|| {
            self.snapshot
                .messages_by_client_id
                .get(&(
                    session_id.to_owned(),
                    sender.to_owned(),
                    client_id.to_owned(),
                ))
                .cloned()
        })
    }
}

/// Whether the session's state lets a writer add to it now: a closed one
/// takes nothing, a pending one only its customer's words (and admins').
/// The same for messages and notes.
pub(super) fn open_to_write(actor: &Identity, session: &Session) -> Result<(), ChatError> {
    match session.status {
        SessionStatus::Closed => Err(ChatError::session_closed()),
        SessionStatus::Pending if actor.role == Role::Agent => {
            Err(ChatError::forbidden("the session is not assigned to you"))
        }
        _ => Ok(()),
    }
}

pub(super) fn new_message(
    session: &Session,
    actor: &Identity,
    content: &str,
    client_msg_id: Option<&str>,
    now: Timestamp,
    id: String,
) -> Message {
    Message {
        id,
        session_id: session.id.clone(),
        seq: session.last_seq + 1,
        sender_id: actor.user_id.clone(),
        sender_name: actor.name.clone(),
        sender_role: actor.role,
        content: content.to_owned(),
        client_msg_id: client_msg_id.map(str::to_owned),
        created_at: now,
        attachments: Vec::new(),
        reactions: Vec::new(),
        internal: false,
        after_seq: None,
    }
}
