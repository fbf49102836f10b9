//! The [`Catalog`] contract. The media service only reads channels and
//! memberships, so a [`CatalogHarness`] adds the channels a test needs the
//! way the chat service would.

use chatmesh_ids::{ChannelId, UserId};
use chrono::{DateTime, Utc};

use super::{unique_channel, unique_user};
use crate::catalog::{Catalog, Membership, MemoryCatalog};
use crate::store::ObjectKey;
use crate::{Media, MediaId, MediaState};

/// Generates one `#[tokio::test]` per suite test, each on a fresh
/// [`CatalogHarness`] that `$make` evaluates to (inside the async test, so
/// it may `.await`).
#[macro_export]
macro_rules! catalog_suite {
    ($make:expr) => {
        $crate::catalog_suite!(@tests $make;
            membership_tells_missing_channels_outsiders_and_members,
            inserted_media_reads_back_pending,
            unknown_media_is_none,
            mark_ready_returns_the_ready_media_and_repeats,
            mark_ready_of_unknown_media_is_none,
            media_are_kept_apart,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let harness = $make;
                $crate::testsuite::catalog::$name(&harness).await;
            }
        )*
    };
}

/// A catalog under test and a way to create the channels it reads.
#[async_trait::async_trait]
pub trait CatalogHarness: Send + Sync {
    /// The catalog.
    fn catalog(&self) -> &dyn Catalog;

    /// Creates `channel` with `members`, the first as its creator.
    async fn add_channel(&self, channel: &ChannelId, members: &[&UserId]);
}

#[async_trait::async_trait]
impl CatalogHarness for MemoryCatalog {
    fn catalog(&self) -> &dyn Catalog {
        self
    }

    async fn add_channel(&self, channel: &ChannelId, members: &[&UserId]) {
        MemoryCatalog::add_channel(self, channel, members);
    }
}

/// Now, to the millisecond, which every store keeps exactly.
fn now_ms() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("a valid time")
}

/// A pending media in `channel` by `uploader`, with a size over 32 bits
/// and a name outside ASCII.
fn pending(channel: &ChannelId, uploader: &UserId) -> Media {
    let id = MediaId::generate();
    Media {
        key: ObjectKey::for_media(channel, &id),
        id,
        channel: channel.clone(),
        uploader: uploader.clone(),
        filename: "café – été.png".into(),
        content_type: "image/png".into(),
        size: 5_000_000_123,
        state: MediaState::Pending,
        created_at: now_ms(),
    }
}

/// A fresh channel with one member, the member and a pending media of
/// theirs in it, inserted.
async fn inserted<H: CatalogHarness>(h: &H, tag: &str) -> Media {
    let (channel, user) = (unique_channel(tag), unique_user(tag));
    h.add_channel(&channel, &[&user]).await;
    let media = pending(&channel, &user);
    h.catalog().insert(&media).await.expect("insert");
    media
}

async fn get<H: CatalogHarness>(h: &H, id: &MediaId) -> Option<Media> {
    h.catalog().get(id).await.expect("get")
}

/// Membership tells a missing channel from one the user is not in.
pub async fn membership_tells_missing_channels_outsiders_and_members<H: CatalogHarness>(h: &H) {
    let channel = unique_channel("members");
    let (alice, bob, carol) = (
        unique_user("alice"),
        unique_user("bob"),
        unique_user("carol"),
    );
    let membership = |c: ChannelId, u: UserId| async move {
        h.catalog().membership(&c, &u).await.expect("membership")
    };
    assert_eq!(
        membership(channel.clone(), alice.clone()).await,
        Membership::NoChannel
    );
    h.add_channel(&channel, &[&alice, &bob]).await;
    assert_eq!(
        membership(channel.clone(), alice.clone()).await,
        Membership::Member
    );
    assert_eq!(
        membership(channel.clone(), bob.clone()).await,
        Membership::Member
    );
    assert_eq!(
        membership(channel.clone(), carol.clone()).await,
        Membership::Outsider
    );
    let elsewhere = unique_channel("elsewhere");
    h.add_channel(&elsewhere, &[&carol]).await;
    assert_eq!(membership(elsewhere, alice).await, Membership::Outsider);
    assert_eq!(membership(channel, carol).await, Membership::Outsider);
}

/// An inserted media reads back field for field, pending.
pub async fn inserted_media_reads_back_pending<H: CatalogHarness>(h: &H) {
    let media = inserted(h, "insert").await;
    assert_eq!(get(h, &media.id).await, Some(media));
}

/// A media never inserted is not found.
pub async fn unknown_media_is_none<H: CatalogHarness>(h: &H) {
    assert_eq!(get(h, &MediaId::generate()).await, None);
}

/// Marking ready returns the media, ready, with every other field kept;
/// marking it again returns the same.
pub async fn mark_ready_returns_the_ready_media_and_repeats<H: CatalogHarness>(h: &H) {
    let media = inserted(h, "ready").await;
    let ready = Media {
        state: MediaState::Ready,
        ..media.clone()
    };
    let marked = h.catalog().mark_ready(&media.id).await.expect("mark ready");
    assert_eq!(marked, Some(ready.clone()));
    assert_eq!(get(h, &media.id).await, Some(ready.clone()));
    let again = h.catalog().mark_ready(&media.id).await.expect("mark ready");
    assert_eq!(again, Some(ready));
}

/// Marking a media that does not exist creates nothing.
pub async fn mark_ready_of_unknown_media_is_none<H: CatalogHarness>(h: &H) {
    let id = MediaId::generate();
    assert_eq!(h.catalog().mark_ready(&id).await.expect("mark ready"), None);
    assert_eq!(get(h, &id).await, None);
}

/// Media of one channel and uploader are separate rows: marking one ready
/// leaves the other pending.
pub async fn media_are_kept_apart<H: CatalogHarness>(h: &H) {
    let first = inserted(h, "apart").await;
    let second = pending(&first.channel, &first.uploader);
    h.catalog().insert(&second).await.expect("insert");
    h.catalog().mark_ready(&first.id).await.expect("mark ready");
    assert_eq!(get(h, &second.id).await, Some(second));
    assert_eq!(
        get(h, &first.id).await.map(|m| m.state),
        Some(MediaState::Ready)
    );
}

#[cfg(test)]
mod memory_suite {
    crate::catalog_suite!(crate::catalog::MemoryCatalog::new());
}
