//! Tests of [`crate::ports::MessageLog`], read back through [`LogReader`].

use super::*;
use crate::ports::MessageLog;

/// What is appended is there, whole and in order.
pub async fn appends_read_back_in_order(log: &(impl MessageLog + LogReader)) -> SuiteResult<()> {
    let ids = Snowflake::new(2).expect("2 is a worker ID");
    let (channel, sender) = (unique_channel("log"), unique_user("sender"));
    let sent: Vec<_> = (1..=3)
        .map(|seq| message(&ids, &channel, &sender, seq))
        .collect();
    for m in &sent {
        log.append(m, None).await?;
    }
    let read = log.read(&channel, sent.len()).await?;
    let messages: Vec<_> = read.iter().map(|r| r.message.clone()).collect();
    assert_eq!(messages, sent);
    assert!(read.iter().all(|r| r.traceparent.is_none()));
    Ok(())
}

/// The caller's `traceparent` travels with the record.
pub async fn the_traceparent_travels_with_the_record(
    log: &(impl MessageLog + LogReader),
) -> SuiteResult<()> {
    let ids = Snowflake::new(2).expect("2 is a worker ID");
    let (channel, sender) = (unique_channel("log-trace"), unique_user("sender"));
    let m = message(&ids, &channel, &sender, 1);
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    log.append(&m, Some(tp)).await?;
    let read = log.read(&channel, 1).await?;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].message, m);
    assert_eq!(read[0].traceparent.as_deref(), Some(tp));
    Ok(())
}
