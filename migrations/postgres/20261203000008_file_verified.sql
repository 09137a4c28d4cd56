-- When a file first had a verified copy (unix seconds); NULL while it never had one. The
-- sweeper removes a declaration that never got a verified copy once its last pending upload
-- is gone (issue 25: a wrong declaration must not pin a digest forever), but keeps the record
-- of a file whose copies were deleted, as the protocol says.
ALTER TABLE files ADD COLUMN verified BIGINT;
UPDATE files SET verified = created WHERE id IN (SELECT file_id FROM file_instances);
