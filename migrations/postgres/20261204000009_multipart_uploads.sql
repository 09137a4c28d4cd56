-- A pending upload sent in parts: the store's multipart upload id (NULL for a single PUT) and
-- the size of its parts.
ALTER TABLE pending_uploads ADD COLUMN upload_id TEXT;
ALTER TABLE pending_uploads ADD COLUMN part_size BIGINT;
