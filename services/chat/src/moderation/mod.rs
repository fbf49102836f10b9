//! Word-list moderation over a normalised reading of the text.
//!
//! A message is read the way a person reads it (`normalize`): invisible chars dropped,
//! look-alike and styled letters folded to Latin, leetspeak and spelled-out letters read as
//! words, repeats collapsed, right-to-left overrides undone. One Aho-Corasick pass finds the
//! word list's stems in that reading and the forms they take (`list` has the format); every
//! normalised byte remembers where it came from, so masking replaces exactly the original
//! chars of each hit. Phrases on the allow list (names, places) win over the hits inside them,
//! and so do entries innocent in the language the message is written in.
//!
//! `docs/moderation.md` explains the choices, and what a corpus of evasions and innocent
//! phrases says about them.

mod fold;
mod language;
mod list;
mod matcher;
mod normalize;
mod reload;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use aho_corasick::BuildError;
use chatmesh_ids::{ChannelId, ChatMessage};

pub use list::LineError;
pub use reload::{ListFiles, Reload, Reloader, SharedFilter};

use crate::Moderation;
use crate::ports::MemberDirectory;
use matcher::{Hit, Matcher};
use normalize::Normalized;

/// A word-list filter, built once and shared (it is `Send + Sync`); a scan is linear in the
/// length of the text.
pub struct Filter {
    matcher: Matcher,
    words: usize,
}

/// Why a [`Filter`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A list file could not be read (missing, unreadable or not UTF-8).
    #[error("cannot read moderation list {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of a list is malformed.
    #[error("moderation list {}: {error}", path.display())]
    Line {
        /// The list, or `-` for one given as text.
        path: PathBuf,
        /// The line and what is wrong with it.
        error: LineError,
    },
    /// The lists are too large for the matching automaton.
    #[error("cannot build moderation filter: {0}")]
    Build(#[from] BuildError),
}

/// Phrases a channel allows on top of the service-wide allow list.
#[derive(Debug)]
pub struct AllowList {
    matcher: Matcher,
}

impl AllowList {
    /// Compiles `phrases`; a phrase with nothing to match (only punctuation) is skipped.
    pub fn new<S: AsRef<str>>(phrases: &[S]) -> Self {
        let phrases: Vec<(usize, &str)> = phrases
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| normalize::normalize(p).bytes.iter().any(|&b| b != b' '))
            .enumerate()
            .collect();
        // Only a phrase with nothing to match fails to build, and those were left out.
        let matcher = Matcher::build(&[], &phrases).unwrap_or_else(|_| Matcher::empty());
        Self { matcher }
    }
}

/// A text normalised for [`Filter::scan_prepared`]: the matcher's input, for benchmarks.
#[derive(Debug, Clone)]
pub struct Prepared(Normalized);

impl Prepared {
    /// Length of the normalised text in bytes.
    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    /// True for a text that normalised to nothing.
    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
    }
}

impl Filter {
    /// A filter blocking each of `words` as a whole word (no forms, no allow list); a word
    /// with nothing to match is ignored. If the automaton cannot be built (only for lists far
    /// beyond memory limits) the filter fails closed and blocks every non-blank text.
    pub fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let entries: Vec<list::Entry> = words
            .into_iter()
            .map(|w| w.as_ref().trim().to_owned())
            .filter(|w| normalize::normalize(w).bytes.iter().any(|&b| b != b' '))
            .map(|w| list::Entry {
                spellings: vec![w],
                forms: list::Forms::default(),
                line: 0,
            })
            .collect();
        // Only a word with nothing to match fails to build, and those were left out.
        let matcher = Matcher::build(&entries, &[]).unwrap_or_else(|_| Matcher::empty());
        Self {
            matcher,
            words: entries.len(),
        }
    }

    /// Builds a filter from a word list and an allow list in their file formats; errors name
    /// the line.
    pub fn parse(words: &str, allow: &str) -> Result<Self, FilterError> {
        Self::parse_named(words, Path::new("-"), allow, Path::new("-"))
    }

    fn parse_named(
        words: &str,
        words_path: &Path,
        allow: &str,
        allow_path: &Path,
    ) -> Result<Self, FilterError> {
        let line = |path: &Path| {
            let path = path.to_owned();
            move |error| FilterError::Line { path, error }
        };
        let entries = list::parse_words(words).map_err(line(words_path))?;
        let phrases = list::parse_allow(allow);
        // An allow-list line fails alone only for want of anything to match; check it first
        // so the error names the right file.
        Matcher::build(&[], &phrases).map_err(line(allow_path))?;
        let matcher = Matcher::build(&entries, &phrases).map_err(line(words_path))?;
        if let Some(e) = matcher.broken() {
            return Err(e.clone().into());
        }
        Ok(Self {
            matcher,
            words: entries.len(),
        })
    }

    /// Reads the word list and, if given, the allow list. Errors name the file and line.
    pub fn from_files(words: &Path, allow: Option<&Path>) -> Result<Self, FilterError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| FilterError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let word_text = read(words)?;
        let allow_text = allow.map(read).transpose()?.unwrap_or_default();
        Self::parse_named(
            &word_text,
            words,
            &allow_text,
            allow.unwrap_or(Path::new("-")),
        )
    }

    /// Number of stems (entries) on the word list.
    pub fn len(&self) -> usize {
        self.words
    }

    /// True if the list held no usable word.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Byte ranges in the original text of every blocked word found, in order and
    /// non-overlapping; each starts and ends on a char boundary.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        self.find_with(text, None)
    }

    /// Like [`Filter::find`], with a channel's own allowed phrases on top of the list's.
    pub fn find_allowing(&self, text: &str, channel: &AllowList) -> Vec<Range<usize>> {
        self.find_with(text, Some(channel))
    }

    fn find_with(&self, text: &str, channel: Option<&AllowList>) -> Vec<Range<usize>> {
        if self.matcher.broken().is_some() {
            let blocked = !text.trim().is_empty();
            return blocked.then_some(0..text.len()).into_iter().collect();
        }
        let norm = normalize::normalize(text);
        let mut scan = self.matcher.scan(&norm);
        if scan.hits.is_empty() {
            return Vec::new();
        }
        if let Some(channel) = channel {
            scan.allowed.extend(channel.matcher.scan(&norm).allowed);
        }
        let mut hits = without_allowed(scan.hits, scan.allowed);
        if hits.iter().any(|h| h.innocent_in != 0) {
            let langs = language::guess(text);
            hits.retain(|h| h.innocent_in & langs == 0);
        }
        let mut ranges: Vec<Range<usize>> = hits
            .iter()
            .filter_map(|h| norm.original(h.from, h.to))
            .map(|(start, end)| start..end)
            .collect();
        ranges.sort_unstable_by_key(|r| r.start);
        // Overlapping hits (nested entries, a stem and its compound, two hits in one expanded
        // char) are merged so masking never leaves part of a blocked word visible.
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start < last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// True if the text holds no blocked word.
    pub fn is_clean(&self, text: &str) -> bool {
        self.find(text).is_empty()
    }

    /// The text with each blocked word masked (see [`mask`]); `None` when the text is clean.
    pub fn mask(&self, text: &str) -> Option<String> {
        let hits = self.find(text);
        (!hits.is_empty()).then(|| mask(text, &hits))
    }

    /// Normalises `text` for [`Filter::scan_prepared`].
    pub fn prepare(&self, text: &str) -> Prepared {
        Prepared(normalize::normalize(text))
    }

    /// The matcher alone over a prepared text: the number of candidate hits that stand, before
    /// allow lists and languages.
    pub fn scan_prepared(&self, text: &Prepared) -> usize {
        self.matcher.scan(&text.0).hits.len()
    }
}

/// Drops the hits that lie inside an allowed phrase.
fn without_allowed(mut hits: Vec<Hit>, mut allowed: Vec<(usize, usize)>) -> Vec<Hit> {
    if allowed.is_empty() {
        return hits;
    }
    hits.sort_unstable_by_key(|h| h.from);
    allowed.sort_unstable();
    let mut next = 0;
    let mut reach = 0;
    hits.retain(|h| {
        while next < allowed.len() && allowed[next].0 <= h.from {
            reach = reach.max(allowed[next].1);
            next += 1;
        }
        reach < h.to
    });
    hits
}

/// `text` with every grapheme of each range replaced by one `*`: a char and the marks on it
/// become one `*`, and invisible chars inside a range are dropped. Everything outside the
/// ranges is byte-identical.
pub fn mask(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = ranges.iter().peekable();
    let mut masked_last = false;
    for (i, c) in text.char_indices() {
        while rest.next_if(|r| r.end <= i).is_some() {}
        let inside = rest.peek().is_some_and(|r| r.start <= i);
        if !inside {
            out.push(c);
            masked_last = false;
            continue;
        }
        match fold::fold(c) {
            fold::Folded::Mark if masked_last => {}
            fold::Folded::Invisible => {}
            _ => {
                out.push('*');
                masked_last = true;
            }
        }
    }
    out
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Filter {{ words: {}, patterns: {}, automaton_bytes: {} }}",
            self.words,
            self.matcher.patterns(),
            self.matcher.memory(),
        )
    }
}

/// What the send path does with a message under its channel's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing blocked: deliver as sent.
    Clean,
    /// Refuse the message.
    Reject,
    /// Deliver this masked body instead.
    Mask(String),
    /// Deliver as sent, and record this many hits for review.
    Flag(usize),
}

/// Judges `body` sent to `channel` under `policy`. The channel's own allowed phrases are
/// fetched only for a body with hits, so clean messages cost no query.
pub async fn judge(
    filter: &SharedFilter,
    directory: &dyn MemberDirectory,
    channel: &ChannelId,
    policy: Moderation,
    body: &str,
) -> Result<Verdict, crate::ChatError> {
    let filter = filter.load();
    let mut hits = filter.find(body);
    if hits.is_empty() {
        return Ok(Verdict::Clean);
    }
    let phrases = directory.moderation_allow(channel).await?;
    if !phrases.is_empty() {
        hits = filter.find_allowing(body, &AllowList::new(&phrases));
        if hits.is_empty() {
            return Ok(Verdict::Clean);
        }
    }
    let label = match policy {
        Moderation::Reject => "reject",
        Moderation::Mask => "mask",
        Moderation::Flag => "flag",
    };
    metrics::counter!("chatmesh_moderation_hits_total", "policy" => label).increment(1);
    Ok(match policy {
        Moderation::Reject => Verdict::Reject,
        Moderation::Mask => Verdict::Mask(mask(body, &hits)),
        Moderation::Flag => Verdict::Flag(hits.len()),
    })
}

/// Records a delivered message the filter flagged: a counter and a log line naming the
/// channel and message, never the text.
pub fn record_flagged(message: &ChatMessage, hits: usize) {
    metrics::counter!("chatmesh_moderation_flagged_total").increment(1);
    tracing::info!(
        channel = message.channel.as_str(),
        message_id = %message.id,
        hits,
        "message flagged for review"
    );
}
