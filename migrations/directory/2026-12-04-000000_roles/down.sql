DROP INDEX channels_public;
ALTER TABLE memberships DROP COLUMN role;
ALTER TABLE channels DROP COLUMN visibility;
