-- Signed metadata (TUF, issue 22): the two repositories `public` and `internal`, served from
-- here. Every role file ever signed is kept by version (every root version forever: clients
-- walk the chain; the others are what consistent snapshots keep readable), as the canonical
-- JSON bytes that were signed (ASCII), with its expiry (unix seconds).
CREATE TABLE tuf_metadata (
    repo TEXT NOT NULL,
    role TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version >= 1),
    body TEXT NOT NULL,
    expires BIGINT NOT NULL,
    created BIGINT NOT NULL,
    PRIMARY KEY (repo, role, version)
);
-- What the current bins of each repository list: the signer's view of the files, kept
-- beside them so that a change re-signs only the bin (the first byte of sha256(name)) it lands
-- in, read here by that bin.
CREATE TABLE tuf_targets (
    repo TEXT NOT NULL,
    name TEXT NOT NULL,
    bin BIGINT NOT NULL CHECK (bin >= 0 AND bin < 256),
    length BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (repo, name)
);
CREATE INDEX tuf_targets_bin ON tuf_targets (repo, bin);
-- One row per bootstrapped repository: the last event seq the signer has applied (NULL: the
-- bins were never built, the next pass reads every file) and the root version whose online
-- keys signed the current roles (a newer root means everything is signed again).
CREATE TABLE tuf_state (
    repo TEXT PRIMARY KEY,
    last_seq BIGINT,
    signed_root BIGINT NOT NULL
);
