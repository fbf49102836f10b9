-- Replies and threads. A reply is a post whose `reply_to` is the seq of its
-- thread's first post (a reply to a reply joins that thread). The first
-- post counts the replies posted in its thread and keeps the time of the
-- last; both are maintained when a reply is stored, once per reply.
ALTER TABLE messages
    ADD COLUMN reply_to      BIGINT,
    ADD COLUMN reply_count   INT NOT NULL DEFAULT 0,
    ADD COLUMN last_reply_at TIMESTAMPTZ;

-- A thread's replies, paged by ID: one range scan per page. Queries spell
-- `kind = 0` literally to match it, as for `messages_posts`.
CREATE INDEX messages_threads ON messages (channel_id, reply_to, message_id)
    WHERE kind = 0 AND reply_to IS NOT NULL;
