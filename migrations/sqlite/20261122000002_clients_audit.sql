-- Client credentials and the audit trail, SQLite dialect.
-- A client's access token is never stored: it is re-derived from these claims and the signing
-- key named by kid, so the table holds nothing an attacker could present.
CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    scopes TEXT NOT NULL,
    description TEXT NOT NULL,
    created BIGINT NOT NULL,
    issued BIGINT NOT NULL,
    expires BIGINT NOT NULL,
    revoked BIGINT,
    generation BIGINT NOT NULL,
    jti TEXT NOT NULL,
    kid TEXT NOT NULL,
    updated BIGINT NOT NULL
);

CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target, id);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only');
END;
