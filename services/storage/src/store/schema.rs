//! The shard databases' tables.

diesel::table! {
    /// One row per channel event, keyed by (channel_id, message_id): posts
    /// with their current state, and the changes applied to them.
    messages (channel_id, message_id) {
        /// Channel ID.
        channel_id -> Text,
        /// Snowflake ID.
        message_id -> BigInt,
        /// Per-channel sequence number.
        seq -> BigInt,
        /// Sender's user ID.
        sender_id -> Text,
        /// Message text; an edit's new text.
        body -> Text,
        /// Media IDs.
        attachments -> Array<Text>,
        /// Send time.
        created_at -> Timestamptz,
        /// 0 post, 1 edit, 2 delete, 3 reaction added, 4 reaction taken back.
        kind -> SmallInt,
        /// A change's target post, by seq.
        target_seq -> Nullable<BigInt>,
        /// A reaction change's emoji.
        emoji -> Nullable<Text>,
        /// A post's edits so far.
        edit_count -> Integer,
        /// A post's last edit time.
        edited_at -> Nullable<Timestamptz>,
        /// The seq of the edit whose text a post shows.
        edited_seq -> BigInt,
        /// A post deleted: a tombstone.
        deleted -> Bool,
        /// A post's reaction counts by emoji, in first-use order.
        reactions -> Jsonb,
        /// The seq of the last change applied to a post.
        version -> BigInt,
        /// A reply's thread: the seq of its first post.
        reply_to -> Nullable<BigInt>,
        /// A thread's first post: the replies posted in it.
        reply_count -> Integer,
        /// A thread's first post: when its last reply was posted.
        last_reply_at -> Nullable<Timestamptz>,
        /// A post's rank among its channel's stored posts, by seq.
        post_no -> Nullable<BigInt>,
    }
}

diesel::table! {
    /// One row per (post, emoji, member) reaction.
    reactions (channel_id, target_seq, emoji, user_id) {
        /// Channel ID.
        channel_id -> Text,
        /// The post's seq.
        target_seq -> BigInt,
        /// The emoji.
        emoji -> Text,
        /// Who reacted.
        user_id -> Text,
        /// The newest change to this reaction.
        seq -> BigInt,
        /// Whether the reaction stands (false: taken back or cleared).
        present -> Bool,
    }
}
