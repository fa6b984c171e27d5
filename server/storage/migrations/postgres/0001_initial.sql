-- Collections (one TUF repository each) and every version of every role's signed metadata.
-- A commit locks its collection's row (SELECT ... FOR UPDATE), which serialises publishes.

CREATE TABLE collections (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at TIMESTAMPTZ NOT NULL
);

-- The primary key is the index behind current() and the last guard against duplicate versions.
CREATE TABLE files (
    collection_id BIGINT NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
    role          TEXT NOT NULL,
    version       BIGINT NOT NULL CHECK (version >= 1),
    data          BYTEA NOT NULL,
    sha256        TEXT NOT NULL,
    length        BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (collection_id, role, version)
);
