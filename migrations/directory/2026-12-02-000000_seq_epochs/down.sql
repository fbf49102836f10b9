DROP TABLE channel_seq_epochs;
