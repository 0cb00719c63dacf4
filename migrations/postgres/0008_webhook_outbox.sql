-- PostgreSQL: the webhook outbox, as ../0007_webhook_outbox.sql (SQLite). Times are TEXT in
-- the gateway's ISO-8601 UTC format, like every other table. `event_id` is taken from the
-- `webhook_event_id` row of `counters` by the transaction that writes the events, which
-- holds that row until it commits: ids are handed out in commit order across the nodes, so
-- an endpoint's events are read in the order they were committed (a sequence would hand a
-- lower id to a transaction that may commit after a higher one was already sent).
CREATE TABLE webhook_events (
    event_id    BIGINT PRIMARY KEY,
    endpoint    TEXT NOT NULL,
    type        TEXT NOT NULL,
    occurred_at TEXT NOT NULL,
    data        TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     TEXT,
    failed_at   TEXT,
    resent_at   TEXT
);

CREATE INDEX webhook_events_pending ON webhook_events (endpoint, event_id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
CREATE INDEX webhook_events_failed ON webhook_events (endpoint, event_id)
    WHERE failed_at IS NOT NULL;

-- Which node sends an endpoint's events, until when (the database's clock, so the nodes'
-- clocks need not agree). A node renews its lease before every request; a node that dies
-- mid-send leaves the endpoint to another once the lease runs out (the batch it was sending
-- is then sent again: at least once).
CREATE TABLE webhook_leases (
    endpoint   TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
