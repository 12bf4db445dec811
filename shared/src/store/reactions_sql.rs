//! Reactions and delivery positions as both stores keep them: the rows of
//! `message_reactions` (migration 7) and `delivery_positions` (migration 8),
//! the SQL that reads and writes them, spelled per dialect, and the one rule
//! that turns a message's reaction rows into the list clients see.
//!
//! The list's order is decided here, in code, rather than by an ORDER BY, so
//! that both databases (and the worker, which keeps the rows of the messages
//! it changes) order it the same way whatever their collations: emoji by
//! when each was first used, then bytewise; within one, users by when they
//! reacted, then by id.

use std::collections::BTreeMap;

use crate::protocol::{Message, Reaction};
use crate::store::sql::Dialect;
use crate::Timestamp;

/// One user's reaction to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReactionRow {
    pub emoji: String,
    pub user_id: String,
    pub created_at: Timestamp,
}

/// The reactions of one message as clients see them (Message `reactions`).
pub fn reaction_list(rows: &[ReactionRow]) -> Vec<Reaction> {
    let mut by_emoji: BTreeMap<&str, Vec<&ReactionRow>> = BTreeMap::new();
    for row in rows {
        by_emoji.entry(row.emoji.as_str()).or_default().push(row);
    }
    let mut groups: Vec<(Timestamp, &str, Vec<&ReactionRow>)> = by_emoji
        .into_iter()
        .map(|(emoji, mut users)| {
            users.sort_by(|a, b| (a.created_at, &a.user_id).cmp(&(b.created_at, &b.user_id)));
            let first = users.first().map_or(Timestamp(0), |row| row.created_at);
            (first, emoji, users)
        })
        .collect();
    groups.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    groups
        .into_iter()
        .map(|(_, emoji, users)| Reaction {
            emoji: emoji.to_owned(),
            count: i64::try_from(users.len()).unwrap_or(i64::MAX),
            user_ids: users.into_iter().map(|row| row.user_id.clone()).collect(),
        })
        .collect()
}

/// Sets the `reactions` of `messages` (one session's page) from the rows
/// read for it, (seq, row) in any order; a message without rows has none.
pub(crate) fn fill_reactions(messages: &mut [Message], rows: Vec<(i64, ReactionRow)>) {
    let mut by_seq: BTreeMap<i64, Vec<ReactionRow>> = BTreeMap::new();
    for (seq, row) in rows {
        by_seq.entry(seq).or_default().push(row);
    }
    for message in messages {
        message.reactions = by_seq
            .get(&message.seq)
            .map(|rows| reaction_list(rows))
            .unwrap_or_default();
    }
}

/// The reaction rows of a session's messages between two seqs (parameters:
/// session, first seq, last seq): one read per page, not per message.
pub(crate) fn reactions_between(dialect: Dialect) -> String {
    format!(
        "SELECT seq, emoji, user_id, created_at FROM message_reactions \
         WHERE session_id = {} AND seq BETWEEN {} AND {}",
        dialect.param(1),
        dialect.param(2),
        dialect.param(3)
    )
}

/// The reaction rows of one message (parameters: session, seq).
pub(crate) fn reactions_of_message(dialect: Dialect) -> String {
    format!(
        "SELECT emoji, user_id, created_at FROM message_reactions \
         WHERE session_id = {} AND seq = {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// Adds a reaction (session, seq, emoji, user, time); one already there
/// keeps its time.
pub(crate) fn insert_reaction(dialect: Dialect) -> String {
    format!(
        "INSERT INTO message_reactions (session_id, seq, emoji, user_id, created_at) \
         VALUES ({}, {}, {}, {}, {}) ON CONFLICT (session_id, seq, emoji, user_id) DO NOTHING",
        dialect.param(1),
        dialect.param(2),
        dialect.param(3),
        dialect.param(4),
        dialect.param(5)
    )
}

/// Takes a reaction back (session, seq, emoji, user).
pub(crate) fn delete_reaction(dialect: Dialect) -> String {
    format!(
        "DELETE FROM message_reactions \
         WHERE session_id = {} AND seq = {} AND emoji = {} AND user_id = {}",
        dialect.param(1),
        dialect.param(2),
        dialect.param(3),
        dialect.param(4)
    )
}

/// Sets a delivery position (session, user, role, up to seq, time).
pub(crate) fn upsert_delivery_position(dialect: Dialect) -> String {
    format!(
        "INSERT INTO delivery_positions (session_id, user_id, role, up_to_seq, delivered_at) \
         VALUES ({}, {}, {}, {}, {}) ON CONFLICT (session_id, user_id) DO UPDATE SET \
         role = excluded.role, up_to_seq = excluded.up_to_seq, \
         delivered_at = excluded.delivered_at",
        dialect.param(1),
        dialect.param(2),
        dialect.param(3),
        dialect.param(4),
        dialect.param(5)
    )
}

/// One delivery position (parameters: session, user).
pub(crate) fn delivery_position_of(dialect: Dialect) -> String {
    format!(
        "SELECT up_to_seq FROM delivery_positions WHERE session_id = {} AND user_id = {}",
        dialect.param(1),
        dialect.param(2)
    )
}

/// The delivery positions of one session (the parameter), by user id.
pub(crate) fn delivery_positions(dialect: Dialect) -> String {
    format!(
        "SELECT user_id, role, up_to_seq FROM delivery_positions \
         WHERE session_id = {} ORDER BY user_id",
        dialect.param(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(emoji: &str, user: &str, at: i64) -> ReactionRow {
        ReactionRow {
            emoji: emoji.into(),
            user_id: user.into(),
            created_at: Timestamp(at),
        }
    }

    #[test]
    fn emoji_follow_their_first_use_and_users_their_reaction() {
        let rows = [
            row("❤️", "c", 5),
            row("👍", "b", 3),
            row("👍", "a", 3),
            row("❤️", "a", 2),
            row("🎉", "z", 2),
        ];
        let list = reaction_list(&rows);
        let seen: Vec<(&str, i64, Vec<&str>)> = list
            .iter()
            .map(|r| {
                (
                    r.emoji.as_str(),
                    r.count,
                    r.user_ids.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        // ❤️ and 🎉 were both first used at 2: bytewise, ❤️ (U+2764) first.
        assert_eq!(
            seen,
            vec![
                ("❤️", 2, vec!["a", "c"]),
                ("🎉", 1, vec!["z"]),
                ("👍", 2, vec!["a", "b"]),
            ]
        );
        assert!(reaction_list(&[]).is_empty());
    }

    #[test]
    fn an_emoji_moves_back_when_its_first_user_takes_it_back() {
        let before = [row("👍", "a", 1), row("❤️", "b", 2), row("👍", "c", 3)];
        assert_eq!(reaction_list(&before)[0].emoji, "👍");
        let after = [row("❤️", "b", 2), row("👍", "c", 3)];
        assert_eq!(reaction_list(&after)[0].emoji, "❤️");
    }
}
