//! The chat service's moderation filter on mixed-language 1 KB messages, one core, no
//! infrastructure: the matcher's scan alone (one Aho-Corasick pass and its checks over the
//! normalised text), the whole filter per message (normalising, scanning, allow lists,
//! mapping back), and a plain byte scan of the same text as the floor to compare with. Times
//! are the CPU time of the benchmark's thread, so other work on the machine does not count.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use chatmesh_bench::param;
use chatmesh_chat::moderation::Filter;

/// Sentences messages are made of: several scripts, emoji, numbers, and now and then a hit.
#[rustfmt::skip]
const SENTENCES: &[&str] = &[
    "Deploy finished: 14 services rolled, 0 errors, p99 back under 40 ms. ",
    "Can someone review the assessment doc before Friday? ",
    "Das Meeting ist um 15 Uhr im Raum 455, bitte pünktlich sein. ",
    "On se retrouve à la gare de Lyon vers midi ? ",
    "¿Alguien sabe si el Galaxy A55 tiene 5G? ",
    "Привет! Сегодня обновили сервер, всё работает. ",
    "今天的会议改到下午三点，请大家注意。 ",
    "明日の打ち合わせは10時からです。よろしくお願いします。 ",
    "مرحبا بالجميع، الاجتماع غدا في الساعة العاشرة. ",
    "שלום לכולם, הפגישה נדחתה למחר. ",
    "Great job team 🎉🚀 the release looks solid 👍🏽 ",
    "Call me at 555-455-0199 if the build breaks again. ",
    "The cockpit checklist and the Scunthorpe office are both sorted. ",
    "Merci beaucoup pour votre aide, c'est très gentil. ",
    "Vi ses på fredag, det är slut på kaffe igen. ",
];

/// The sentence with a hit.
const RUDE: &str = "this is such a shitty build, fix the f*cking thing ";

/// `count` messages of about 1 KB each, the same every run.
fn messages(count: usize) -> Vec<String> {
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    (0..count)
        .map(|_| {
            let mut m = String::with_capacity(1100);
            while m.len() < 1024 {
                // About one message in ten has a hit.
                let sentence = if next() % 150 == 0 {
                    RUDE
                } else {
                    SENTENCES[next() % SENTENCES.len()]
                };
                m.push_str(sentence);
            }
            let mut end = 1024;
            while !m.is_char_boundary(end) {
                end -= 1;
            }
            m.truncate(end);
            m
        })
        .collect()
}

/// CPU time this thread has run, from the scheduler's own count: the machine may be busy
/// with other work, and wall time would charge its waits to the filter.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Seconds of CPU (or, without a scheduler count, of wall time) taken by `rounds` runs of
/// `f`, after one warm-up run.
fn time(rounds: u64, mut f: impl FnMut() -> usize) -> f64 {
    black_box(f());
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    for _ in 0..rounds {
        black_box(f());
    }
    match (cpu, cpu_seconds()) {
        (Some(before), Some(after)) => after - before,
        _ => wall.elapsed().as_secs_f64(),
    }
}

fn main() -> anyhow::Result<()> {
    let rounds = param("BENCH_MODERATION_ROUNDS", 200);
    let lists = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/chat");
    let filter = Filter::from_files(
        &lists.join("moderation-words.txt"),
        Some(&lists.join("moderation-allow.txt")),
    )?;
    let messages = messages(1000);
    let bytes: usize = messages.iter().map(String::len).sum();
    let prepared: Vec<_> = messages.iter().map(|m| filter.prepare(m)).collect();
    let normalised: usize = prepared.iter().map(|p| p.len()).sum();
    let hits: usize = messages.iter().filter(|m| !filter.is_clean(m)).count();
    println!(
        "moderation: {} messages of ~1 KB ({bytes} bytes, {normalised} normalised), {hits} with a hit, {rounds} rounds\n  {filter:?}",
        messages.len(),
    );

    let mb = |total: usize, secs: f64| total as f64 * rounds as f64 / secs / 1e6;
    let scan = time(rounds, || {
        prepared.iter().map(|p| filter.scan_prepared(p)).sum()
    });
    let floor = time(rounds, || {
        messages
            .iter()
            .map(|m| {
                m.as_bytes()
                    .iter()
                    .map(|&b| usize::from(b == b'!'))
                    .sum::<usize>()
            })
            .sum()
    });
    let whole = time(rounds, || {
        messages.iter().map(|m| filter.find(m).len()).sum()
    });
    let masked = time(rounds, || {
        messages
            .iter()
            .map(|m| filter.mask(m).map_or(0, |s| s.len()))
            .sum()
    });
    let per_message = |secs: f64| secs * 1e6 / (rounds as f64 * messages.len() as f64);

    let scan_mb = mb(normalised, scan);
    let floor_mb = mb(bytes, floor);
    println!(
        "  matcher scan:    {scan_mb:>8.0} MB/s of normalised text ({:.0} MB/s of message text)",
        mb(bytes, scan)
    );
    println!(
        "  byte-scan floor: {floor_mb:>8.0} MB/s (matcher at {:.1}% of it)",
        100.0 * scan_mb / floor_mb
    );
    println!(
        "  whole filter:    {:>8.1} µs per message ({:.0} MB/s), masking {:.1} µs",
        per_message(whole),
        mb(bytes, whole),
        per_message(masked),
    );
    Ok(())
}
