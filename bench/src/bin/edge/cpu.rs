//! CPU of the mesh's processes, sampled every 100 ms on a thread of its
//! own: reading `/proc` and asking `getconf` block, and the samples must
//! not wait behind the clients' tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatmesh_bench::cpu_time;

/// The sampling period.
const EVERY: Duration = Duration::from_millis(100);

/// A sampler running until [`Sampler::stop`].
#[derive(Debug)]
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Usage>,
}

/// CPU used while the sampler ran, in shares of one core (1.0 = one core
/// busy the whole time).
#[derive(Debug)]
pub(crate) struct Usage {
    /// Busiest 100 ms window of the watched process.
    pub(crate) watched_peak: f64,
    /// Busiest 100 ms window of all processes together.
    pub(crate) total_peak: f64,
    /// Each process's average over the whole run, by name.
    pub(crate) average: Vec<(String, f64)>,
    pub(crate) seconds: f64,
}

impl Sampler {
    /// Samples `processes` (name, pid); `watched` names the one whose own
    /// peak is reported.
    pub(crate) fn start(processes: Vec<(String, u32)>, watched: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let watched = processes.iter().position(|(name, _)| name == watched);
        let flag = stop.clone();
        let thread = std::thread::spawn(move || sample(&processes, watched, &flag));
        Self { stop, thread }
    }

    pub(crate) fn stop(self) -> Usage {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or(Usage {
            watched_peak: f64::NAN,
            total_peak: f64::NAN,
            average: Vec::new(),
            seconds: 0.0,
        })
    }
}

fn sample(processes: &[(String, u32)], watched: Option<usize>, stop: &AtomicBool) -> Usage {
    // A process that died reads as no time: its share then shows as zero
    // rather than failing the run.
    let read = || -> Vec<Duration> {
        processes
            .iter()
            .map(|(_, pid)| cpu_time(*pid).unwrap_or_default())
            .collect()
    };
    let (first_at, first) = (Instant::now(), read());
    let (mut prev_at, mut prev) = (first_at, first.clone());
    let (mut watched_peak, mut total_peak) = (0.0f64, 0.0f64);
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(EVERY);
        let (at, now) = (Instant::now(), read());
        let window = at.duration_since(prev_at).as_secs_f64();
        let used: Vec<f64> = now
            .iter()
            .zip(&prev)
            .map(|(n, p)| n.saturating_sub(*p).as_secs_f64() / window)
            .collect();
        if let Some(w) = watched {
            watched_peak = watched_peak.max(used[w]);
        }
        total_peak = total_peak.max(used.iter().sum());
        (prev_at, prev) = (at, now);
    }
    let seconds = prev_at.duration_since(first_at).as_secs_f64();
    let average = processes
        .iter()
        .zip(prev.iter().zip(&first))
        .map(|((name, _), (last, first))| {
            (
                name.clone(),
                last.saturating_sub(*first).as_secs_f64() / seconds.max(f64::EPSILON),
            )
        })
        .collect();
    Usage {
        watched_peak,
        total_peak,
        average,
        seconds,
    }
}

/// The whole machine's CPU counters, to tell a gateway that had cores to
/// spare from one that competed for them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Machine {
    busy: u64,
    total: u64,
    cores: usize,
}

impl Machine {
    /// The counters now, from `/proc/stat`; `None` where it cannot be read.
    pub(crate) fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let mut lines = stat.lines();
        let ticks: Vec<u64> = lines
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal; idle and iowait
        // are the time no work ran.
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
        let cores = lines
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        Some(Self {
            busy: total - idle,
            total,
            cores,
        })
    }

    /// How busy the machine was since `self`: "73% of 2 cores".
    pub(crate) fn busy_since(self) -> String {
        match Self::now() {
            Some(now) if now.total > self.total => format!(
                "{:.0}% of {} cores",
                100.0 * (now.busy - self.busy) as f64 / (now.total - self.total) as f64,
                now.cores
            ),
            _ => "unknown".to_owned(),
        }
    }
}
