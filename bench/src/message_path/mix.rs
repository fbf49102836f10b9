//! What each sender sends next: a post, or, for a share of its frames, a
//! change to a recent post (an edit of one of its own, a reaction added to
//! anyone's, or one of its own reactions taken back).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::json;

/// How long a post stays a target once it is old enough to be one: the
/// changes name posts acked between `min_age` and `min_age` plus this ago.
const RECENT: Duration = Duration::from_secs(5);
/// Reactions remembered per sender for taking back.
const REACTIONS_PER_SENDER: usize = 64;
/// One, in the millionths [`Mixer`] counts its share in.
const MILLION: u64 = 1_000_000;
/// The emoji senders react with, in turn.
const EMOJI: [&str; 4] = ["👍", "🎉", "❤️", "😂"];

/// What a frame does; the benchmark reports posts and changes apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    Post,
    Edit,
    ReactionAdd,
    ReactionRemove,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [
        Kind::Post,
        Kind::Edit,
        Kind::ReactionAdd,
        Kind::ReactionRemove,
    ];

    pub(crate) fn is_change(self) -> bool {
        self != Kind::Post
    }
}

/// One frame to send: a post into `room`, or a change to post `seq` of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) kind: Kind,
    pub(crate) room: usize,
    /// The post changed; 0 for a post.
    pub(crate) seq: u64,
    /// The reaction's emoji; empty otherwise.
    pub(crate) emoji: &'static str,
}

impl Frame {
    /// The JSON text frame, with `request_id` and, in the text of posts
    /// and edits, the send time (`at_us`) for a human reading the traffic.
    pub(crate) fn to_json(self, rooms: &[String], request_id: u64, at_us: u64) -> String {
        let (room, id) = (&rooms[self.room], request_id.to_string());
        let frame = match self.kind {
            Kind::Post => {
                json!({"type": "send", "request_id": id, "channel_id": room, "body": format!("t={at_us}")})
            }
            Kind::Edit => json!({"type": "edit", "request_id": id, "channel_id": room,
                "seq": self.seq, "body": format!("e={at_us}")}),
            Kind::ReactionAdd | Kind::ReactionRemove => {
                json!({"type": "react", "request_id": id, "channel_id": room, "seq": self.seq,
                "emoji": self.emoji, "remove": self.kind == Kind::ReactionRemove})
            }
        };
        frame.to_string()
    }
}

/// The posts and reactions changes can name, fed by the senders' acks and
/// shared by every sender: reactions go to anyone's posts, so a channel's
/// recent posts are everyone's.
#[derive(Debug)]
pub(crate) struct Targets {
    /// How old an acked post must be before a change names it. The chat
    /// service checks a change against the stored post and waits for one
    /// acked an instant ago, so younger targets would measure storage's lag
    /// rather than the change; people react to what they have read.
    min_age: Duration,
    /// Per channel, its recent posts (`seq`, acked at), oldest first.
    /// Pruned by age rather than count, so targets old enough exist at any
    /// rate.
    recent: Vec<VecDeque<(u64, Instant)>>,
    /// Per sender, its own recent posts (channel, `seq`, acked at).
    own: Vec<VecDeque<(usize, u64, Instant)>>,
    /// Per sender, the reactions it added (channel, `seq`, emoji), oldest
    /// first.
    reactions: Vec<VecDeque<(usize, u64, &'static str)>>,
}

impl Targets {
    pub(crate) fn new(rooms: usize, senders: usize, min_age: Duration) -> Self {
        Self {
            min_age,
            recent: vec![VecDeque::new(); rooms],
            own: vec![VecDeque::new(); senders],
            reactions: vec![VecDeque::new(); senders],
        }
    }

    /// Records an acked post, and forgets posts too old to be targets.
    pub(crate) fn posted(&mut self, sender: usize, room: usize, seq: u64, at: Instant) {
        let keep = self.min_age + RECENT;
        let recent = &mut self.recent[room];
        recent.push_back((seq, at));
        while recent
            .front()
            .is_some_and(|p| at.duration_since(p.1) > keep)
        {
            recent.pop_front();
        }
        let own = &mut self.own[sender];
        own.push_back((room, seq, at));
        while own.front().is_some_and(|p| at.duration_since(p.2) > keep) {
            own.pop_front();
        }
    }

    /// Records an acked reaction, to be taken back later.
    pub(crate) fn reacted(&mut self, sender: usize, room: usize, seq: u64, emoji: &'static str) {
        let reactions = &mut self.reactions[sender];
        if reactions.len() == REACTIONS_PER_SENDER {
            reactions.pop_front();
        }
        reactions.push_back((room, seq, emoji));
    }

    /// The sender's newest post old enough to edit.
    fn own_post(&self, sender: usize, now: Instant) -> Option<(usize, u64)> {
        self.own[sender]
            .iter()
            .rev()
            .find(|(_, _, at)| now.duration_since(*at) >= self.min_age)
            .map(|&(room, seq, _)| (room, seq))
    }

    /// The `pick`-th (wrapping) of the channel's posts old enough to react
    /// to.
    fn post_in(&self, room: usize, pick: usize, now: Instant) -> Option<u64> {
        let old_enough = self.recent[room]
            .iter()
            .take_while(|(_, at)| now.duration_since(*at) >= self.min_age)
            .count();
        (old_enough > 0).then(|| self.recent[room][pick % old_enough].0)
    }
}

/// One sender's choice of frames. A share `p` of its frames are changes,
/// spread evenly (one in ten at 0.1, never two in a row below 0.5); the
/// changes cycle through an edit, a reaction added and a reaction taken
/// back. A change with nothing to name is sent as a post instead, and
/// counted in `fallbacks`.
#[derive(Debug)]
pub(crate) struct Mixer {
    sender: usize,
    senders: usize,
    rooms: usize,
    /// The share of changes, in millionths (whole numbers, so one in ten
    /// is exactly one in ten).
    share: u64,
    /// Accumulated share; a change is due when it reaches a million.
    due: u64,
    /// Posts sent, for the round-robin over channels.
    posts: usize,
    /// Changes planned, for the cycle of kinds and of reaction targets.
    changes: usize,
    pub(crate) fallbacks: u64,
}

impl Mixer {
    pub(crate) fn new(sender: usize, senders: usize, rooms: usize, share: f64) -> Self {
        let share = (share.clamp(0.0, 1.0) * MILLION as f64).round() as u64;
        Self {
            sender,
            senders,
            rooms,
            share,
            // Staggered, so the senders' changes do not all fall on the
            // same tick.
            due: share * sender as u64 / senders.max(1) as u64,
            posts: 0,
            changes: 0,
            fallbacks: 0,
        }
    }

    /// The next frame. Called with the targets locked; takes a reaction it
    /// chooses to take back out of them.
    pub(crate) fn next(&mut self, targets: &mut Targets, now: Instant) -> Frame {
        self.due += self.share;
        if self.due >= MILLION {
            self.due -= MILLION;
            let planned = self.changes;
            self.changes += 1;
            if let Some(change) = self.change(planned, targets, now) {
                return change;
            }
            self.fallbacks += 1;
        }
        // Sender s posts to channels s, s + S, s + 2S, ... (mod M).
        let room = (self.sender + self.posts * self.senders) % self.rooms;
        self.posts += 1;
        Frame {
            kind: Kind::Post,
            room,
            seq: 0,
            emoji: "",
        }
    }

    fn change(&mut self, planned: usize, targets: &mut Targets, now: Instant) -> Option<Frame> {
        // Three steps: an edit, a reaction added, one taken back.
        let step = planned % 3;
        if step == 0 {
            let (room, seq) = targets.own_post(self.sender, now)?;
            return Some(Frame {
                kind: Kind::Edit,
                room,
                seq,
                emoji: "",
            });
        }
        if step == 2
            && let Some((room, seq, emoji)) = targets.reactions[self.sender].pop_front()
        {
            return Some(Frame {
                kind: Kind::ReactionRemove,
                room,
                seq,
                emoji,
            });
        }
        // Reactions walk every channel, not only those this sender posts
        // to, so most land on other senders' posts; each sender starts its
        // walk elsewhere.
        let room = (self.sender * 7 + planned) % self.rooms;
        let seq = targets.post_in(room, planned / self.rooms, now)?;
        Some(Frame {
            kind: Kind::ReactionAdd,
            room,
            seq,
            emoji: EMOJI[(self.sender + planned) % EMOJI.len()],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(mixer: &mut Mixer, targets: &mut Targets, now: Instant, n: usize) -> Vec<Kind> {
        (0..n).map(|_| mixer.next(targets, now).kind).collect()
    }

    #[test]
    fn share_zero_sends_posts_round_robin() {
        let mut targets = Targets::new(4, 2, Duration::ZERO);
        let mut mixer = Mixer::new(1, 2, 4, 0.0);
        let now = Instant::now();
        let rooms: Vec<usize> = (0..4).map(|_| mixer.next(&mut targets, now).room).collect();
        assert_eq!(rooms, [1, 3, 1, 3]);
        assert_eq!(mixer.fallbacks, 0);
    }

    #[test]
    fn a_tenth_of_frames_are_changes_cycling_through_the_kinds() {
        let t0 = Instant::now();
        let mut targets = Targets::new(1, 1, Duration::from_secs(1));
        targets.posted(0, 0, 1, t0);
        let now = t0 + Duration::from_secs(2);
        let mut mixer = Mixer::new(0, 1, 1, 0.1);
        let sent = kinds(&mut mixer, &mut targets, now, 30);
        for (i, kind) in sent.iter().enumerate() {
            assert_eq!(kind.is_change(), i % 10 == 9, "frame {i}: {kind:?}");
        }
        let changes: Vec<Kind> = sent.into_iter().filter(|k| k.is_change()).collect();
        assert_eq!(
            changes,
            [Kind::Edit, Kind::ReactionAdd, Kind::ReactionAdd],
            "nothing acked to take back yet, so a second add"
        );
    }

    #[test]
    fn a_reaction_taken_back_is_one_the_sender_added() {
        let t0 = Instant::now();
        let mut targets = Targets::new(1, 2, Duration::ZERO);
        targets.posted(1, 0, 5, t0);
        targets.reacted(0, 0, 5, "🎉");
        let mut mixer = Mixer::new(0, 2, 1, 1.0);
        let frames: Vec<Frame> = (0..3).map(|_| mixer.next(&mut targets, t0)).collect();
        assert_eq!(frames[0].kind, Kind::Post, "sender 0 has no post to edit");
        assert_eq!(mixer.fallbacks, 1);
        assert_eq!((frames[1].kind, frames[1].seq), (Kind::ReactionAdd, 5));
        assert_eq!(
            (frames[2].kind, frames[2].seq, frames[2].emoji),
            (Kind::ReactionRemove, 5, "🎉")
        );
    }

    #[test]
    fn edits_name_the_senders_own_posts_once_old_enough() {
        let t0 = Instant::now();
        let mut targets = Targets::new(2, 2, Duration::from_secs(1));
        targets.posted(0, 0, 1, t0);
        targets.posted(1, 1, 2, t0);
        targets.posted(0, 1, 3, t0 + Duration::from_millis(900));
        let later = t0 + Duration::from_millis(1500);
        assert_eq!(targets.own_post(0, later), Some((0, 1)));
        assert_eq!(targets.own_post(1, later), Some((1, 2)));
        assert_eq!(targets.own_post(0, t0), None);
        assert_eq!(targets.post_in(1, 0, later), Some(2), "seq 3 is too young");
    }

    #[test]
    fn posts_past_the_window_are_forgotten() {
        let t0 = Instant::now();
        let min_age = Duration::from_secs(1);
        let mut targets = Targets::new(1, 1, min_age);
        targets.posted(0, 0, 1, t0);
        targets.posted(0, 0, 2, t0 + min_age + RECENT);
        let now = t0 + 2 * (min_age + RECENT);
        assert_eq!(
            targets.post_in(0, 0, now),
            Some(1),
            "still within the window"
        );
        targets.posted(0, 0, 3, now);
        assert_eq!(targets.post_in(0, 0, now), Some(2));
        assert_eq!(targets.own_post(0, now), Some((0, 2)));
    }

    #[test]
    fn frames_carry_what_the_protocol_asks_for() {
        let rooms = vec!["r".to_owned()];
        let react = Frame {
            kind: Kind::ReactionRemove,
            room: 0,
            seq: 7,
            emoji: "👍",
        };
        let v: serde_json::Value = serde_json::from_str(&react.to_json(&rooms, 3, 0)).unwrap();
        assert_eq!(
            v,
            json!({"type": "react", "request_id": "3", "channel_id": "r", "seq": 7, "emoji": "👍", "remove": true})
        );
    }
}
