//! The shard databases' message table.

diesel::table! {
    /// One row per message, keyed by (channel_id, message_id).
    messages (channel_id, message_id) {
        /// Channel ID.
        channel_id -> Text,
        /// Snowflake ID.
        message_id -> BigInt,
        /// Per-channel sequence number.
        seq -> BigInt,
        /// Sender's user ID.
        sender_id -> Text,
        /// Message text.
        body -> Text,
        /// Media IDs.
        attachments -> Array<Text>,
        /// Send time.
        created_at -> Timestamptz,
    }
}
