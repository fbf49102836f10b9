//! Tests of [`crate::ports::RateLimiter`]. The limiter must be built with
//! [`suite_limits`] on a clock that stands still, so that no window ends
//! mid-test.

use super::*;
use crate::ports::RateLimiter;

fn scope(result: Result<(), ChatError>) -> Option<&'static str> {
    match result {
        Err(ChatError::RateLimited { scope }) => Some(scope),
        _ => None,
    }
}

/// One user's sends count together, whatever the channel.
pub async fn the_user_limit_spans_channels(limiter: &impl RateLimiter) -> SuiteResult<()> {
    let user = unique_user("rate-user");
    for _ in 0..suite_limits().user_per_second {
        limiter.check(&unique_channel("rate"), &user).await?;
    }
    let over = limiter.check(&unique_channel("rate"), &user).await;
    assert_eq!(scope(over), Some("user"));
    // Another user is not slowed down.
    limiter
        .check(&unique_channel("rate"), &unique_user("rate-other"))
        .await?;
    Ok(())
}

/// A channel's sends count together, whoever sends them.
pub async fn the_channel_limit_spans_users(limiter: &impl RateLimiter) -> SuiteResult<()> {
    let channel = unique_channel("rate-channel");
    for _ in 0..suite_limits().channel_per_second {
        limiter.check(&channel, &unique_user("rate")).await?;
    }
    let over = limiter.check(&channel, &unique_user("rate")).await;
    assert_eq!(scope(over), Some("channel"));
    limiter
        .check(&unique_channel("rate-other"), &unique_user("rate"))
        .await?;
    Ok(())
}
