-- How far a session's messages reached each participant's client, as
-- `read_positions` holds how far they read; the two move apart.
CREATE TABLE delivery_positions (
    session_id   TEXT NOT NULL REFERENCES sessions (id),
    user_id      TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq    INTEGER NOT NULL,
    delivered_at INTEGER NOT NULL,
    PRIMARY KEY (session_id, user_id)
);
