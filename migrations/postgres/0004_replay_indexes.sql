-- PostgreSQL: the replay index of ../0004_replay_indexes.sql (SQLite): the private messages
-- a user sent, for that arm of the replay (src/store/postgres/replay.rs).
CREATE INDEX messages_private_by_sender
    ON messages (sender_id, message_id)
    WHERE target_kind = 'user' AND event = 'private-message';
