-- The sha256 of a file's bytes (64 lowercase hex), hashed in the same pass as its sha512 when
-- an upload is verified; NULL for files verified before this column existed until
-- `tooltool-api backfill-sha256` reads their copy. TUF clients such as tough need it beside the
-- sha512 of every target. The partial index keeps the backfill's paging cheap once most rows
-- have one.
ALTER TABLE files ADD COLUMN sha256 TEXT;
CREATE INDEX files_without_sha256 ON files (id) WHERE sha256 IS NULL;
