-- PostgreSQL: the message log, the offline queue, stored room membership and the id
-- reservation, as ../0002_messages.sql (SQLite). `payload` stays TEXT, not jsonb: it is
-- replayed byte for byte as it was delivered (jsonb would reorder keys and respace it);
-- `payload::jsonb` reads it.

CREATE TABLE messages (
    message_id      BIGINT PRIMARY KEY,
    event           TEXT NOT NULL,
    target_kind     TEXT NOT NULL,      -- all, user, room or role
    target          TEXT,               -- the user id, room or role; NULL for all
    sender_id       TEXT NOT NULL,
    body            TEXT NOT NULL,
    type            TEXT,
    payload         TEXT NOT NULL,
    client_msg_id   TEXT,
    live_recipients BIGINT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE UNIQUE INDEX messages_by_client_msg_id
    ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_target ON messages (target_kind, target, message_id);
CREATE INDEX messages_by_time ON messages (created_at);

CREATE TABLE deliveries (
    user_id      TEXT NOT NULL,
    message_id   BIGINT NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
    queued_at    TEXT NOT NULL,
    delivered_at TEXT,
    PRIMARY KEY (user_id, message_id)
);

CREATE INDEX deliveries_pending ON deliveries (user_id, message_id) WHERE delivered_at IS NULL;
CREATE INDEX deliveries_by_message ON deliveries (message_id);

CREATE TABLE room_members (
    room      TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
);

CREATE INDEX room_members_by_user ON room_members (user_id);

-- 'message_id_reserved_through' is raised by one atomic `value = value + block` per
-- reservation, so nodes sharing the database get disjoint blocks of ids.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
