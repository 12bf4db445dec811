-- Files uploaded into a session. A row is written once the bytes are in
-- the blob store (the blob carries the same id); `referenced_by_seq` is set
-- when a message of the session refers to the file, and rows still without
-- one after a while are removed with their blob.
CREATE TABLE attachments (
    id                TEXT PRIMARY KEY,
    session_id        TEXT NOT NULL REFERENCES sessions (id),
    uploader_id       TEXT NOT NULL,
    name              TEXT NOT NULL,
    size              INTEGER NOT NULL,
    content_type      TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    width             INTEGER,
    height            INTEGER,
    created_at        INTEGER NOT NULL,
    referenced_by_seq INTEGER
);
CREATE INDEX attachments_by_session ON attachments (session_id);
CREATE INDEX attachments_unreferenced ON attachments (created_at) WHERE referenced_by_seq IS NULL;
