-- Reactions to messages: one row per user, emoji and message. A message's
-- list orders emoji by their first row's time and users by theirs, so the
-- time is kept; the key serves both a message's rows and a page's range.
-- No foreign key to sessions, as for messages.
CREATE TABLE message_reactions (
    session_id TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    emoji      TEXT COLLATE "C" NOT NULL,
    user_id    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, seq, emoji, user_id)
);
