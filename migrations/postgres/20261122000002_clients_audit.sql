-- Client credentials and the audit trail, PostgreSQL dialect.
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
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target, id);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
