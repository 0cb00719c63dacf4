-- A message to one user is found through its delivery row (`deliveries`' primary key is
-- (user_id, message_id), and every message to a user has one for that user), so the index of
-- messages by target no longer holds messages to users: it is split by kind of target into
-- partial indexes that a private message does not touch. Each index a row touches costs the
-- writer a page of WAL per commit, at a random place for an index ordered by user: this one
-- was one of four scattered inserts per private message (docs/schema.md, "Indexes").
DROP INDEX messages_by_target;
CREATE INDEX messages_public ON messages (message_id) WHERE target_kind = 'all';
CREATE INDEX messages_by_room ON messages (target, message_id) WHERE target_kind = 'room';
CREATE INDEX messages_by_role ON messages (target, message_id) WHERE target_kind = 'role';
