-- Users seen and session history. Times are ISO-8601 UTC text with milliseconds
-- ('2026-11-26T07:01:02.345Z'), readable in sqlite3 and usable with its date functions.

-- Every user that ever connected, with what their latest token said about them.
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY NOT NULL,   -- the token's `sub`
    username      TEXT NOT NULL,               -- display name at the last connection
    role          TEXT NOT NULL,               -- role at the last connection
    first_seen_at TEXT NOT NULL,               -- first connection ever
    last_seen_at  TEXT NOT NULL                -- latest connection opened
) STRICT;

-- One row per connection, open while `disconnected_at` is NULL.
CREATE TABLE sessions (
    session_id        INTEGER PRIMARY KEY NOT NULL,
    user_id           TEXT NOT NULL REFERENCES users (user_id),
    transport         TEXT NOT NULL,            -- 'ws' or 'socketio'
    remote_addr       TEXT,                     -- ip:port of the peer as the server saw it
    user_agent        TEXT,                     -- the User-Agent header, if any
    connected_at      TEXT NOT NULL,
    disconnected_at   TEXT,                     -- NULL while connected
    disconnect_reason TEXT                      -- client_closed, idle_timeout, slow_consumer,
                                                -- rate_limited, frame_too_large, server_shutdown,
                                                -- server_restart, transport_error, kicked
) STRICT;

CREATE INDEX sessions_by_user ON sessions (user_id, connected_at);
CREATE INDEX sessions_by_time ON sessions (connected_at);
CREATE INDEX sessions_open ON sessions (disconnected_at) WHERE disconnected_at IS NULL;

-- One row per server start. `last_alive_at` is refreshed while the server runs, so that after
-- a crash the sessions it left open are closed at the last moment it was known to be alive.
CREATE TABLE server_runs (
    run_id        INTEGER PRIMARY KEY NOT NULL,
    started_at    TEXT NOT NULL,
    last_alive_at TEXT NOT NULL,
    stopped_at    TEXT                          -- NULL if the run crashed (or is running)
) STRICT;
