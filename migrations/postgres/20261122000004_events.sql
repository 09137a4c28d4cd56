-- The transactional outbox, PostgreSQL dialect: every change inserts its event in its own
-- transaction; GET /events reads it; the RabbitMQ relay sets `published` once the broker
-- confirmed the event. seq orders the feed and only grows: writers take a transaction-scoped
-- advisory lock before inserting events, so seqs also become visible in order (a reader that
-- saw seq N never misses a smaller one committed later).
CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
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
