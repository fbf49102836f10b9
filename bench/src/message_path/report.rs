//! A run's figures: throughput, latency from the send to the ack and to
//! each receiver, loss and errors; and two runs side by side.

use std::collections::{BTreeMap, HashMap};

use chatmesh_bench::percentile;

use super::mix::Kind;
use super::receivers::Delivery;
use super::senders::RunLog;

/// Latency samples in microseconds, sorted, for all frames and split into
/// posts and changes.
#[derive(Debug, Default)]
pub(crate) struct Latency {
    all: Vec<u64>,
    posts: Vec<u64>,
    changes: Vec<u64>,
}

impl Latency {
    fn push(&mut self, kind: Kind, us: u64) {
        self.all.push(us);
        if kind.is_change() {
            self.changes.push(us);
        } else {
            self.posts.push(us);
        }
    }

    fn sort(&mut self) {
        self.all.sort_unstable();
        self.posts.sort_unstable();
        self.changes.sort_unstable();
    }
}

/// One run's figures.
#[derive(Debug)]
pub(crate) struct Summary {
    label: &'static str,
    sent: BTreeMap<Kind, u64>,
    fallbacks: u64,
    acked: u64,
    errors: BTreeMap<String, u64>,
    unanswered: u64,
    send_secs: f64,
    total_secs: f64,
    /// Deliveries the acked events imply: one per subscribed client.
    expected: u64,
    /// Deliveries of this run's acked events.
    delivered: u64,
    /// Deliveries of events this run has no ack for.
    unmatched: u64,
    ack: Latency,
    receive: Latency,
}

impl Summary {
    /// Matches each delivery to its event's ack by channel and `seq`.
    pub(crate) fn new(
        label: &'static str,
        log: RunLog,
        deliveries: &[Delivery],
        members: &[u64],
    ) -> Self {
        let mut ack = Latency::default();
        let mut sent_at = HashMap::with_capacity(log.acked.len());
        let mut expected = 0;
        for a in &log.acked {
            ack.push(a.kind, a.ack_us.saturating_sub(a.sent_us));
            sent_at.insert((a.room, a.seq), (a.kind, a.sent_us));
            expected += members[a.room];
        }
        let mut receive = Latency::default();
        let mut unmatched = 0;
        for d in deliveries {
            match sent_at.get(&(d.room, d.seq)) {
                Some(&(kind, sent_us)) => receive.push(kind, d.at_us.saturating_sub(sent_us)),
                None => unmatched += 1,
            }
        }
        ack.sort();
        receive.sort();
        Self {
            label,
            sent: log.sent,
            fallbacks: log.fallbacks,
            acked: log.acked.len() as u64,
            errors: log.errors,
            unanswered: log.unanswered,
            send_secs: log.send_secs,
            total_secs: log.total_secs,
            expected,
            delivered: receive.all.len() as u64,
            unmatched,
            ack,
            receive,
        }
    }

    fn sent_total(&self) -> u64 {
        self.sent.values().sum()
    }

    /// Deliveries per second, from the first send until the last delivery
    /// arrived (or the drain gave up).
    fn deliveries_per_sec(&self) -> f64 {
        self.delivered as f64 / self.total_secs
    }

    fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }

    /// Prints the run, with the load averages taken before it.
    pub(crate) fn print(&self, load: &str) {
        let sent = self.sent_total();
        let kinds: Vec<String> = Kind::ALL
            .iter()
            .filter_map(|k| self.sent.get(k).map(|n| format!("{n} {}", kind_name(*k))))
            .collect();
        println!();
        println!("{} (load average before: {load}):", self.label);
        println!(
            "  sent {sent} frames in {:.1}s ({:.0}/s): {}",
            self.send_secs,
            sent as f64 / self.send_secs,
            kinds.join(", ")
        );
        if self.fallbacks > 0 {
            println!(
                "  ({} changes had no target old enough yet and went as posts)",
                self.fallbacks
            );
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        println!(
            "  acked {}, errors {} ({}), unanswered {}",
            self.acked,
            self.errors_total(),
            if errors.is_empty() {
                "none".into()
            } else {
                errors.join(", ")
            },
            self.unanswered
        );
        println!(
            "  delivered {} of {} expected ({:.2}%), {} lost; {:.0} deliveries/s{}",
            self.delivered,
            self.expected,
            100.0 * self.delivered as f64 / self.expected.max(1) as f64,
            self.lost(),
            self.deliveries_per_sec(),
            if self.unmatched > 0 {
                format!("; {} deliveries of unacked events", self.unmatched)
            } else {
                String::new()
            }
        );
        print_latency("send->ack", &self.ack, false);
        print_latency("send->receive", &self.receive, true);
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Post => "posts",
        Kind::Edit => "edits",
        Kind::ReactionAdd => "reactions added",
        Kind::ReactionRemove => "reactions removed",
    }
}

fn print_latency(what: &str, l: &Latency, tail: bool) {
    let p = |s: &[u64]| {
        format!(
            "p50 {:.2}  p99 {:.2}",
            percentile(s, 0.50),
            percentile(s, 0.99)
        )
    };
    let extra = if tail {
        format!(
            "  p99.9 {:.2}  max {:.2}",
            percentile(&l.all, 0.999),
            percentile(&l.all, 1.0)
        )
    } else {
        String::new()
    };
    println!("  {what} ms: {}{extra}", p(&l.all));
    if !l.changes.is_empty() {
        println!("    posts {}; changes {}", p(&l.posts), p(&l.changes));
    }
}

/// The two runs side by side, with `mix ÷ plain`.
pub(crate) fn compare(plain: &Summary, mix: &Summary) {
    println!();
    println!(
        "{:<28}{:>12}{:>12}{:>14}",
        "", "plain", "mix", "mix ÷ plain"
    );
    let row = |name: &str, a: f64, b: f64, digits: usize| {
        println!("{name:<28}{a:>12.digits$}{b:>12.digits$}{:>14.2}", b / a);
    };
    row("frames sent/s", rate(plain), rate(mix), 0);
    row(
        "deliveries/s",
        plain.deliveries_per_sec(),
        mix.deliveries_per_sec(),
        0,
    );
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        row(
            &format!("send->ack {name} ms"),
            percentile(&plain.ack.all, q),
            percentile(&mix.ack.all, q),
            2,
        );
    }
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        row(
            &format!("send->receive {name} ms"),
            percentile(&plain.receive.all, q),
            percentile(&mix.receive.all, q),
            2,
        );
    }
    for (name, q) in [("p50", 0.50), ("p99", 0.99)] {
        row(
            &format!("  posts only, {name} ms"),
            percentile(&plain.receive.posts, q),
            percentile(&mix.receive.posts, q),
            2,
        );
    }
    println!(
        "{:<28}{:>12}{:>12}",
        "lost deliveries",
        plain.lost(),
        mix.lost()
    );
    println!(
        "{:<28}{:>12}{:>12}",
        "errors, unanswered",
        format!("{}, {}", plain.errors_total(), plain.unanswered),
        format!("{}, {}", mix.errors_total(), mix.unanswered)
    );
}

fn rate(s: &Summary) -> f64 {
    s.sent_total() as f64 / s.send_secs
}
