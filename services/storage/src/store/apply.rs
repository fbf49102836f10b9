//! What a change does to the post it targets: the one definition both
//! stores apply, each over its own record of who reacted with what.

use std::collections::HashSet;

use chatmesh_ids::{Change, ChannelId, ChatMessage, MessageId, Reaction, UserId};

/// One member's reaction with one emoji to one post.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct ReactionKey {
    pub(super) channel: ChannelId,
    pub(super) target: u64,
    pub(super) emoji: String,
    pub(super) user: UserId,
}

/// The newest change to one member's reaction: whether it stands, and
/// the seq of the change that said so. Changes to one post may reach
/// storage out of order; one older than the register is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Register {
    /// The seq of the newest change to this reaction.
    pub(super) seq: u64,
    /// Whether the reaction stands.
    pub(super) present: bool,
}

/// Who reacted with what, as the changes being applied see it.
pub(super) trait ReactionSet {
    /// The register of `key`, if any change ever set it.
    fn get(&self, key: &ReactionKey) -> Option<Register>;
    /// Sets the register of `key`.
    fn set(&mut self, key: ReactionKey, register: Register);
    /// Every register of post `target` of `channel`. Complete for any post
    /// an edit or a delete in the batch names.
    fn of_post(&self, channel: &ChannelId, target: u64) -> Vec<(ReactionKey, Register)>;
}

/// The events of `batch` that the insert just stored, given `is_new`,
/// which answers once per stored (channel, ID): `true` for the row this
/// insert wrote. The first copy of an event listed twice is the one kept,
/// as both stores keep it.
pub(super) fn new_changes(
    batch: &[ChatMessage],
    mut is_new: impl FnMut(&ChannelId, MessageId) -> bool,
) -> Vec<&ChatMessage> {
    let mut seen = HashSet::new();
    let mut changes: Vec<_> = batch
        .iter()
        .filter(|m| seen.insert((&m.channel, m.id)) && is_new(&m.channel, m.id))
        .filter(|m| m.change != Change::Post)
        .collect();
    // A batch mixes the shard's channels; each channel's changes apply in
    // the order its sequence numbers give them.
    changes.sort_by(|a, b| (&a.channel, a.seq).cmp(&(&b.channel, b.seq)));
    changes
}

/// Applies `change`, an event just stored, to `target`, the post of its
/// channel whose seq it names. The post's `version` rises to the change's
/// seq whatever the change does.
///
/// The end state is the one the changes' sequence numbers imply, in
/// whatever order they arrive: a delete is final; an edit older than the
/// post's text (`edited_seq`) counts as an edit but changes no text; an
/// edit clears the reactions older than itself; a reaction older than the
/// post's text, or than its own register, changes nothing.
pub(super) fn apply(
    change: &ChatMessage,
    target: &mut ChatMessage,
    reactions: &mut impl ReactionSet,
) {
    target.state.version = target.state.version.max(change.seq);
    if change.seq <= target.seq || target.state.deleted {
        return;
    }
    let state = &mut target.state;
    match &change.change {
        Change::Post => {}
        Change::Edit { .. } => {
            state.edit_count = state.edit_count.saturating_add(1);
            if change.seq > state.edited_seq {
                target.body.clone_from(&change.body);
                state.edited_seq = change.seq;
                state.edited_at_ms = change.created_at_ms;
                // Reactions answered the old text.
                clear(target, reactions, change.seq);
            }
        }
        Change::Delete { .. } => {
            state.deleted = true;
            target.body.clear();
            target.attachments.clear();
            clear(target, reactions, u64::MAX);
        }
        Change::React { emoji, .. } | Change::Unreact { emoji, .. } => {
            if change.seq < state.edited_seq {
                return;
            }
            let present = matches!(change.change, Change::React { .. });
            let key = ReactionKey {
                channel: target.channel.clone(),
                target: target.seq,
                emoji: emoji.clone(),
                user: change.sender.clone(),
            };
            let before = reactions.get(&key);
            if before.is_some_and(|r| r.seq >= change.seq) {
                return;
            }
            let stood = before.is_some_and(|r| r.present);
            reactions.set(
                key,
                Register {
                    seq: change.seq,
                    present,
                },
            );
            if stood != present {
                count(&mut state.reactions, emoji, present);
            }
        }
    }
}

/// Takes back every reaction to `target` older than `before`, and counts
/// what stands again (only reactions newer than an edit that arrived late
/// survive it).
fn clear(target: &mut ChatMessage, reactions: &mut impl ReactionSet, before: u64) {
    let mut standing: Vec<String> = Vec::new();
    for (key, register) in reactions.of_post(&target.channel, target.seq) {
        if register.present && register.seq < before {
            let taken_back = Register {
                present: false,
                ..register
            };
            reactions.set(key, taken_back);
        } else if register.present {
            standing.push(key.emoji);
        }
    }
    let counts = &mut target.state.reactions;
    for reaction in counts.iter_mut() {
        reaction.count = standing.iter().filter(|e| **e == reaction.emoji).count() as u32;
    }
    counts.retain(|r| r.count > 0);
}

/// Adds one to `emoji`'s count, appending it when new, or takes one away,
/// dropping it at zero.
fn count(reactions: &mut Vec<Reaction>, emoji: &str, add: bool) {
    let at = reactions.iter().position(|r| r.emoji == emoji);
    match (at, add) {
        (Some(i), true) => reactions[i].count = reactions[i].count.saturating_add(1),
        (None, true) => reactions.push(Reaction {
            emoji: emoji.to_owned(),
            count: 1,
            me: false,
        }),
        (Some(i), false) => {
            reactions[i].count = reactions[i].count.saturating_sub(1);
            if reactions[i].count == 0 {
                reactions.remove(i);
            }
        }
        (None, false) => {}
    }
}

/// Marks the reactions of `post` that `mine` says the reader made.
pub(super) fn mark_mine(post: &mut ChatMessage, mut mine: impl FnMut(&str) -> bool) {
    for reaction in &mut post.state.reactions {
        reaction.me = mine(&reaction.emoji);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::Reactions;

    fn event(seq: u64, sender: &str, change: Change) -> ChatMessage {
        ChatMessage {
            id: MessageId::from_raw(seq * 10),
            channel: ChannelId::new("c").unwrap(),
            sender: UserId::new(sender).unwrap(),
            seq,
            body: format!("text {seq}"),
            attachments: vec!["m".into()],
            created_at_ms: 1_000 + seq as i64,
            idempotency_key: None,
            change,
            reply_to: None,
            state: Default::default(),
        }
    }

    fn react(seq: u64, sender: &str, emoji: &str) -> ChatMessage {
        let change = Change::React {
            target: 1,
            emoji: emoji.into(),
        };
        event(seq, sender, change)
    }

    fn counts(post: &ChatMessage) -> Vec<(&str, u32)> {
        let reactions = &post.state.reactions;
        reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.count))
            .collect()
    }

    #[test]
    fn counts_keep_first_use_order_and_drop_at_zero() {
        let mut post = event(1, "alice", Change::Post);
        let mut set = Reactions::default();
        apply(&react(2, "bob", "👍"), &mut post, &mut set);
        apply(&react(3, "carol", "🎉"), &mut post, &mut set);
        apply(&react(4, "carol", "👍"), &mut post, &mut set);
        apply(&react(5, "carol", "👍"), &mut post, &mut set);
        assert_eq!(counts(&post), vec![("👍", 2), ("🎉", 1)]);
        let unreact = Change::Unreact {
            target: 1,
            emoji: "🎉".into(),
        };
        apply(&event(6, "carol", unreact), &mut post, &mut set);
        assert_eq!(counts(&post), vec![("👍", 2)]);
        assert_eq!(post.state.version, 6);
    }

    #[test]
    fn an_edit_older_than_the_text_counts_but_changes_nothing() {
        let mut post = event(1, "alice", Change::Post);
        let mut set = Reactions::default();
        apply(
            &event(5, "alice", Change::Edit { target: 1 }),
            &mut post,
            &mut set,
        );
        apply(
            &event(4, "alice", Change::Edit { target: 1 }),
            &mut post,
            &mut set,
        );
        assert_eq!((post.body.as_str(), post.state.version), ("text 5", 5));
        assert_eq!(post.state.edit_count, 2);
    }

    fn unreact(seq: u64, sender: &str, emoji: &str) -> ChatMessage {
        let change = Change::Unreact {
            target: 1,
            emoji: emoji.into(),
        };
        event(seq, sender, change)
    }

    /// Every order of the same changes ends in the state their sequence
    /// numbers imply.
    #[test]
    fn changes_in_any_order_end_in_the_state_their_numbers_imply() {
        let changes = [
            react(2, "bob", "👍"),
            react(3, "carol", "👍"),
            unreact(4, "bob", "👍"),
            react(5, "dave", "🎉"),
            event(6, "alice", Change::Edit { target: 1 }),
            react(7, "erin", "👍"),
            react(8, "bob", "👍"),
            unreact(9, "erin", "👍"),
        ];
        let in_order = {
            let mut post = event(1, "alice", Change::Post);
            let mut set = Reactions::default();
            changes.iter().for_each(|c| apply(c, &mut post, &mut set));
            post
        };
        assert_eq!(counts(&in_order), vec![("👍", 1)]);
        assert_eq!(in_order.body, "text 6");
        // Rotations and the reverse, each a different arrival order.
        let mut orders: Vec<Vec<ChatMessage>> = (0..changes.len())
            .map(|k| {
                let mut order = changes.to_vec();
                order.rotate_left(k);
                order
            })
            .collect();
        orders.push(changes.iter().rev().cloned().collect());
        for order in orders {
            let mut post = event(1, "alice", Change::Post);
            let mut set = Reactions::default();
            order.iter().for_each(|c| apply(c, &mut post, &mut set));
            let seqs: Vec<_> = order.iter().map(|c| c.seq).collect();
            assert_eq!(counts(&post), counts(&in_order), "order {seqs:?}");
            assert_eq!(post.body, in_order.body, "order {seqs:?}");
            assert_eq!(post.state.version, 9);
        }
    }

    #[test]
    fn a_delete_is_final_whatever_arrives_after_it() {
        let mut post = event(1, "alice", Change::Post);
        let mut set = Reactions::default();
        apply(&react(2, "bob", "👍"), &mut post, &mut set);
        apply(
            &event(5, "alice", Change::Delete { target: 1 }),
            &mut post,
            &mut set,
        );
        apply(&react(3, "carol", "👍"), &mut post, &mut set);
        apply(
            &event(4, "alice", Change::Edit { target: 1 }),
            &mut post,
            &mut set,
        );
        assert!(post.state.deleted && post.body.is_empty());
        assert!(post.state.reactions.is_empty());
        assert_eq!(post.state.edit_count, 0);
    }

    #[test]
    fn only_the_first_copy_of_a_new_event_is_a_new_change() {
        let batch = [
            react(3, "bob", "👍"),
            event(1, "alice", Change::Post),
            react(2, "bob", "👍"),
            react(3, "bob", "👍"),
        ];
        let new = new_changes(&batch, |_, id| id.get() != 20);
        let seqs: Vec<_> = new.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![3]);
    }
}
