-- The multipart upload a cross-endpoint copy is being assembled in (its key and upload id in
-- the target bucket), noted before its first part is sent. A replica that claims the copy
-- after the one making it died aborts that upload first, so that no orphaned parts stay.
ALTER TABLE replications ADD COLUMN upload_key TEXT;
ALTER TABLE replications ADD COLUMN upload_id TEXT;
