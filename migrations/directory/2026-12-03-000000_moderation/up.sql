-- 3 = flag: deliver unchanged and record the hit for review.
ALTER TABLE channels DROP CONSTRAINT channels_moderation_check;
ALTER TABLE channels ADD CONSTRAINT channels_moderation_check CHECK (moderation IN (1, 2, 3));

-- Phrases a channel allows although they hold a blocked word (names, places),
-- on top of the service-wide allow list.
ALTER TABLE channels ADD COLUMN moderation_allow TEXT[] NOT NULL DEFAULT '{}';
