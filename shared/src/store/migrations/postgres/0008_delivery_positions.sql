-- How far a session's messages reached each participant's client, as
-- `read_positions` holds how far they read; the two move apart. No
-- foreign key to sessions, as for messages.
CREATE TABLE delivery_positions (
    session_id   TEXT COLLATE "C" NOT NULL,
    user_id      TEXT COLLATE "C" NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('customer', 'agent', 'admin')),
    up_to_seq    BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL,
    PRIMARY KEY (session_id, user_id)
);
