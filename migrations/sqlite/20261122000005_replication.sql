-- Copies of verified blobs between regions that are being made, or that failed and wait for a
-- retry. A replica claims a copy by holding its lease (claimed_by, lease_until, unix seconds)
-- and renews it while it copies; a lease that ran out (a killed replica, or the retry time of
-- a failed copy) may be claimed by any replica. The row goes when the copy is recorded as an
-- instance, or when the file's instances are deleted.
CREATE TABLE replications (
    file_id BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    claimed_by TEXT NOT NULL,
    lease_until BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created BIGINT NOT NULL,
    PRIMARY KEY (file_id, region)
);
CREATE INDEX replications_lease_until ON replications (lease_until);
