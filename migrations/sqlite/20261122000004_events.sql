-- The transactional outbox, SQLite dialect: every change inserts its event in its own
-- transaction; GET /events reads it; the RabbitMQ relay sets `published` once the broker
-- confirmed the event. seq orders the feed and only grows (AUTOINCREMENT never reuses one).
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    source TEXT NOT NULL,
    time BIGINT NOT NULL,
    subject TEXT NOT NULL,
    -- Who may see it: public, internal (download/internal) or manage.
    audience TEXT NOT NULL,
    data TEXT NOT NULL,
    -- When the broker confirmed it (unix seconds); NULL until then.
    published BIGINT
);
CREATE INDEX events_unpublished ON events (seq) WHERE published IS NULL;
CREATE INDEX events_audience ON events (audience, seq);
CREATE INDEX events_time ON events (time);
