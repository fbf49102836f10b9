//! One Aho-Corasick pass over the normalised text, then a check of each candidate that costs
//! at most the length of the longest ending: the whole scan stays linear.
//!
//! The automaton holds every spelling of every stem (as written, with its `i`/`l` as the
//! ambiguous `1`, its `u` as `v`, with inner letters hidden by a wildcard: `f*ck`, `f*k`, and
//! after each of its compound beginnings: `dumbass`) and every allow-list phrase. A match can
//! only start where a word does, so the pass runs the automaton anchored from each word start
//! whose first two bytes begin some pattern, and skips the rest of the word: on chat text
//! most words are skipped after one table look-up. A candidate stands when
//!
//! - each of its letters repeats at least as often as in the entry (`ass` needs `ss`);
//! - it ends a word, or the rest of the word is one of the entry's endings (`fuck` + `ed`).
//!
//! Digits and symbols read as letters never join a match to its neighbour, so `fuck123` and
//! `$hit!` match while `class` and `Scunthorpe` do not.

use std::collections::BTreeMap;

use aho_corasick::automaton::Automaton as _;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, BuildError, MatchKind, StartKind};

use super::list::{Entry, LineError};
use super::normalize::{K_ALPHA, Normalized, normalize};

/// Spellings indexed per stem with `i`, `l` or `u` swapped, so a long entry stays small.
const MAX_VARIANTS: usize = 64;

/// What a pattern stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Block(u32),
    Allow,
}

/// One reading of a pattern: a target, and the repeats its letters need.
#[derive(Debug, Clone)]
struct Alt {
    /// `(offset, run)` for every letter that must repeat.
    repeats: Box<[(u16, u8)]>,
    target: Target,
}

/// A stem's endings in normalised spelling (its beginnings are patterns of their own).
#[derive(Debug, Default)]
struct Forms {
    suffixes: Vec<Vec<u8>>,
    innocent_in: u16,
}

/// A blocked match, in normalised bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hit {
    pub(super) from: usize,
    pub(super) to: usize,
    /// Languages the matched entry is innocent in.
    pub(super) innocent_in: u16,
}

/// What one pass found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) hits: Vec<Hit>,
    /// Allow-list phrases found, in normalised bytes.
    pub(super) allowed: Vec<(usize, usize)>,
}

/// The automaton and what its patterns mean.
#[derive(Debug)]
pub(super) struct Matcher {
    dfa: Result<DFA, BuildError>,
    alts: Vec<Vec<Alt>>,
    forms: Vec<Forms>,
    max_suffix: usize,
    /// Where patterns can start: see [`Starts`].
    starts: Box<Starts>,
}

/// A filter on the first bytes of the patterns, so the automaton runs only from word starts
/// that begin some pattern.
#[derive(Debug)]
struct Starts {
    /// Per first byte: 1 if a one-byte pattern is that byte, 2 if a longer pattern starts
    /// with it.
    first: [u8; 256],
    /// Two-byte patterns, one bit per pair.
    two: [u64; 1024],
    /// Longer patterns, one bit per hash of their first three bytes.
    three: [u64; 1024],
}

impl Starts {
    fn new(keys: &[Vec<u8>]) -> Box<Self> {
        let mut starts = Box::new(Self {
            first: [0; 256],
            two: [0; 1024],
            three: [0; 1024],
        });
        for key in keys {
            match key.as_slice() {
                [] => {}
                [a] => starts.first[*a as usize] |= 1,
                [a, b] => {
                    starts.first[*a as usize] |= 2;
                    set(&mut starts.two, pair(*a, *b));
                }
                [a, b, c, ..] => {
                    starts.first[*a as usize] |= 2;
                    set(&mut starts.three, triple(*a, *b, *c));
                }
            }
        }
        starts
    }

    /// True when some pattern may start with the bytes at `p`.
    #[inline]
    fn at(&self, bytes: &[u8], p: usize) -> bool {
        let Some(&a) = bytes.get(p) else {
            return false;
        };
        match self.first[a as usize] {
            0 => false,
            1 | 3 => true,
            _ => match (bytes.get(p + 1), bytes.get(p + 2)) {
                (Some(&b), Some(&c)) => {
                    get(&self.two, pair(a, b)) || get(&self.three, triple(a, b, c))
                }
                (Some(&b), None) => get(&self.two, pair(a, b)),
                _ => false,
            },
        }
    }
}

fn pair(a: u8, b: u8) -> usize {
    (a as usize) << 8 | b as usize
}

fn triple(a: u8, b: u8, c: u8) -> usize {
    let x = u32::from_le_bytes([a, b, c, 0]);
    (x.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

fn set(bits: &mut [u64; 1024], i: usize) {
    bits[i / 64] |= 1 << (i % 64);
}

fn get(bits: &[u64; 1024], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

/// A normalised word: its bytes and each byte's run.
struct Spelled {
    bytes: Vec<u8>,
    run: Vec<u8>,
}

impl Spelled {
    /// The spelling of `text` when it reads as one word.
    fn word(text: &str) -> Option<Self> {
        let n = normalize(text);
        let one_word =
            !n.bytes.is_empty() && (0..n.bytes.len()).all(|i| n.in_word(i) || n.kind[i] == K_ALPHA);
        one_word.then_some(Self {
            bytes: n.bytes,
            run: n.run,
        })
    }

    /// The spelling of `text` as a phrase, trimmed of the spaces around it.
    fn phrase(text: &str) -> Option<Self> {
        let n = normalize(text);
        let from = n.bytes.iter().position(|&b| b != b' ')?;
        let to = n.bytes.iter().rposition(|&b| b != b' ')?;
        Some(Self {
            bytes: n.bytes[from..=to].to_vec(),
            run: n.run[from..=to].to_vec(),
        })
    }

    fn repeats(&self) -> Box<[(u16, u8)]> {
        self.run
            .iter()
            .enumerate()
            .filter(|&(_, &r)| r > 1)
            .map(|(i, &r)| (i as u16, r))
            .collect()
    }

    /// The word written out, each letter as often as it repeats.
    fn expanded(&self) -> Vec<u8> {
        self.bytes
            .iter()
            .zip(&self.run)
            .flat_map(|(&b, &r)| std::iter::repeat_n(b, r as usize))
            .collect()
    }

    /// Collapses a written-out word the way text is collapsed.
    fn collapse(written: &[u8]) -> Self {
        let mut out = Self {
            bytes: Vec::with_capacity(written.len()),
            run: Vec::with_capacity(written.len()),
        };
        for &b in written {
            match (out.bytes.last(), out.run.last_mut()) {
                (Some(&last), Some(run)) if last == b && b.is_ascii() => *run += 1,
                _ => {
                    out.bytes.push(b);
                    out.run.push(1);
                }
            }
        }
        out
    }
}

/// Spellings of `word` with some of its `i`, `l` (as `1`) and `u` (as `v`) swapped.
fn swaps(word: &Spelled) -> Vec<Spelled> {
    let mut out: Vec<Vec<u8>> = vec![Vec::new()];
    for b in word.expanded() {
        let options: &[u8] = match b {
            b'i' => b"i1",
            b'l' => b"l1",
            b'u' => b"uv",
            _ => std::slice::from_ref(&b),
        };
        // `out` is never empty, and the first option is always the word's own letter.
        let options = &options[..(MAX_VARIANTS / out.len()).clamp(1, options.len())];
        out = out
            .iter()
            .flat_map(|prefix| {
                options.iter().map(move |&o| {
                    let mut next = prefix.clone();
                    next.push(o);
                    next
                })
            })
            .collect();
    }
    out.iter().map(|w| Spelled::collapse(w)).collect()
}

/// Spellings of `word` with one inner stretch hidden by a wildcard, at least two letters
/// left to read (`f*ck`, `f*k`, `fu*k`).
fn hidden(word: &Spelled) -> Vec<Spelled> {
    let n = word.bytes.len();
    let mut out = Vec::new();
    for a in 1..n.saturating_sub(1) {
        for b in a + 1..n {
            if n - (b - a) < 2 {
                continue;
            }
            let mut bytes = word.bytes[..a].to_vec();
            bytes.push(b'*');
            bytes.extend_from_slice(&word.bytes[b..]);
            let mut run = word.run[..a].to_vec();
            run.push(1);
            run.extend_from_slice(&word.run[b..]);
            out.push(Spelled { bytes, run });
        }
    }
    out
}

/// True when `text` spells `pattern`, a `1` in the text reading as `i` or `l`.
fn same(text: &[u8], pattern: &[u8]) -> bool {
    text.len() == pattern.len()
        && text
            .iter()
            .zip(pattern)
            .all(|(&t, &p)| t == p || (t == b'1' && matches!(p, b'i' | b'l')))
}

impl Matcher {
    /// Compiles a word list and allow-list phrases (`(line, phrase)`).
    pub(super) fn build(entries: &[Entry], allow: &[(usize, &str)]) -> Result<Self, LineError> {
        let mut patterns: BTreeMap<Vec<u8>, Vec<Alt>> = BTreeMap::new();
        let mut add = |s: Spelled, target: Target| {
            let alt = Alt {
                repeats: s.repeats(),
                target,
            };
            patterns.entry(s.bytes).or_default().push(alt);
        };
        let mut forms = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let mut f = Forms {
                innocent_in: entry.forms.innocent_in,
                ..Forms::default()
            };
            for spelling in &entry.spellings {
                let target = Target::Block(i as u32);
                let Some(word) = Spelled::word(spelling) else {
                    // Several words: a phrase, matched as the text spaces it.
                    let phrase = Spelled::phrase(spelling).ok_or_else(|| LineError {
                        line: entry.line,
                        reason: format!("{spelling:?} has nothing to match"),
                    })?;
                    add(phrase, target);
                    continue;
                };
                for ending in &entry.forms.suffixes {
                    let whole = normalize(&format!("{spelling}{ending}")).bytes;
                    if let Some(rest) = whole.strip_prefix(word.bytes.as_slice())
                        && !rest.is_empty()
                        && rest.iter().all(u8::is_ascii_alphanumeric)
                    {
                        f.suffixes.push(rest.to_vec());
                    }
                }
                for beginning in &entry.forms.prefixes {
                    if let Some(whole) = Spelled::word(&format!("{beginning}{spelling}")) {
                        for s in swaps(&whole) {
                            add(s, target);
                        }
                    }
                }
                for s in hidden(&word) {
                    add(s, target);
                }
                for s in swaps(&word) {
                    add(s, target);
                }
            }
            f.suffixes.sort_unstable();
            f.suffixes.dedup();
            forms.push(f);
        }
        for &(line, phrase) in allow {
            let phrase = Spelled::phrase(phrase).ok_or_else(|| LineError {
                line,
                reason: format!("{phrase:?} has nothing to match"),
            })?;
            add(phrase, Target::Allow);
        }
        let max_suffix = forms
            .iter()
            .flat_map(|f| f.suffixes.iter().map(Vec::len))
            .max()
            .unwrap_or(0);
        let (keys, alts): (Vec<Vec<u8>>, Vec<Vec<Alt>>) = patterns.into_iter().unzip();
        let starts = Starts::new(&keys);
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Anchored)
            .prefilter(false)
            .build(&keys);
        Ok(Self {
            dfa,
            alts,
            forms,
            max_suffix,
            starts,
        })
    }

    /// A matcher that finds nothing.
    pub(super) fn empty() -> Self {
        Self {
            dfa: DFA::builder()
                .start_kind(StartKind::Anchored)
                .build(Vec::<&[u8]>::new()),
            alts: Vec::new(),
            forms: Vec::new(),
            max_suffix: 0,
            starts: Starts::new(&[]),
        }
    }

    /// The error the automaton could not be built with, if any.
    pub(super) fn broken(&self) -> Option<&BuildError> {
        self.dfa.as_ref().err()
    }

    /// Number of patterns in the automaton.
    pub(super) fn patterns(&self) -> usize {
        self.alts.len()
    }

    /// Bytes of memory the automaton takes.
    pub(super) fn memory(&self) -> usize {
        self.dfa.as_ref().map_or(0, |d| d.memory_usage())
    }

    /// Finds every blocked match and allow-list phrase in `n`.
    pub(super) fn scan(&self, n: &Normalized) -> Scan {
        let mut scan = Scan::default();
        let Ok(dfa) = &self.dfa else {
            return scan;
        };
        let Ok(start) = dfa.start_state(Anchored::Yes) else {
            return scan;
        };
        let bytes = &n.bytes;
        // A match starts where a word does: the normaliser lists those places.
        for &p in &n.starts {
            let p = p as usize;
            if !self.starts.at(bytes, p) {
                continue;
            }
            let mut sid = start;
            for (i, &b) in bytes.iter().enumerate().skip(p) {
                sid = dfa.next_state(Anchored::Yes, sid, b);
                if !dfa.is_special(sid) {
                    continue;
                }
                if dfa.is_dead(sid) {
                    break;
                }
                for m in 0..dfa.match_len(sid) {
                    let pattern = dfa.match_pattern(sid, m);
                    self.candidate(n, p, i + 1, pattern.as_usize(), &mut scan);
                }
            }
        }
        scan
    }

    /// Checks a pattern's match at `s..e` and records it if it stands.
    fn candidate(&self, n: &Normalized, s: usize, e: usize, pattern: usize, scan: &mut Scan) {
        for alt in &self.alts[pattern] {
            let repeats = alt
                .repeats
                .iter()
                .all(|&(i, r)| n.run.get(s + i as usize).is_some_and(|&got| got >= r));
            if !repeats {
                continue;
            }
            match alt.target {
                Target::Allow => {
                    if !n.joins(e, true) {
                        scan.allowed.push((s, e));
                    }
                }
                Target::Block(i) => {
                    let forms = &self.forms[i as usize];
                    if let Some(to) = self.word_end(forms, n, e) {
                        scan.hits.push(Hit {
                            from: s,
                            to,
                            innocent_in: forms.innocent_in,
                        });
                    }
                }
            }
        }
    }

    /// Where the word of a match ending at `e` ends, if the match stands: right there, or
    /// after one of the entry's endings.
    fn word_end(&self, forms: &Forms, n: &Normalized, e: usize) -> Option<usize> {
        let ascii_end = n.bytes[e - 1].is_ascii();
        match self.ending(forms, n, e) {
            Some(to) => Some(to),
            None if !n.joins(e, ascii_end) => Some(e),
            None => None,
        }
    }

    /// Where the longest ending of the entry after `e` ends.
    fn ending(&self, forms: &Forms, n: &Normalized, e: usize) -> Option<usize> {
        let limit = (e + self.max_suffix).min(n.bytes.len());
        let mut best = None;
        let mut p = e;
        while p < limit && n.in_word(p) {
            p += 1;
            if !n.joins(p, true) && forms.suffixes.iter().any(|suf| same(&n.bytes[e..p], suf)) {
                best = Some(p);
            }
        }
        best
    }
}
