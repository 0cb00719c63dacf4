-- Indexes for the replay behind `sync` and a connection's catch-up (src/store/replay.rs).
-- The replay reads one arm per way a message reaches a reader, each an equality on an index
-- plus a range on `message_id`; `messages_by_target` serves the public, to-user, role and room
-- arms and `deliveries_pending` the offline queue. This one serves the last arm: the private
-- messages a user sent. Partial, so only private messages pay for it.
CREATE INDEX messages_private_by_sender
    ON messages (sender_id, message_id)
    WHERE target_kind = 'user' AND event = 'private-message';
