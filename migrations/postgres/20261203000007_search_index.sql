-- Search indexes (issue 25): substring search over file names and batch authors and messages
-- through pg_trgm GIN indexes on the lowercased text (what the search's LIKE compares), and a
-- pattern index for digest prefixes, so that a search is an index lookup, not a scan of every
-- name. pg_trgm ships in PostgreSQL's contrib (part of Debian's postgresql package) and is a
-- trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX batch_files_filename_trgm ON batch_files USING gin (LOWER(filename) gin_trgm_ops);
CREATE INDEX batches_author_trgm ON batches USING gin (LOWER(author) gin_trgm_ops);
CREATE INDEX batches_message_trgm ON batches USING gin (LOWER(message) gin_trgm_ops);
CREATE INDEX files_digest_pattern ON files (digest text_pattern_ops);
