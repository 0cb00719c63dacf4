-- Session ids for several nodes on one database: a node takes a block of 100 with one
-- `nextval` (the block's first id; `INCREMENT BY` is the block size, `SESSION_ID_BLOCK` in
-- src/store/session_ids.rs) and hands them out from memory, so two nodes never hand out the
-- same id and a connection costs no round trip. Started past every stored id.
CREATE SEQUENCE session_ids INCREMENT BY 100 MINVALUE 1;
SELECT setval('session_ids', (SELECT COALESCE(MAX(session_id), 0) + 1 FROM sessions), false);
