-- PostgreSQL: how a membership was made and how much of the room's history it opens, as
-- ../0006_room_member_access.sql (SQLite). `history_from` is TEXT like `messages.created_at`
-- (0002_messages.sql), in the same fixed-width ISO-8601 UTC format, so the two compare as
-- text in time order.
ALTER TABLE room_members
    ADD COLUMN by_server BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN history_from TEXT;
