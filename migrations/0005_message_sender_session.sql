-- The connection that sent a message (`sessions.session_id`; NULL for the REST and embedded
-- APIs). In a cluster a node that reads a message back from the database (the bus did not
-- bring it in time) leaves the sending connection out of its delivery, as it would have live.
ALTER TABLE messages ADD COLUMN sender_session INTEGER;
