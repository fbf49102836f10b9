DROP TABLE reactions;
DROP INDEX messages_posts;
-- Change rows would read as posts once their kind is gone.
DELETE FROM messages WHERE kind <> 0;
ALTER TABLE messages
    DROP COLUMN kind,
    DROP COLUMN target_seq,
    DROP COLUMN emoji,
    DROP COLUMN edit_count,
    DROP COLUMN edited_at,
    DROP COLUMN edited_seq,
    DROP COLUMN deleted,
    DROP COLUMN reactions,
    DROP COLUMN version;
