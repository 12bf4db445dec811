-- Files uploaded into a session. A row is written once the bytes are in
-- the blob store (the blob carries the same id); `referenced_by_seq` is set
-- when a message of the session refers to the file, and rows still without
-- one after a while are removed with their blob. No foreign key to
-- sessions, as for messages.
CREATE TABLE attachments (
    id                TEXT COLLATE "C" PRIMARY KEY,
    session_id        TEXT COLLATE "C" NOT NULL,
    uploader_id       TEXT COLLATE "C" NOT NULL,
    name              TEXT NOT NULL,
    size              BIGINT NOT NULL,
    content_type      TEXT NOT NULL,
    sha256            TEXT NOT NULL,
    width             INTEGER,
    height            INTEGER,
    created_at        BIGINT NOT NULL,
    referenced_by_seq BIGINT
);
CREATE INDEX attachments_by_session ON attachments (session_id);
CREATE INDEX attachments_unreferenced ON attachments (created_at) WHERE referenced_by_seq IS NULL;

-- The cluster's blob store: each blob's bytes as numbered chunks, written
-- in the same transaction as its `blobs` row, so a blob is either whole or
-- absent.
CREATE TABLE blobs (
    id         TEXT COLLATE "C" PRIMARY KEY,
    size       BIGINT NOT NULL,
    sha256     TEXT NOT NULL,
    chunk_size INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX blobs_by_age ON blobs (created_at);
CREATE TABLE blob_chunks (
    blob_id TEXT COLLATE "C" NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
    chunk   INTEGER NOT NULL,
    data    BYTEA NOT NULL,
    PRIMARY KEY (blob_id, chunk)
);
-- Files are mostly compressed already (images, PDFs): no second try.
ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
