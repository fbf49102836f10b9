//! Who is typing in each channel this node serves. Every node serving a
//! channel hears the same typing events on the channel's subscription and
//! keeps its own copy of the set; its sessions get the whole set, sorted,
//! each time it changes. A typer counts for [`TYPING_TTL`] after their
//! last event, so the typers of a node that died without saying `stop`
//! fade out on the others.

use std::collections::BTreeMap;
use std::time::Duration;

use chatmesh_ids::{ChannelId, UserId};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{ChannelState, Hub, offer_unsequenced};
use crate::ports::{FeedError, TypingEvent};
use crate::ws::protocol::ServerFrame;

/// How long a typing event holds. Clients repeat it every 3 s while the
/// user types, so one lost or late event does not make them flicker.
pub(crate) const TYPING_TTL: Duration = Duration::from_secs(5);

/// The least time between two typing starts a session may send for one
/// channel.
pub(crate) const TYPING_INTERVAL: Duration = Duration::from_secs(1);

/// How often expired typers are looked for: they disappear at most this
/// long after [`TYPING_TTL`].
const EXPIRY_TICK: Duration = Duration::from_millis(250);

/// The users typing in one channel and until when each counts.
#[derive(Debug, Default)]
pub(super) struct Typers {
    until: BTreeMap<UserId, Instant>,
}

impl Typers {
    /// Applies a start or stop of `user` heard at `now`; true when the set
    /// changed (a new typer, or one gone), not when a typer was renewed.
    fn apply(&mut self, user: &UserId, stop: bool, now: Instant) -> bool {
        if stop {
            self.until.remove(user).is_some()
        } else {
            self.until.insert(user.clone(), now + TYPING_TTL).is_none()
        }
    }

    /// Drops the typers whose time is up at `now`; true when any were.
    fn expire(&mut self, now: Instant) -> bool {
        let before = self.until.len();
        self.until.retain(|_, until| *until > now);
        self.until.len() != before
    }

    /// The set as the frame sessions get, sorted by user ID.
    fn frame(&self, channel: &ChannelId) -> ServerFrame {
        ServerFrame::Typing {
            channel_id: channel.as_str().to_owned(),
            user_ids: self.until.keys().map(|u| u.as_str().to_owned()).collect(),
        }
    }
}

impl Hub {
    /// Tells every node serving `event.channel`, this one included, that
    /// the user is typing or stopped. The node applies it when it comes
    /// back on the channel's subscription, like the others, so every node
    /// applies a channel's events in the same order.
    pub(crate) async fn publish_typing(&self, event: &TypingEvent) -> Result<(), FeedError> {
        self.inner.feed.publish_typing(event).await
    }

    /// A typing event heard on the channel's subscription. The channel's
    /// sessions get the new set when it changed.
    pub(crate) fn on_typing(&self, event: &TypingEvent) {
        let mut map = self.lock();
        let Some(state) = map.get_mut(&event.channel) else {
            return;
        };
        if state.typers.apply(&event.user, event.stop, Instant::now()) {
            send_typers(&event.channel, state);
        }
    }

    /// The channel's current typers as a frame, for a session that just
    /// subscribed; `None` when nobody is typing.
    pub(crate) fn typers(&self, channel: &ChannelId) -> Option<ServerFrame> {
        let map = self.lock();
        let typers = &map.get(channel)?.typers;
        (!typers.until.is_empty()).then(|| typers.frame(channel))
    }

    /// Drops typers whose time is up, telling their channels' sessions,
    /// until `shutdown`. One task per node, whatever the sessions.
    pub(crate) async fn expire_typers(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(EXPIRY_TICK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.expire_typers_at(Instant::now()),
                () = shutdown.cancelled() => return,
            }
        }
    }

    fn expire_typers_at(&self, now: Instant) {
        let mut map = self.lock();
        for (channel, state) in map.iter_mut() {
            if !state.typers.until.is_empty() && state.typers.expire(now) {
                send_typers(channel, state);
            }
        }
    }
}

fn send_typers(channel: &ChannelId, state: &ChannelState) {
    offer_unsequenced(channel, state, state.typers.frame(channel));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::mpsc;

    use super::*;
    use crate::memory::{MemoryFeed, outbox};
    use crate::ws::hub::Subscriber;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    fn names(typers: &Typers) -> Vec<&str> {
        typers.until.keys().map(UserId::as_str).collect()
    }

    #[test]
    fn starts_stops_and_renewals_change_the_set_as_they_should() {
        let t0 = Instant::now();
        let mut typers = Typers::default();
        assert!(typers.apply(&user("bob"), false, t0));
        assert!(typers.apply(&user("alice"), false, t0));
        assert!(!typers.apply(&user("bob"), false, t0), "a renewal");
        assert_eq!(names(&typers), ["alice", "bob"], "sorted");
        assert!(typers.apply(&user("bob"), true, t0));
        assert!(!typers.apply(&user("bob"), true, t0), "already gone");
        assert_eq!(names(&typers), ["alice"]);
    }

    #[test]
    fn a_typer_counts_until_the_ttl_after_their_last_start() {
        let t0 = Instant::now();
        let mut typers = Typers::default();
        typers.apply(&user("alice"), false, t0);
        typers.apply(&user("bob"), false, t0);
        typers.apply(&user("bob"), false, t0 + Duration::from_secs(3));
        assert!(!typers.expire(t0 + TYPING_TTL - Duration::from_millis(1)));
        assert!(typers.expire(t0 + TYPING_TTL));
        assert_eq!(names(&typers), ["bob"]);
        assert!(typers.expire(t0 + Duration::from_secs(3) + TYPING_TTL));
        assert_eq!(
            typers.frame(&ChannelId::new("room").unwrap()),
            ServerFrame::Typing {
                channel_id: "room".into(),
                user_ids: Vec::new()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn typing_rides_the_subscription_the_hub_restores() {
        let feed = Arc::new(MemoryFeed::default());
        let (tx, mut heard) = mpsc::unbounded_channel();
        feed.deliver_typing_to(tx);
        let hub = Hub::new(feed.clone(), Duration::from_millis(500));
        let room = ChannelId::new("room").unwrap();
        let (outbox, mut frames) = outbox(8);
        let sub = Subscriber {
            user: user("bob"),
            outbox,
            held: None,
        };
        hub.subscribe(&room, 1, sub).await.unwrap();
        let event = TypingEvent {
            channel: room.clone(),
            user: user("alice"),
            stop: false,
        };

        feed.drop_all();
        hub.publish_typing(&event).await.unwrap();
        assert!(heard.try_recv().is_err(), "lost with the connection");

        hub.clone().resubscribe_all(CancellationToken::new()).await;
        hub.publish_typing(&event).await.unwrap();
        hub.on_typing(&heard.try_recv().expect("heard again"));
        let frame = frames.try_recv().expect("a typing frame");
        assert_eq!(
            frame.frame(),
            &ServerFrame::Typing {
                channel_id: "room".into(),
                user_ids: vec!["alice".into()],
            }
        );
    }
}
