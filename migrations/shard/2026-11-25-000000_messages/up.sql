-- One row per message. The primary key doubles as the history index: a
-- page of a channel is one range scan over (channel_id, message_id), and
-- Snowflake IDs sort by time.
CREATE TABLE messages (
    channel_id   TEXT        NOT NULL,
    message_id   BIGINT      NOT NULL,
    seq          BIGINT      NOT NULL,
    sender_id    TEXT        NOT NULL,
    body         TEXT        NOT NULL,
    attachments  TEXT[]      NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel_id, message_id)
);

-- Gap recovery reads by sequence number. Not unique: uniqueness is the
-- primary key's job, and ON CONFLICT must only ever skip true duplicates.
CREATE INDEX messages_channel_seq ON messages (channel_id, seq);
