-- How many sequence epochs each channel has started. The live counter in
-- Redis can lose numbers (a failover, a restart without data); the channel
-- then continues in a fresh epoch taken from here, so no number repeats.
CREATE TABLE channel_seq_epochs (
    channel_id  TEXT    PRIMARY KEY,
    started     BIGINT  NOT NULL CHECK (started > 0)
);
