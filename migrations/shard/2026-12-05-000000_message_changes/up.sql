-- Every channel event is a row: a post (kind 0) or a change to an earlier
-- post (1 edit, 2 delete, 3 reaction added, 4 reaction taken back), whose
-- target is the post's seq. A post's row also carries its current state,
-- which applying its changes maintains, so history reads no aggregate.
-- Constant defaults make these ADD COLUMNs catalog-only: no table rewrite.
ALTER TABLE messages
    ADD COLUMN kind        SMALLINT    NOT NULL DEFAULT 0,
    ADD COLUMN target_seq  BIGINT,
    ADD COLUMN emoji       TEXT,
    ADD COLUMN edit_count  INT         NOT NULL DEFAULT 0,
    ADD COLUMN edited_at   TIMESTAMPTZ,
    -- The seq of the edit whose text the post shows; 0 before any.
    ADD COLUMN edited_seq  BIGINT      NOT NULL DEFAULT 0,
    ADD COLUMN deleted     BOOLEAN     NOT NULL DEFAULT false,
    -- Per-emoji counts in first-use order: [{"emoji": "👍", "count": 2}].
    ADD COLUMN reactions   JSONB       NOT NULL DEFAULT '[]',
    -- The seq of the last change applied; 0 before any.
    ADD COLUMN version     BIGINT      NOT NULL DEFAULT 0;

-- History pages list posts only. This partial index holds exactly them, so
-- a page stays one range scan however many changes a channel has. Queries
-- must spell the predicate as the literal `kind = 0` to match it.
CREATE INDEX messages_posts ON messages (channel_id, message_id) WHERE kind = 0;

-- Who reacted with what: one row per (message, emoji, member), a register
-- holding the newest change to it (`seq`) and whether the reaction stands.
-- Changes to one message may reach storage out of order; a change older
-- than the register's is skipped, so the end state is the one their
-- sequence numbers imply. Taken-back reactions stay as `present = false`
-- for that comparison.
CREATE TABLE reactions (
    channel_id  TEXT    NOT NULL,
    target_seq  BIGINT  NOT NULL,
    emoji       TEXT    NOT NULL,
    user_id     TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,
    present     BOOLEAN NOT NULL,
    PRIMARY KEY (channel_id, target_seq, emoji, user_id)
);

-- "Which messages of this page did the reader react to": one range scan
-- over the page's seq span.
CREATE INDEX reactions_reader ON reactions (channel_id, user_id, target_seq);
