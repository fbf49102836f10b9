//! Tests of [`crate::ports::MemberDirectory`], set up through
//! [`DirectoryFixture`].

use super::*;
use crate::ports::MemberDirectory;

/// Members get the channel's policy.
pub async fn members_get_the_channel_policy(
    dir: &(impl MemberDirectory + DirectoryFixture),
) -> SuiteResult<()> {
    let (owner, member) = (unique_user("owner"), unique_user("member"));
    let (strict, lenient) = (unique_channel("dir-reject"), unique_channel("dir-mask"));
    dir.create_channel(&strict, &owner, Moderation::Reject)
        .await?;
    dir.create_channel(&lenient, &owner, Moderation::Mask)
        .await?;
    dir.join(&lenient, &member).await?;
    assert_eq!(
        dir.policy_for_member(&strict, &owner).await?,
        Moderation::Reject
    );
    assert_eq!(
        dir.policy_for_member(&lenient, &owner).await?,
        Moderation::Mask
    );
    assert_eq!(
        dir.policy_for_member(&lenient, &member).await?,
        Moderation::Mask
    );
    Ok(())
}

/// Outsiders and unknown channels are told apart.
pub async fn outsiders_and_unknown_channels_are_refused(
    dir: &(impl MemberDirectory + DirectoryFixture),
) -> SuiteResult<()> {
    let owner = unique_user("owner");
    let channel = unique_channel("dir-closed");
    dir.create_channel(&channel, &owner, Moderation::Reject)
        .await?;
    let outsider = dir
        .policy_for_member(&channel, &unique_user("outsider"))
        .await;
    assert!(
        matches!(outsider, Err(ChatError::NotMember)),
        "{outsider:?}"
    );
    let unknown = dir
        .policy_for_member(&unique_channel("dir-none"), &owner)
        .await;
    assert!(
        matches!(unknown, Err(ChatError::ChannelNotFound)),
        "{unknown:?}"
    );
    Ok(())
}

/// Only ready uploads of the same channel may be attached.
pub async fn attachments_must_be_ready_uploads_of_the_channel(
    dir: &(impl MemberDirectory + DirectoryFixture),
) -> SuiteResult<()> {
    let owner = unique_user("owner");
    let (channel, other) = (unique_channel("dir-media"), unique_channel("dir-media"));
    dir.create_channel(&channel, &owner, Moderation::Reject)
        .await?;
    dir.create_channel(&other, &owner, Moderation::Reject)
        .await?;
    let id = |what: &str| format!("{what}-{}", uuid::Uuid::new_v4().simple());
    let (ready, pending, elsewhere) = (id("ready"), id("pending"), id("elsewhere"));
    dir.add_media(&channel, &owner, &ready, true).await?;
    dir.add_media(&channel, &owner, &pending, false).await?;
    dir.add_media(&other, &owner, &elsewhere, true).await?;

    dir.check_attachments(&channel, &[]).await?;
    dir.check_attachments(&channel, std::slice::from_ref(&ready))
        .await?;
    for bad in [pending, elsewhere, id("unknown")] {
        let result = dir
            .check_attachments(&channel, &[ready.clone(), bad.clone()])
            .await;
        assert!(
            matches!(&result, Err(ChatError::Attachment(m)) if *m == bad),
            "{result:?}"
        );
    }
    Ok(())
}
