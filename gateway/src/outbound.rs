//! The chat's handle on one connected socket: the transport's queue to it,
//! and who it acts as. This is what rooms hold and what replies are pushed
//! to; `Outbound` is what may be queued for it.

use std::sync::{Arc, Mutex};

use chat_shared::auth::Identity;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::sio::queue::{OutboundQueue, QueueItem};

/// What the hub and the request table hand a socket to write. Every
/// variant is one pointer wide: a socket's queue allocates room for a block
/// of items up front, so the item's size is memory every idle socket holds.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A finished text frame, shared by every socket it goes to.
    Frame(Arc<Utf8Bytes>),
    /// A `new-message` frame: the socket writes it only if `seq` is new to
    /// it, and repairs any gap before it from the store. Shared by every
    /// socket of the room, which keeps queue slots small.
    SessionMessage(Arc<SessionFrame>),
    /// The subscription was lost and restored: events may have been
    /// missed, so the socket catches up on its joined sessions from the
    /// store.
    Resync,
    /// The socket may no longer read this session (it was transferred
    /// away from its pool): the hub sends it nothing more of the session;
    /// the connection forgets it.
    Revoked(Arc<String>),
}

impl QueueItem for Outbound {
    /// The frame it will write (a resync's catch-up is bounded by the join
    /// reply limit instead).
    fn bytes(&self) -> usize {
        match self {
            Outbound::Frame(frame) => frame.len(),
            Outbound::SessionMessage(shared) => shared.frame.len(),
            Outbound::Resync | Outbound::Revoked(_) => 0,
        }
    }
}

/// One `new-message` as it is fanned out to a room.
#[derive(Debug)]
pub struct SessionFrame {
    pub session_id: String,
    pub seq: i64,
    pub frame: Utf8Bytes,
}

pub struct SocketHandle {
    queue: OutboundQueue<Outbound>,
    /// Who the socket acts as; replaced when the client refreshes its token
    /// (same user and role, possibly other pools).
    identity: Mutex<Arc<Identity>>,
}

impl SocketHandle {
    pub fn new(queue: OutboundQueue<Outbound>, identity: Identity) -> Self {
        SocketHandle {
            queue,
            identity: Mutex::new(Arc::new(identity)),
        }
    }

    pub fn identity(&self) -> Arc<Identity> {
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set_identity(&self, identity: Identity) {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(identity);
    }

    pub fn queue(&self) -> &OutboundQueue<Outbound> {
        &self.queue
    }
}

/// A handle is used as its queue (`key`, `sid`, `kick`, `push`) far more
/// than for its identity.
impl std::ops::Deref for SocketHandle {
    type Target = OutboundQueue<Outbound>;

    fn deref(&self) -> &Self::Target {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queued_item_is_two_words() {
        assert!(std::mem::size_of::<Outbound>() <= 2 * std::mem::size_of::<usize>());
    }
}
