-- The audit log: one hash chain over every collection (server/audit.py). Each record carries
-- the hash of the one before; audit_head holds the last (seq, hash), and locking its one row
-- serialises appends. No foreign key to collections: deleting a collection keeps its records.
-- Times are ISO 8601 text in UTC and details canonical JSON text, stored exactly as hashed.

CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY CHECK (seq >= 1),
    recorded_at TEXT NOT NULL,
    action      TEXT NOT NULL,
    collection  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    client      TEXT,
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);

CREATE INDEX audit_log_by_collection ON audit_log (collection, seq);

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
