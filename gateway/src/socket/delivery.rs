//! The per-socket delivery rules for `new-message`: a cursor per joined
//! session, so the socket never gets a `seq` twice; a gap before a live
//! message is repaired from the store; after a lost subscription, every
//! joined session catches up from its cursor.

use chat_shared::protocol::{frames, server_events, Message};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::session::SocketSession;
use crate::config::JOIN_REPLY_MAX_BYTES;
use crate::history;

/// Most messages a join returns after `lastSeq`.
pub const JOIN_CATCH_UP_LIMIT: usize = 500;
/// Messages a join returns without `lastSeq`.
pub const JOIN_LATEST_LIMIT: usize = 50;
/// What a join after `lastSeq`, a gap repair or a resync may write at once.
pub(super) const CATCH_UP: history::Budget = history::Budget {
    messages: JOIN_CATCH_UP_LIMIT,
    bytes: JOIN_REPLY_MAX_BYTES,
};
/// What a join without `lastSeq` may write at once.
pub(super) const LATEST: history::Budget = history::Budget {
    messages: JOIN_LATEST_LIMIT,
    bytes: JOIN_REPLY_MAX_BYTES,
};

impl SocketSession {
    /// Decides what a `new-message` frame becomes for this socket: nothing
    /// if the socket left the session or already has that `seq`, otherwise
    /// the frame, preceded by any messages missing before it.
    pub(super) async fn session_message(
        &mut self,
        session_id: &str,
        seq: i64,
        frame: Utf8Bytes,
    ) -> Vec<Utf8Bytes> {
        let Some(joined) = self.joined.get(session_id).copied() else {
            return Vec::new();
        };
        if seq <= joined.cursor {
            return Vec::new();
        }
        let mut frames_out = Vec::new();
        if seq > joined.cursor + 1 && !joined.paging {
            frames_out.extend(self.missing_before(session_id, joined.cursor, seq).await);
        }
        frames_out.push(frame);
        if let Some(joined) = self.joined.get_mut(session_id) {
            joined.cursor = seq;
        }
        frames_out
    }

    /// Messages after `cursor` and before `seq`, read from the store, for a
    /// socket that missed them (a lost pub/sub message, a backplane
    /// reconnect).
    pub(super) async fn missing_before(
        &self,
        session_id: &str,
        cursor: i64,
        seq: i64,
    ) -> Vec<Utf8Bytes> {
        let _permit = self.state.history_reads.acquire().await;
        match history::after(&*self.state.store, session_id, cursor, Some(seq), CATCH_UP).await {
            Ok(page) => page
                .items
                .iter()
                .map(|m: &Message| frames::event(server_events::NEW_MESSAGE, m).into())
                .collect(),
            Err(error) => {
                tracing::warn!(%error, "gap repair failed");
                Vec::new()
            }
        }
    }

    /// Sends every joined session's messages committed after the socket's
    /// cursor: after a backplane reconnect, live events may have been lost.
    pub(super) async fn catch_up(&mut self) -> Vec<Utf8Bytes> {
        let mut frames_out = Vec::new();
        let sessions: Vec<(String, _)> =
            self.joined.iter().map(|(id, j)| (id.clone(), *j)).collect();
        for (session_id, joined) in sessions {
            if joined.paging {
                continue;
            }
            let _permit = self.state.history_reads.acquire().await;
            let page = match history::after(
                &*self.state.store,
                &session_id,
                joined.cursor,
                None,
                CATCH_UP,
            )
            .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "catch-up read failed");
                    continue;
                }
            };
            if let Some(last) = page.items.last() {
                if let Some(entry) = self.joined.get_mut(&session_id) {
                    entry.cursor = last.seq;
                    entry.paging = page.has_more;
                }
            }
            frames_out.extend(
                page.items
                    .iter()
                    .map(|m| frames::event(server_events::NEW_MESSAGE, m).into()),
            );
        }
        frames_out
    }
}
