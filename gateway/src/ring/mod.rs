//! The consistent hash ring that pins each channel to one gateway node.
//!
//! The ring is the `hashring` crate, hashed with XXH3-64. Every node builds it
//! from the same membership list and must get the same answer in every
//! process and every release. std's default hasher, SipHash, gets random keys
//! in every process, so two nodes would disagree; XXH3 is a specified hash
//! whose output never changes between processes, machines or releases. The
//! bytes fed to it are fixed here too, rather than left to std's `Hash` impls,
//! which std does not promise to keep stable. Each node owns many virtual
//! points, so load spreads evenly and a joining or leaving node moves only
//! about 1/N of the channels.

pub mod nodes;

use std::fmt;
use std::hash::{Hash, Hasher};

use hashring::HashRing;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Virtual points per node unless configured otherwise.
pub const DEFAULT_VNODES: u32 = 160;

/// An immutable ring over a set of node IDs.
#[derive(Clone)]
pub struct Ring {
    // Sorted and deduplicated; with `vnodes`, all that defines the ring.
    nodes: Vec<String>,
    vnodes: u32,
    points: HashRing<VNode, Xxh3DefaultBuilder>,
}

/// One of a node's virtual points.
#[derive(Clone)]
struct VNode {
    node: String,
    replica: u32,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The bytes `{node}#{replica}`: points sit where earlier releases put
        // them, so an upgrade moves no channel and a ring of mixed versions
        // still agrees on every owner.
        state.write(self.node.as_bytes());
        state.write(b"#");
        state.write(self.replica.to_string().as_bytes());
    }
}

/// A channel name as the ring hashes it: its bytes and nothing else.
struct Channel<'a>(&'a str);

impl Hash for Channel<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write(self.0.as_bytes());
    }
}

impl Ring {
    /// A ring over `nodes` (duplicates ignored, order irrelevant) with
    /// `vnodes` points each.
    pub fn new<I, S>(nodes: I, vnodes: u32) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        nodes.sort();
        nodes.dedup();
        let mut points = HashRing::with_hasher(Xxh3DefaultBuilder::new());
        // `batch_add` sorts stably, so points that tie stay in node order and
        // every process's ring is identical anyway.
        points.batch_add(
            nodes
                .iter()
                .flat_map(|node| {
                    (0..vnodes).map(|replica| VNode {
                        node: node.clone(),
                        replica,
                    })
                })
                .collect(),
        );
        Self {
            nodes,
            vnodes,
            points,
        }
    }

    /// The node that owns `channel`; `None` on an empty ring.
    pub fn owner(&self, channel: &str) -> Option<&str> {
        self.points
            .get(&Channel(channel))
            .map(|point| point.node.as_str())
    }

    /// The member nodes, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// True when no node is a member.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

impl Default for Ring {
    fn default() -> Self {
        Self::new(Vec::<String>::new(), DEFAULT_VNODES)
    }
}

// The members and their point count define the ring; `HashRing` itself
// compares positions only, and has neither `PartialEq` nor `Debug` with the
// XXH3 builder.
impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        self.nodes == other.nodes && self.vnodes == other.vnodes
    }
}

impl Eq for Ring {}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("nodes", &self.nodes)
            .field("vnodes", &self.vnodes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("channel-{i}")).collect()
    }

    #[test]
    fn a_third_node_moves_about_a_third_of_the_channels() {
        let before = Ring::new(["gw-0", "gw-1"], DEFAULT_VNODES);
        let after = Ring::new(["gw-0", "gw-1", "gw-2"], DEFAULT_VNODES);
        let all = channels(10_000);
        let mut moved = 0;
        for c in &all {
            let (a, b) = (before.owner(c).unwrap(), after.owner(c).unwrap());
            if a != b {
                // Channels only ever move to the new node.
                assert_eq!(b, "gw-2", "{c} moved between old nodes");
                moved += 1;
            }
        }
        let fraction = f64::from(moved) / all.len() as f64;
        // Ideal is 1/3; allow ±0.05 for the finite number of points.
        assert!(
            (fraction - 1.0 / 3.0).abs() < 0.05,
            "moved {fraction:.3} of channels"
        );
    }

    #[test]
    fn load_is_balanced() {
        let ring = Ring::new(["gw-0", "gw-1", "gw-2", "gw-3"], DEFAULT_VNODES);
        let mut counts = std::collections::BTreeMap::new();
        for c in channels(20_000) {
            *counts
                .entry(ring.owner(&c).unwrap().to_owned())
                .or_insert(0u32) += 1;
        }
        for (node, n) in counts {
            assert!((3_750..=6_250).contains(&n), "{node} owns {n} of 20000");
        }
    }

    #[test]
    fn membership_order_and_duplicates_do_not_matter() {
        let a = Ring::new(["gw-2", "gw-0", "gw-1"], 64);
        let b = Ring::new(["gw-0", "gw-1", "gw-2", "gw-0"], 64);
        assert_eq!(a, b);
        assert!(channels(1_000).iter().all(|c| a.owner(c) == b.owner(c)));
    }

    #[test]
    fn owners_are_pinned_across_processes_and_releases() {
        // Fixed expectations: a change here would re-pin every channel of a
        // running deployment, so it must be deliberate.
        let ring = Ring::new(["gw-0", "gw-1", "gw-2"], DEFAULT_VNODES);
        let got: Vec<_> = ["general", "random", "room-1", "room-2", "team:eng", "x"]
            .iter()
            .map(|c| ring.owner(c).unwrap())
            .collect();
        assert_eq!(got, PINNED);
    }

    const PINNED: [&str; 6] = ["gw-1", "gw-1", "gw-0", "gw-2", "gw-0", "gw-0"];

    fn owners_digest() -> String {
        let ring = Ring::new(["gw-a", "gw-b", "gw-c"], DEFAULT_VNODES);
        channels(1_000)
            .iter()
            .map(|c| ring.owner(c).unwrap())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Prints the owners when run as the child of the test below.
    #[test]
    fn child_prints_owners() {
        if std::env::var_os("CHATMESH_RING_CHILD").is_some() {
            // The parent test reads this line from the child process.
            #[allow(clippy::print_stdout)]
            {
                println!("OWNERS={}", owners_digest());
            }
        }
    }

    #[test]
    fn a_separate_process_builds_the_same_ring() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "ring::tests::child_prints_owners",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CHATMESH_RING_CHILD", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let theirs = stdout
            .lines()
            .find_map(|l| l.split_once("OWNERS=").map(|(_, owners)| owners))
            .expect("child printed owners");
        assert_eq!(theirs, owners_digest());
    }

    #[test]
    fn empty_and_single_node_rings() {
        assert_eq!(Ring::new(Vec::<String>::new(), 8).owner("x"), None);
        let one = Ring::new(["solo"], 8);
        assert!(channels(100).iter().all(|c| one.owner(c) == Some("solo")));
    }
}
