DROP TABLE media;
DROP TABLE memberships;
DROP TABLE channels;
