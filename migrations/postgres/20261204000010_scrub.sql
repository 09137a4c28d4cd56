-- The scrubber (issue 24). Each instance records when its bytes were last proven (hashed to
-- the digest; unix milliseconds, so that a pass tells apart the copies it proved itself): at its verification or copy, then at each scrub. A replica scrubbing a copy
-- claims it until `scrub_lease_until`, so that each copy is read once per pass however many
-- replicas scrub.
ALTER TABLE file_instances ADD COLUMN proven BIGINT;
ALTER TABLE file_instances ADD COLUMN scrub_claimed_by TEXT;
ALTER TABLE file_instances ADD COLUMN scrub_lease_until BIGINT;
UPDATE file_instances SET proven = created * 1000;
CREATE INDEX file_instances_proven ON file_instances (proven);
-- Copies found missing or corrupt and taken out of routing, until a verified copy in that
-- region is recorded again (`repaired`): what the admin page and the heartbeat report.
CREATE TABLE lost_copies (
    file_id BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    reason TEXT NOT NULL,
    lost BIGINT NOT NULL,
    quarantined TEXT,
    repaired BIGINT,
    PRIMARY KEY (file_id, region)
);
