-- tooltool metadata, SQLite dialect. Times are unix seconds; sizes are 64-bit.
CREATE TABLE files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    digest TEXT NOT NULL UNIQUE,
    size BIGINT NOT NULL CHECK (size >= 0),
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'internal')),
    created BIGINT NOT NULL
);

-- A verified stored copy of a file in one region.
CREATE TABLE file_instances (
    file_id BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (file_id, region)
);

CREATE TABLE batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    author TEXT NOT NULL,
    message TEXT NOT NULL,
    uploaded BIGINT NOT NULL
);

-- The file names a batch carried; one file may appear under several names.
CREATE TABLE batch_files (
    batch_id BIGINT NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
    file_id BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    filename TEXT NOT NULL,
    PRIMARY KEY (batch_id, filename)
);
CREATE INDEX batch_files_file_id ON batch_files (file_id);

-- An upload URL handed out and not yet verified: the staged object it may have written.
CREATE TABLE pending_uploads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id BIGINT NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    region TEXT NOT NULL,
    staging_key TEXT NOT NULL UNIQUE,
    expires BIGINT NOT NULL
);
CREATE INDEX pending_uploads_file_id ON pending_uploads (file_id);
CREATE INDEX pending_uploads_expires ON pending_uploads (expires);
