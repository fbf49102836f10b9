ALTER TABLE channels DROP COLUMN moderation_allow;

UPDATE channels SET moderation = 1 WHERE moderation = 3;
ALTER TABLE channels DROP CONSTRAINT channels_moderation_check;
ALTER TABLE channels ADD CONSTRAINT channels_moderation_check CHECK (moderation IN (1, 2));
