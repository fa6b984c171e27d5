-- Collections (one TUF repository each) and every version of every role's signed metadata.
-- Timestamps are ISO 8601 text in UTC.

CREATE TABLE collections (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- The primary key is the index behind current() and the last guard against duplicate versions.
CREATE TABLE files (
    collection_id INTEGER NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    version       INTEGER NOT NULL CHECK (version >= 1),
    data          BLOB NOT NULL,
    sha256        TEXT NOT NULL,
    length        INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (collection_id, role, version)
);
