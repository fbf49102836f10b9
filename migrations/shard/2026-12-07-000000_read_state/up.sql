-- Read state and mentions. Unread counts are answered from counters and
-- index probes, never by counting a channel's messages:
--
--   unread = posts − post_no of the last post at or before the read
--            position − deleted posts after it
--
-- `post_no` ranks a channel's stored posts by seq (1 for the first); seq
-- itself counts changes too and jumps at an epoch, so it cannot be
-- subtracted. Posts are numbered when stored, in the insert's transaction.
ALTER TABLE messages ADD COLUMN post_no BIGINT;

UPDATE messages m SET post_no = r.n
FROM (SELECT channel_id, message_id,
             row_number() OVER (PARTITION BY channel_id ORDER BY seq, message_id) AS n
      FROM messages WHERE kind = 0) r
WHERE m.channel_id = r.channel_id AND m.message_id = r.message_id;

-- "The last post at or before seq R" is one probe of this index, which
-- carries the post's number so the probe reads no table page.
CREATE INDEX messages_post_no ON messages (channel_id, seq) INCLUDE (post_no)
    WHERE kind = 0;

-- "Deleted posts after seq R": a range of this index, which holds deleted
-- posts only.
CREATE INDEX messages_deleted ON messages (channel_id, seq)
    WHERE kind = 0 AND deleted;

-- One row per channel: how many posts are stored, the seq of the newest
-- post and of the newest event. The consumer updates it once per batch.
CREATE TABLE channel_counts (
    channel_id    TEXT   PRIMARY KEY,
    posts         BIGINT NOT NULL DEFAULT 0,
    last_post_seq BIGINT NOT NULL DEFAULT 0,
    last_seq      BIGINT NOT NULL DEFAULT 0
);

INSERT INTO channel_counts (channel_id, posts, last_post_seq, last_seq)
SELECT channel_id,
       count(*) FILTER (WHERE kind = 0),
       coalesce(max(seq) FILTER (WHERE kind = 0), 0),
       max(seq)
FROM messages GROUP BY channel_id;

-- A member's read position: the highest seq they have read. It only moves
-- forward. Posting a message moves the author's to it.
CREATE TABLE read_positions (
    channel_id TEXT        NOT NULL,
    user_id    TEXT        NOT NULL,
    seq        BIGINT      NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (channel_id, user_id)
);

-- Who a post mentions, from its current text: an edit rewrites a post's
-- rows, a delete removes them. Posts stored before this table existed are
-- not indexed.
CREATE TABLE mentions (
    channel_id TEXT   NOT NULL,
    user_id    TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    message_id BIGINT NOT NULL,
    PRIMARY KEY (channel_id, user_id, seq)
);

-- A user's mentions across the shard's channels, newest first.
CREATE INDEX mentions_user ON mentions (user_id, message_id);

INSERT INTO read_positions (channel_id, user_id, seq, updated_at)
SELECT channel_id, sender_id, max(seq), now()
FROM messages WHERE kind = 0 GROUP BY channel_id, sender_id;
