-- Internal notes: written by staff for staff, numbered in their own
-- sequence per session (seq 1, 2, 3, ... of the notes) and placed in the
-- conversation by after_seq, the message they follow. Kept apart from
-- messages so that no read of messages can ever return one, and so that
-- message numbers stay without gaps. Like messages, no foreign key: the
-- worker checks the session, and the key would lock its row per note.
CREATE TABLE session_notes (
    id            TEXT COLLATE "C" PRIMARY KEY,
    session_id    TEXT COLLATE "C" NOT NULL,
    seq           BIGINT NOT NULL,
    after_seq     BIGINT NOT NULL,
    sender_id     TEXT COLLATE "C" NOT NULL,
    sender_name   TEXT NOT NULL,
    sender_role   TEXT NOT NULL CHECK (sender_role IN ('agent', 'admin')),
    content       TEXT NOT NULL,
    client_msg_id TEXT COLLATE "C",
    created_at    BIGINT NOT NULL,
    -- Also the notes' history index, as for messages.
    CONSTRAINT session_notes_seq_unique UNIQUE (session_id, seq)
);

-- Idempotent sends of notes, as for messages.
CREATE UNIQUE INDEX session_notes_by_client_id
    ON session_notes (session_id, sender_id, client_msg_id);

-- The colleagues invited into a session, a JSON array of
-- { userId, name, role, joinedAt } in the order they joined: read with the
-- row it belongs to, and written in the transaction that moves the row's
-- version. A constant default: adding the column rewrites no row.
ALTER TABLE sessions ADD COLUMN participants TEXT NOT NULL DEFAULT '[]';

-- Timeline entries of colleagues joining and leaving.
ALTER TABLE session_events DROP CONSTRAINT session_events_kind_check;
ALTER TABLE session_events ADD CONSTRAINT session_events_kind_check
    CHECK (kind IN ('assigned', 'transferred', 'returned', 'closed', 'invited', 'left'));
