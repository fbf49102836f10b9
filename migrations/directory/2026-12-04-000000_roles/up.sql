-- Who may find and join a channel: 1 = private (members add members),
-- 2 = public (anyone may join). chatmesh.chat.v1.ChannelVisibility.
ALTER TABLE channels ADD COLUMN visibility SMALLINT NOT NULL DEFAULT 1 CHECK (visibility IN (1, 2));

-- What a member may do: 1 = member, 2 = owner (adds and removes members).
-- chatmesh.chat.v1.MemberRole.
ALTER TABLE memberships ADD COLUMN role SMALLINT NOT NULL DEFAULT 1 CHECK (role IN (1, 2));

-- Channels made before roles existed: their creator, while still a member,
-- owns them.
UPDATE memberships m SET role = 2
  FROM channels c
 WHERE c.channel_id = m.channel_id AND c.created_by = m.user_id;

-- The public channels in ID order, for the directory listing.
CREATE INDEX channels_public ON channels (channel_id) WHERE visibility = 2;
