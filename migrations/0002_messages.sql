-- The message log, the offline queue, stored room membership and the id reservation.

-- Every public, private and room message and every notification, in id order.
-- `message_id` is the wire `id`: it only grows, also across restarts (see `counters`).
CREATE TABLE messages (
    message_id     INTEGER PRIMARY KEY NOT NULL,
    event          TEXT NOT NULL,      -- broadcast-message, private-message, room-message,
                                       -- notification, broadcast-notification, role-notification
    target_kind    TEXT NOT NULL,      -- all, user, room or role
    target         TEXT,               -- the user id, room or role; NULL for all
    sender_id      TEXT NOT NULL,      -- the sender's user id ('system' for the embedded API)
    body           TEXT NOT NULL,      -- the message text
    type           TEXT,               -- notification type (info, warning, ...); NULL for messages
    payload        TEXT NOT NULL,      -- the JSON payload exactly as delivered (replayed as is)
    client_msg_id  TEXT,               -- the sender's idempotency key, if it gave one
    live_recipients INTEGER NOT NULL,  -- connections it was sent to live (0: none online)
    created_at     TEXT NOT NULL
) STRICT;

CREATE UNIQUE INDEX messages_by_client_msg_id
    ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_target ON messages (target_kind, target, message_id);
CREATE INDEX messages_by_time ON messages (created_at);

-- One row per (message, recipient user) for private messages and notifications to a user:
-- the offline queue is the rows whose `delivered_at` is NULL.
CREATE TABLE deliveries (
    user_id      TEXT NOT NULL,
    message_id   INTEGER NOT NULL REFERENCES messages (message_id) ON DELETE CASCADE,
    queued_at    TEXT NOT NULL,
    delivered_at TEXT,                 -- when a connection of the user took the frame
    PRIMARY KEY (user_id, message_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX deliveries_pending ON deliveries (user_id, message_id) WHERE delivered_at IS NULL;
CREATE INDEX deliveries_by_message ON deliveries (message_id);

-- Room membership per user; it survives reconnects and restarts.
CREATE TABLE room_members (
    room      TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    joined_at TEXT NOT NULL,
    PRIMARY KEY (room, user_id)
) STRICT, WITHOUT ROWID;

CREATE INDEX room_members_by_user ON room_members (user_id);

-- Named counters: 'message_id_reserved_through' (ids are handed out in reserved blocks, so an
-- id seen live before a crash is never reused) and 'pruned_through_message_id' (the highest id
-- retention deleted, so `sync` can say when history is incomplete).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) STRICT;
