//! Tests of [`ChatApi`]: who may use a channel, and sends and changes
//! (edits, deletes, reactions) as the gateway makes them for its sessions.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use chatmesh_error::ErrorKind;
use chatmesh_ids::{Change, ChannelId, UserId};

use super::{SuiteResult, unique_channel, unique_user};
use crate::ports::{
    Access, ChangeCommand, ChangeReceipt, ChangeRequest, ChatApi, SendCommand, SendReceipt,
};

/// Sets up the channels a chat API answers for, as clients do through the
/// chat service.
#[async_trait]
pub trait ChatDirectory: Send + Sync {
    /// Creates `channel` owned by `members[0]`, with the rest joined.
    async fn create_channel(&self, channel: &ChannelId, members: &[UserId]) -> SuiteResult<()>;
}

/// A chat API and the directory its channels are made in.
pub struct ChatUnderTest {
    chat: Arc<dyn ChatApi>,
    directory: Arc<dyn ChatDirectory>,
}

impl std::fmt::Debug for ChatUnderTest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatUnderTest").finish_non_exhaustive()
    }
}

impl ChatUnderTest {
    /// The node's gRPC client of the chat service at `chat`, whose
    /// channels `directory` creates.
    pub fn grpc(chat: tonic::transport::Channel, directory: impl ChatDirectory + 'static) -> Self {
        Self {
            chat: Arc::new(crate::upstream::chat::GrpcChat::new(
                chatmesh_upstream::balance::single(chat),
                &chatmesh_upstream::UpstreamSettings::default(),
            )),
            directory: Arc::new(directory),
        }
    }

    /// The in-memory chat service.
    #[cfg(test)]
    pub(crate) fn memory() -> Self {
        let chat = Arc::new(crate::memory::MemoryChat::default());
        Self {
            chat: chat.clone(),
            directory: chat,
        }
    }
}

#[cfg(test)]
#[async_trait]
impl ChatDirectory for crate::memory::MemoryChat {
    async fn create_channel(&self, channel: &ChannelId, members: &[UserId]) -> SuiteResult<()> {
        self.add_channel(channel, members);
        Ok(())
    }
}

fn command(channel: &ChannelId, sender: &UserId, body: &str, key: Option<&str>) -> SendCommand {
    SendCommand {
        channel: channel.clone(),
        sender: sender.clone(),
        body: body.to_owned(),
        attachments: Vec::new(),
        idempotency_key: key.map(str::to_owned),
        reply_to: None,
    }
}

async fn send(
    t: &ChatUnderTest,
    channel: &ChannelId,
    sender: &UserId,
    key: Option<&str>,
) -> SuiteResult<SendReceipt> {
    Ok(t.chat.send(command(channel, sender, "hello", key)).await?)
}

/// Members have access; other users of an existing channel are outsiders,
/// and a channel never created is unknown to everyone.
pub async fn access_tells_members_outsiders_and_unknown_channels_apart(
    t: &ChatUnderTest,
) -> SuiteResult<()> {
    let channel = unique_channel("access");
    let (alice, bob, carol) = (
        unique_user("alice"),
        unique_user("bob"),
        unique_user("carol"),
    );
    t.directory
        .create_channel(&channel, &[alice.clone(), bob.clone()])
        .await?;
    assert_eq!(t.chat.access(&channel, &alice).await?, Access::Member);
    assert_eq!(t.chat.access(&channel, &bob).await?, Access::Member);
    assert_eq!(t.chat.access(&channel, &carol).await?, Access::NotMember);
    let unknown = unique_channel("unknown");
    assert_eq!(
        t.chat.access(&unknown, &alice).await?,
        Access::UnknownChannel
    );
    Ok(())
}

/// A channel's sends are numbered 1, 2, 3, … whoever sends them, each
/// with its own message ID; another channel counts on its own.
pub async fn sends_are_numbered_densely_per_channel(t: &ChatUnderTest) -> SuiteResult<()> {
    let (channel, other) = (unique_channel("dense"), unique_channel("dense-other"));
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    t.directory
        .create_channel(&channel, &[alice.clone(), bob.clone()])
        .await?;
    t.directory
        .create_channel(&other, std::slice::from_ref(&alice))
        .await?;
    let mut receipts = Vec::new();
    for sender in [&alice, &bob, &alice] {
        receipts.push(send(t, &channel, sender, None).await?);
    }
    let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert!(
        receipts.iter().all(|r| !r.duplicate && !r.masked),
        "{receipts:?}"
    );
    let ids: HashSet<_> = receipts.iter().map(|r| r.message_id).collect();
    assert_eq!(ids.len(), receipts.len(), "distinct message IDs");
    assert_eq!(send(t, &other, &alice, None).await?.seq, 1);
    Ok(())
}

/// A send repeated with its idempotency key answers the original message,
/// marked duplicate, and takes no new number.
pub async fn a_repeated_idempotency_key_answers_the_original(t: &ChatUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("idempotent");
    let alice = unique_user("alice");
    t.directory
        .create_channel(&channel, std::slice::from_ref(&alice))
        .await?;
    let first = send(t, &channel, &alice, Some("key-1")).await?;
    assert!(!first.duplicate);
    let again = send(t, &channel, &alice, Some("key-1")).await?;
    assert_eq!(
        again,
        SendReceipt {
            duplicate: true,
            ..first.clone()
        }
    );
    let next = send(t, &channel, &alice, Some("key-2")).await?;
    assert_eq!((next.seq, next.duplicate), (first.seq + 1, false));
    Ok(())
}

/// Outsiders cannot send to a channel, and nobody to an unknown one.
pub async fn sends_outside_membership_are_refused(t: &ChatUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("refused");
    let (alice, carol) = (unique_user("alice"), unique_user("carol"));
    t.directory
        .create_channel(&channel, std::slice::from_ref(&alice))
        .await?;
    let outsider = t.chat.send(command(&channel, &carol, "hi", None)).await;
    assert_eq!(outsider.map_err(|e| e.kind), Err(ErrorKind::NotMember));
    let unknown = unique_channel("refused-unknown");
    let nowhere = t.chat.send(command(&unknown, &alice, "hi", None)).await;
    assert_eq!(nowhere.map_err(|e| e.kind), Err(ErrorKind::UnknownChannel));
    // Refused sends take no number.
    assert_eq!(send(t, &channel, &alice, None).await?.seq, 1);
    Ok(())
}

fn change_command(
    channel: &ChannelId,
    sender: &UserId,
    target: u64,
    request: ChangeRequest,
    key: Option<&str>,
) -> ChangeCommand {
    ChangeCommand {
        channel: channel.clone(),
        sender: sender.clone(),
        target,
        request,
        idempotency_key: key.map(str::to_owned),
    }
}

async fn change(
    t: &ChatUnderTest,
    channel: &ChannelId,
    sender: &UserId,
    target: u64,
    request: ChangeRequest,
) -> SuiteResult<ChangeReceipt> {
    let command = change_command(channel, sender, target, request, None);
    Ok(t.chat.change(command).await?)
}

fn react(emoji: &str, remove: bool) -> ChangeRequest {
    ChangeRequest::React {
        emoji: emoji.to_owned(),
        remove,
    }
}

/// Edits, reactions and deletes are channel events: each takes the
/// channel's next number after the posts, and comes back as the event,
/// from its sender, naming its target.
pub async fn changes_are_events_numbered_with_the_posts(t: &ChatUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("changes");
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    t.directory
        .create_channel(&channel, &[alice.clone(), bob.clone()])
        .await?;
    let post = send(t, &channel, &alice, None).await?.seq;
    let edit = ChangeRequest::Edit {
        body: "hello again".into(),
    };
    let edited = change(t, &channel, &alice, post, edit).await?;
    assert_eq!(edited.event.seq, post + 1);
    assert_eq!(edited.event.change, Change::Edit { target: post });
    assert_eq!(edited.event.body, "hello again");
    assert_eq!(edited.event.sender, alice);
    assert_eq!(edited.event.channel, channel);
    assert!(!edited.duplicate && !edited.masked, "{edited:?}");

    let added = change(t, &channel, &bob, post, react("👍", false)).await?;
    assert_eq!(added.event.seq, post + 2);
    let thumbs = "👍".to_owned();
    assert_eq!(
        added.event.change,
        Change::React {
            target: post,
            emoji: thumbs.clone()
        }
    );
    assert_eq!(added.event.sender, bob);
    let removed = change(t, &channel, &bob, post, react("👍", true)).await?;
    assert_eq!(removed.event.seq, post + 3);
    assert_eq!(
        removed.event.change,
        Change::Unreact {
            target: post,
            emoji: thumbs
        }
    );
    let deleted = change(t, &channel, &alice, post, ChangeRequest::Delete).await?;
    assert_eq!(deleted.event.seq, post + 4);
    assert_eq!(deleted.event.change, Change::Delete { target: post });
    assert_ne!(deleted.event.id, edited.event.id);
    // Posts go on numbering after the changes.
    assert_eq!(send(t, &channel, &bob, None).await?.seq, post + 5);
    Ok(())
}

/// Only the author edits; the author or an owner deletes; whatever is
/// refused takes no number.
pub async fn only_the_author_edits_and_the_author_or_an_owner_deletes(
    t: &ChatUnderTest,
) -> SuiteResult<()> {
    let channel = unique_channel("change-rights");
    // Alice creates the channel and owns it; Bob is a member.
    let (alice, bob) = (unique_user("alice"), unique_user("bob"));
    t.directory
        .create_channel(&channel, &[alice.clone(), bob.clone()])
        .await?;
    let alices = send(t, &channel, &alice, None).await?.seq;
    let bobs = send(t, &channel, &bob, None).await?.seq;
    let edit = || ChangeRequest::Edit {
        body: "not yours".into(),
    };
    let refused = |sender: &UserId, target, request| {
        let command = change_command(&channel, sender, target, request, None);
        async move { t.chat.change(command).await.map(|_| ()).map_err(|e| e.kind) }
    };
    let forbidden = Err(ErrorKind::Forbidden);
    assert_eq!(refused(&bob, alices, edit()).await, forbidden);
    assert_eq!(
        refused(&alice, bobs, edit()).await,
        forbidden,
        "an owner deletes, but edits only her own"
    );
    assert_eq!(
        refused(&bob, alices, ChangeRequest::Delete).await,
        forbidden
    );
    let deleted = change(t, &channel, &alice, bobs, ChangeRequest::Delete).await?;
    assert_eq!(deleted.event.seq, bobs + 1, "refusals took no number");
    Ok(())
}

/// A change naming a number no post carries is not found; an outsider's
/// change is refused as their send would be.
pub async fn changes_to_no_post_or_by_outsiders_are_refused(t: &ChatUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("change-refused");
    let (alice, carol) = (unique_user("alice"), unique_user("carol"));
    t.directory
        .create_channel(&channel, std::slice::from_ref(&alice))
        .await?;
    let post = send(t, &channel, &alice, None).await?.seq;
    let nowhere = change_command(&channel, &alice, post + 50, react("👍", false), None);
    let refused = t.chat.change(nowhere).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::NotFound)
    );
    let outsider = change_command(&channel, &carol, post, react("👍", false), None);
    let refused = t.chat.change(outsider).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|e| e.kind),
        Err(ErrorKind::NotMember)
    );
    assert_eq!(send(t, &channel, &alice, None).await?.seq, post + 1);
    Ok(())
}

/// A change repeated with its idempotency key answers the original event,
/// marked duplicate, and takes no new number.
pub async fn a_repeated_change_key_answers_the_original(t: &ChatUnderTest) -> SuiteResult<()> {
    let channel = unique_channel("change-idempotent");
    let alice = unique_user("alice");
    t.directory
        .create_channel(&channel, std::slice::from_ref(&alice))
        .await?;
    let post = send(t, &channel, &alice, None).await?.seq;
    let command = change_command(&channel, &alice, post, react("🎉", false), Some("react-1"));
    let first = t.chat.change(command.clone()).await?;
    assert!(!first.duplicate);
    let again = t.chat.change(command).await?;
    assert!(again.duplicate, "{again:?}");
    assert_eq!(
        (again.event.seq, again.event.id),
        (first.event.seq, first.event.id)
    );
    assert_eq!(
        send(t, &channel, &alice, None).await?.seq,
        first.event.seq + 1
    );
    Ok(())
}
