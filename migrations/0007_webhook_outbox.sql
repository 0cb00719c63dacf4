-- The webhook outbox (docs/protocol.md section 15, docs/schema.md). One row per event and
-- endpoint, written in the same transaction as the fact it reports, so a crash loses none;
-- the sender reads an endpoint's pending rows in `event_id` order and marks them sent, or
-- failed once they are older than WEBHOOK_GIVE_UP_SECS. Nothing is written while no endpoint
-- is configured. AUTOINCREMENT: an id is never reused after retention deletes the newest
-- rows, so receivers can deduplicate by it.
CREATE TABLE webhook_events (
    event_id    INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint    TEXT NOT NULL,              -- the endpoint's name ('default' for WEBHOOK_URL)
    type        TEXT NOT NULL,              -- user.online, session.closed, message.stored, ...
    occurred_at TEXT NOT NULL,              -- when the fact happened (the event's timestamp)
    data        TEXT NOT NULL,              -- the event's `data`, JSON
    attempts    INTEGER NOT NULL DEFAULT 0, -- requests that carried it
    last_error  TEXT,                       -- why the last failed request failed
    sent_at     TEXT,                       -- when the endpoint acknowledged it (2xx)
    failed_at   TEXT,                       -- when it was given up on (NULL again when re-sent)
    resent_at   TEXT                        -- when an operator last sent it again: its give-up
                                            -- time counts from then, not from occurred_at
) STRICT;

-- What the sender reads: an endpoint's pending events in order. Partial, so that a sent
-- event leaves it and the index stays the size of the backlog.
CREATE INDEX webhook_events_pending ON webhook_events (endpoint, event_id)
    WHERE sent_at IS NULL AND failed_at IS NULL;
-- The failed events an operator lists and re-sends.
CREATE INDEX webhook_events_failed ON webhook_events (endpoint, event_id)
    WHERE failed_at IS NOT NULL;
