-- Hawk nonces used within the timestamp window, shared by every replica, so that a request
-- replayed to another replica is refused too. The sweeper forgets rows older than the window.
CREATE TABLE hawk_nonces (
    client_id TEXT NOT NULL,
    nonce TEXT NOT NULL,
    ts BIGINT NOT NULL,
    seen BIGINT NOT NULL,
    PRIMARY KEY (client_id, nonce, ts)
);

CREATE INDEX hawk_nonces_seen ON hawk_nonces (seen);
