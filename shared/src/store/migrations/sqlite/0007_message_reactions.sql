-- Reactions to messages: one row per user, emoji and message. A message's
-- list orders emoji by their first row's time and users by theirs, so the
-- time is kept; the key serves both a message's rows and a page's range.
CREATE TABLE message_reactions (
    session_id TEXT NOT NULL REFERENCES sessions (id),
    seq        INTEGER NOT NULL,
    emoji      TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq, emoji, user_id)
);
