-- PostgreSQL: the sending connection of a message, as ../0005_message_sender_session.sql
-- (SQLite). Session ids are unique across the nodes (0005_session_ids.sql), so every node can
-- leave the sender out of a message it reads back from the database.
ALTER TABLE messages ADD COLUMN sender_session BIGINT;
