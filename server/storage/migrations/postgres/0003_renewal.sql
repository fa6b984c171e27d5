-- What the renewer needs to find due collections with one indexed query instead of reading
-- every collection: the expiry of the latest timestamp and of the latest server-signed snapshot
-- (NULL: the server does not renew it), written by each commit that stores them, and a claim
-- (lease) that keeps every other renewer, on any host, off a collection being renewed.

ALTER TABLE collections ADD COLUMN timestamp_expires TIMESTAMPTZ;
ALTER TABLE collections ADD COLUMN snapshot_expires TIMESTAMPTZ;
ALTER TABLE collections ADD COLUMN renew_claimed_until TIMESTAMPTZ;

CREATE INDEX collections_timestamp_expires ON collections (timestamp_expires);
CREATE INDEX collections_snapshot_expires ON collections (snapshot_expires);

-- Back-fill from the stored JSON. Whether an existing snapshot was signed by the server is not
-- known here: every snapshot is assumed to be, and the renewer stops tracking one the signer
-- has no key for. A file that is not TUF JSON (none should be) leaves NULL rather than failing
-- the upgrade.
CREATE FUNCTION pg_temp.tufnotary_expires(data BYTEA) RETURNS TIMESTAMPTZ AS $$
BEGIN
    RETURN (convert_from(data, 'UTF8')::jsonb -> 'signed' ->> 'expires')::timestamptz;
EXCEPTION WHEN others THEN
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

UPDATE collections SET
    timestamp_expires = (SELECT pg_temp.tufnotary_expires(f.data)
                         FROM files f WHERE f.collection_id = collections.id AND f.role = 'timestamp'
                         ORDER BY f.version DESC LIMIT 1),
    snapshot_expires = (SELECT pg_temp.tufnotary_expires(f.data)
                        FROM files f WHERE f.collection_id = collections.id AND f.role = 'snapshot'
                        ORDER BY f.version DESC LIMIT 1);
