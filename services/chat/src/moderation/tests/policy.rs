//! What each channel policy does with a hit, channel allow lists, and what is recorded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chatmesh_ids::{ChannelId, UserId};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

use super::*;
use crate::memory::MemoryDirectory;

/// Counts every counter increment by name and labels.
#[derive(Debug, Default, Clone)]
struct Counts(Arc<Mutex<BTreeMap<String, u64>>>);

#[derive(Debug)]
struct Cell(String, Counts);

impl CounterFn for Cell {
    fn increment(&self, value: u64) {
        let mut counts = self.1.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(self.0.clone()).or_default() += value;
    }

    fn absolute(&self, value: u64) {
        let mut counts = self.1.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.insert(self.0.clone(), value);
    }
}

impl Recorder for Counts {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        Counter::from_arc(Arc::new(Cell(name, self.clone())))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Counts {
    fn get(&self, name: &str) -> u64 {
        let counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(name).copied().unwrap_or(0)
    }
}

struct Setup {
    filter: SharedFilter,
    directory: MemoryDirectory,
    channel: ChannelId,
}

fn setup(policy: Moderation) -> Setup {
    let directory = MemoryDirectory::default();
    let channel = ChannelId::new("room").expect("valid channel");
    let owner = UserId::new("alice").expect("valid user");
    directory.create_channel(&channel, &owner, policy);
    Setup {
        filter: SharedFilter::new(filter()),
        directory,
        channel,
    }
}

/// Runs `judge` on a runtime of this thread, with `counts` recording metrics.
fn judged(s: &Setup, policy: Moderation, body: &str, counts: &Counts) -> Verdict {
    metrics::with_local_recorder(counts, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime builds");
        rt.block_on(judge(&s.filter, &s.directory, &s.channel, policy, body))
            .expect("judge succeeds")
    })
}

#[test]
fn each_policy_does_its_own_thing_with_a_hit() {
    let counts = Counts::default();
    for (policy, want) in [
        (Moderation::Reject, Verdict::Reject),
        (Moderation::Mask, Verdict::Mask("you ****!".into())),
        (Moderation::Flag, Verdict::Flag(1)),
    ] {
        let s = setup(policy);
        assert_eq!(judged(&s, policy, "you fuck!", &counts), want, "{policy:?}");
        assert_eq!(judged(&s, policy, "hello there", &counts), Verdict::Clean);
    }
    for policy in ["reject", "mask", "flag"] {
        let name = format!("chatmesh_moderation_hits_total{{policy={policy}}}");
        assert_eq!(counts.get(&name), 1, "{name}");
    }
}

#[test]
fn flagging_counts_hits_and_records_the_message_not_its_text() {
    let counts = Counts::default();
    let s = setup(Moderation::Flag);
    let verdict = judged(&s, Moderation::Flag, "fuck this shitty day, fuck", &counts);
    assert_eq!(verdict, Verdict::Flag(3));
    let message = chatmesh_ids::ChatMessage {
        id: chatmesh_ids::MessageId::from_raw(845_129_183_232_000_001),
        channel: s.channel.clone(),
        sender: UserId::new("alice").expect("valid user"),
        seq: 7,
        body: "fuck this shitty day, fuck".into(),
        attachments: Vec::new(),
        created_at_ms: 0,
        idempotency_key: None,
        change: Default::default(),
        reply_to: None,
        state: Default::default(),
    };
    metrics::with_local_recorder(&counts, || record_flagged(&message, 3));
    assert_eq!(counts.get("chatmesh_moderation_flagged_total{}"), 1);
}

#[test]
fn a_channel_allow_list_wins_over_its_phrases_only() {
    let counts = Counts::default();
    let s = setup(Moderation::Reject);
    s.directory
        .set_moderation_allow(&s.channel, &["Dick Whitman", "  ", "!!!"]);
    assert_eq!(
        judged(
            &s,
            Moderation::Reject,
            "Dick Whitman is Don Draper",
            &counts
        ),
        Verdict::Clean
    );
    assert_eq!(
        judged(&s, Moderation::Reject, "Dick Whitman is a dick", &counts),
        Verdict::Reject
    );
    // Another channel does not get this one's phrases.
    let other = setup(Moderation::Reject);
    assert_eq!(
        judged(
            &other,
            Moderation::Reject,
            "Dick Whitman is Don Draper",
            &counts
        ),
        Verdict::Reject
    );
}

#[test]
fn the_service_allow_list_wins_over_hits_inside_its_phrases() {
    let f = filter();
    assert!(f.is_clean("I read Moby Dick twice"));
    assert!(f.is_clean("I read MOBY-DICK twice"));
    assert!(f.is_clean("Balaam’s ass spoke"));
    assert!(f.is_clean("We drove to Fucking, Austria"));
    // Only hits inside the phrase: the rest of the text is still read.
    assert_eq!(
        f.mask("Moby Dick is a dick").as_deref(),
        Some("Moby Dick is a ****")
    );
    // Punctuation and case do not matter, but the words must be the phrase's, in order.
    assert!(f.is_clean("fucking (Austria)"));
    assert!(!f.is_clean("fucking hell, Austria"));
    let channel = AllowList::new(&["fucking hell"]);
    assert!(
        f.find_allowing("fucking hell, Austria", &channel)
            .is_empty()
    );
    assert!(
        !f.find_allowing("fucking hell, Austria", &AllowList::new(&["hell"]))
            .is_empty()
    );
}
