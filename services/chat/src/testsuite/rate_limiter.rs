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

/// One user's sends count together, and apart from any channel's.
pub async fn the_user_limit_spans_channels(limiter: &impl RateLimiter) -> SuiteResult<()> {
    let user = unique_user("rate-user");
    for _ in 0..suite_limits().user_per_second {
        limiter.check_user(&user).await?;
    }
    let over = limiter.check_user(&user).await;
    assert_eq!(scope(over), Some("user"));
    // Another user is not slowed down, nor is any channel.
    limiter.check_user(&unique_user("rate-other")).await?;
    limiter.check_channel(&unique_channel("rate")).await?;
    Ok(())
}

/// A channel's sends count together, and apart from any user's.
pub async fn the_channel_limit_spans_users(limiter: &impl RateLimiter) -> SuiteResult<()> {
    let channel = unique_channel("rate-channel");
    for _ in 0..suite_limits().channel_per_second {
        limiter.check_channel(&channel).await?;
    }
    let over = limiter.check_channel(&channel).await;
    assert_eq!(scope(over), Some("channel"));
    limiter.check_channel(&unique_channel("rate-other")).await?;
    limiter.check_user(&unique_user("rate")).await?;
    Ok(())
}
