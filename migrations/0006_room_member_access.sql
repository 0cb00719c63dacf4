-- How a membership was made and how much of the room's history it opens (access control,
-- docs/protocol.md). `by_server`: 1 when the application added the member (REST or the
-- embedded API), 0 when the user's own `join-room` did; an application add over a self-join
-- makes it 1, nothing makes it 0 again. `history_from`: NULL, the member reads every stored
-- message of the room; otherwise only those with `created_at >= history_from` (the same
-- fixed-width ISO-8601 UTC text as `messages.created_at`, so text order is time order).
-- A repeated join keeps the first `history_from`, as it keeps the first `joined_at`.
ALTER TABLE room_members ADD COLUMN by_server INTEGER NOT NULL DEFAULT 0 CHECK (by_server IN (0, 1));
ALTER TABLE room_members ADD COLUMN history_from TEXT;
