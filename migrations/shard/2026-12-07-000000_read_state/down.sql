DROP TABLE mentions;
DROP TABLE read_positions;
DROP TABLE channel_counts;
DROP INDEX messages_deleted;
DROP INDEX messages_post_no;
ALTER TABLE messages DROP COLUMN post_no;
