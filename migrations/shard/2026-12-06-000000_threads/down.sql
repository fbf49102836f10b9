DROP INDEX messages_threads;
ALTER TABLE messages
    DROP COLUMN reply_to,
    DROP COLUMN reply_count,
    DROP COLUMN last_reply_at;
