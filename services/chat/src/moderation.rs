//! Word-list moderation over normalised text.
//!
//! Text and list entries go through the same fold, one original char at a time, so every
//! normalised byte remembers the original char it came from:
//!
//! 1. compatibility decomposition (NFKD; this folds what NFKC folds, and composing again is
//!    pointless because step 3 drops the marks composition would absorb);
//! 2. a few upper-case homoglyphs whose lower case no longer looks Latin (Greek `Η`, `Μ`...),
//!    then lower case, with `ß` → `ss` and `ς` → `σ`;
//! 3. combining marks and invisible format chars (zero-width space/joiners, soft hyphen, BOM)
//!    are dropped, so `bàd` and `b\u{200B}ad` read as `bad`;
//! 4. Cyrillic/Greek/IPA look-alikes become Latin (`HOMOGLYPHS`);
//! 5. leetspeak (`LEET`). `1` and `|` may be `i` or `l`, so both fold to `1` and every list
//!    entry is also indexed with its `i`/`l` written as `1` (up to 64 spellings).
//!
//! A hit must be a whole word. Boundaries are judged on the reading *before* step 5: a leet
//! symbol (`$ @ ! |`) is a letter inside a hit but punctuation next to one, so `$hit`, `a$$`
//! and `bad!` are all caught while `cla$$` still passes an `ass` entry; digits are always word
//! characters, so `bad2` passes. Separators inside a word (`b.a.d`) and repeated letters
//! (`baaad`) are not collapsed: both turn innocent text into hits (`a s s`, `as` for `ass`).
//! Marks are dropped in every script, and scripts written without spaces (CJK, Thai) only
//! match at spaces or punctuation.

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use aho_corasick::{AhoCorasick, BuildError, MatchKind};
use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Upper-case look-alikes whose lower-case forms stop resembling the Latin letter.
#[rustfmt::skip]
const UPPER_HOMOGLYPHS: &[(char, char)] = &[
    ('Η', 'h'), ('Μ', 'm'), ('Ν', 'n'), ('Υ', 'y'), ('Ζ', 'z'),
];

/// Lower-case Cyrillic, Greek and IPA letters that pass for Latin ones.
#[rustfmt::skip]
const HOMOGLYPHS: &[(char, char)] = &[
    ('а', 'a'), ('в', 'b'), ('ԁ', 'd'), ('е', 'e'), ('һ', 'h'), ('н', 'h'), ('і', 'i'),
    ('ј', 'j'), ('к', 'k'), ('ӏ', 'l'), ('м', 'm'), ('о', 'o'), ('р', 'p'), ('ԛ', 'q'),
    ('ѕ', 's'), ('с', 'c'), ('т', 't'), ('ѵ', 'v'), ('ԝ', 'w'), ('х', 'x'), ('у', 'y'),
    ('α', 'a'), ('β', 'b'), ('ε', 'e'), ('η', 'n'), ('ι', 'i'), ('κ', 'k'), ('μ', 'u'), ('ν', 'v'),
    ('ο', 'o'), ('ρ', 'p'), ('τ', 't'), ('υ', 'u'), ('χ', 'x'), ('γ', 'y'), ('ω', 'w'),
    ('ı', 'i'), ('ȷ', 'j'), ('ɑ', 'a'), ('ɡ', 'g'), ('ɩ', 'i'), ('ʏ', 'y'),
];

/// Leetspeak. `|` joins `1` as the ambiguous i/l stroke; other digits read as one letter.
#[rustfmt::skip]
const LEET: &[(char, char)] = &[
    ('0', 'o'), ('3', 'e'), ('4', 'a'), ('5', 's'), ('7', 't'), ('8', 'b'), ('9', 'g'),
    ('@', 'a'), ('$', 's'), ('!', 'i'), ('€', 'e'), ('|', '1'),
];

/// Format chars that render as nothing, so they can hide inside a word.
const INVISIBLE: &[char] = &[
    '\u{AD}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}',
];

/// Caps the i/l/1 spellings indexed per entry, so a long entry cannot blow up the automaton.
const MAX_VARIANTS: usize = 64;

/// A word-list filter, built once and shared (it is `Send + Sync`); matching is linear in the
/// length of the text for a given list.
pub struct Filter {
    /// An error when the automaton could not be built: the filter then blocks every
    /// non-blank text rather than letting everything through unnoticed.
    matcher: Result<AhoCorasick, BuildError>,
    words: usize,
}

/// Why a [`Filter`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The word list file could not be read (missing, unreadable or not UTF-8).
    #[error("cannot read moderation word list {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The list is too large for the matching automaton.
    #[error("cannot build moderation filter: {0}")]
    Build(#[from] BuildError),
}

/// Where one normalised byte came from in the original text.
#[derive(Clone, Copy)]
struct Origin {
    /// Byte range of the original char (plus any dropped marks that follow it).
    start: usize,
    end: usize,
    /// Whether the char is a letter or digit before leet folding, for boundary checks.
    word: bool,
}

struct Normalized {
    text: String,
    origin: Vec<Origin>,
}

fn lookup(table: &[(char, char)], c: char) -> Option<char> {
    table.iter().find(|pair| pair.0 == c).map(|pair| pair.1)
}

/// Feeds the normalised form of `c` to `emit` as `(char, is_word_char)`.
fn fold_char(c: char, emit: &mut impl FnMut(char, bool)) {
    decompose_compatible(c, |d| match lookup(UPPER_HOMOGLYPHS, d) {
        Some(latin) => finish(latin, emit),
        // No char that NFKD leaves alone lower-cases to one NFKD would change, so no second
        // decomposition pass is needed.
        None => d.to_lowercase().for_each(|l| finish(l, emit)),
    });
}

fn finish(c: char, emit: &mut impl FnMut(char, bool)) {
    match c {
        _ if is_combining_mark(c) || INVISIBLE.contains(&c) => {}
        'ß' => {
            emit('s', true);
            emit('s', true);
        }
        'ς' => emit('σ', true),
        _ => {
            let c = lookup(HOMOGLYPHS, c).unwrap_or(c);
            emit(lookup(LEET, c).unwrap_or(c), c.is_alphanumeric());
        }
    }
}

fn normalize(text: &str) -> Normalized {
    let mut norm = String::with_capacity(text.len());
    let mut origin: Vec<Origin> = Vec::with_capacity(text.len());
    // Index in `origin` of the first byte of the last original char that produced output.
    let mut last = 0;
    for (start, c) in text.char_indices() {
        let end = start + c.len_utf8();
        let before = origin.len();
        fold_char(c, &mut |f, word| {
            norm.push(f);
            let o = Origin { start, end, word };
            origin.extend(std::iter::repeat_n(o, f.len_utf8()));
        });
        if origin.len() > before {
            last = before;
        } else {
            // A dropped mark belongs to the char before it: masking that char must take the
            // mark too, or it would float over the '*'.
            origin[last..].iter_mut().for_each(|o| o.end = end);
        }
    }
    Normalized { text: norm, origin }
}

/// Every spelling of `word` with some of its `i`/`l` written as the ambiguous `1` (and a `1`
/// in the entry read as `i` or `l`), at most [`MAX_VARIANTS`] of them.
fn variants(word: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    for c in word.chars() {
        let options: &[char] = match c {
            'i' => &['i', '1'],
            'l' => &['l', '1'],
            '1' => &['1', 'i', 'l'],
            _ => &[c],
        };
        // `out` is never empty, and the first option is always the entry's own spelling.
        let options = &options[..(MAX_VARIANTS / out.len()).clamp(1, options.len())];
        out = out
            .iter()
            .flat_map(|prefix| options.iter().map(move |&o| format!("{prefix}{o}")))
            .collect();
    }
    out
}

impl Filter {
    /// Builds a filter from list entries; each is normalised like message text, and empty
    /// entries and duplicates are ignored. If the automaton cannot be built (only for lists
    /// far beyond memory limits) the filter fails closed and blocks every non-blank text; use
    /// [`Filter::try_new`] to get the error instead.
    pub fn new<I, S>(words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let words: BTreeSet<String> = words
            .into_iter()
            .map(|w| normalize(w.as_ref()).text.trim().to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        let patterns: BTreeSet<String> = words.iter().flat_map(|w| variants(w)).collect();
        // Standard semantics so every overlapping hit is seen: the leftmost-longest one may
        // fail the boundary check while a shorter or later one passes.
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&patterns);
        let words = words.len();
        Self { matcher, words }
    }

    /// Like [`Filter::new`], but reports an automaton that cannot be built.
    pub fn try_new<I, S>(words: I) -> Result<Self, FilterError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let filter = Self::new(words);
        match &filter.matcher {
            Err(e) => Err(e.clone().into()),
            Ok(_) => Ok(filter),
        }
    }

    /// Reads one word per line; `#` starts a comment and blank lines are ignored. Errors name
    /// the file.
    pub fn from_file(path: &Path) -> Result<Self, FilterError> {
        let list = std::fs::read_to_string(path).map_err(|source| FilterError::Read {
            path: path.to_owned(),
            source,
        })?;
        let words = list
            .lines()
            .map(|line| line.split('#').next().unwrap_or_default());
        Self::try_new(words)
    }

    /// Number of distinct normalised words.
    pub fn len(&self) -> usize {
        self.words
    }

    /// True if the list held no usable word.
    pub fn is_empty(&self) -> bool {
        self.words == 0
    }

    /// Byte ranges in the original text of every blocked word found, in order and
    /// non-overlapping (overlapping hits are merged); each starts and ends on a char boundary.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        let Ok(matcher) = &self.matcher else {
            let blocked = !text.trim().is_empty();
            return blocked.then_some(0..text.len()).into_iter().collect();
        };
        let norm = normalize(text);
        let word_at = |i: Option<usize>| i.and_then(|i| norm.origin.get(i)).is_some_and(|o| o.word);
        let mut hits: Vec<Range<usize>> = matcher
            .find_overlapping_iter(&norm.text)
            .filter(|m| !word_at(m.start().checked_sub(1)) && !word_at(Some(m.end())))
            .filter_map(|m| {
                let first = norm.origin.get(m.start())?;
                let last = norm.origin.get(m.end().checked_sub(1)?)?;
                Some(first.start..last.end)
            })
            .collect();
        hits.sort_unstable_by_key(|r| r.start);
        // Overlapping hits (nested entries, phrases sharing a word, two hits in one expanded
        // char) are merged so that masking never leaves part of a blocked word visible.
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(hits.len());
        for hit in hits {
            match merged.last_mut() {
                Some(last) if hit.start < last.end => last.end = last.end.max(hit.end),
                _ => merged.push(hit),
            }
        }
        merged
    }

    /// True if the text holds no blocked word.
    pub fn is_clean(&self, text: &str) -> bool {
        self.find(text).is_empty()
    }

    /// The text with every char of each blocked word replaced by `*` (so its length in chars
    /// is unchanged and everything else is byte-identical); `None` when the text is clean.
    pub fn mask(&self, text: &str) -> Option<String> {
        let hits = self.find(text);
        if hits.is_empty() {
            return None;
        }
        let mut hits = hits.iter().peekable();
        let mut out = String::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            while hits.next_if(|r| r.end <= i).is_some() {}
            let masked = hits.peek().is_some_and(|r| r.start <= i);
            out.push(if masked { '*' } else { c });
        }
        Some(out)
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Filter {{ words: {} }}", self.words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: &[&str] = &[
        "ass", "Bad", "shit", "cock", "cunt", "hell", "rapist", "rot", "kill",
    ];

    /// (text, expected mask): one `*` per original char, whatever its byte length.
    #[rustfmt::skip]
    const BLOCKED: &[(&str, &str)] = &[
        ("bad", "***"), ("BAD", "***"), ("bAd", "***"), ("ｂａｄ", "***"), ("ＢＡＤ!", "***!"),
        ("bàd", "***"), ("BÀD", "***"), ("ba\u{300}d", "****"), ("bad\u{301} x", "**** x"),
        ("b\u{200B}ad", "****"), ("b4d", "***"), ("8@d", "***"), ("$hit", "****"),
        ("sh!t", "****"), ("5h17", "****"), ("sh|t", "****"), ("a$$", "***"), ("k1ll", "****"),
        ("ki11", "****"), ("k!|1", "****"), ("h3ll", "****"), ("aß", "**"), ("Aẞ", "**"),
        // Cyrillic а; Cyrillic ѕ і; Cyrillic с о с; Greek ε; Greek capitals Η Ε.
        ("bаd", "***"), ("ѕhіt", "****"), ("сосk", "****"), ("hεll", "****"), ("ΗΕLL", "****"),
        ("\"bad!\"", "\"***!\""), ("(bad)", "(***)"), ("bad start", "*** start"),
        ("at the end: bad", "at the end: ***"), ("bad, BAD and b4d", "***, *** and ***"),
        ("bad_ass", "***_***"), ("the rapist", "the ******"), ("💩bad💩", "💩***💩"),
        ("Hey ｂａｄ 👋 café", "Hey *** 👋 café"), ("שלום bad مرحبا", "שלום *** مرحبا"),
    ];

    #[rustfmt::skip]
    const CLEAN: &[&str] = &[
        "", " \n\t ", "😀🎉👨‍👩‍👧", "\u{0}", "Scunthorpe", "class", "cla$$", "assassin", "grass",
        "Maß", "cocktail", "hancock", "therapist", "shitake", "hello", "shell", "badger", "bad2",
        "4bad", "skill", "b a d", "b.a.d",
        // Each would only be bad under a wrong fold: 6 is not b, Cyrillic р is p, ß is ss.
        "6ad", "рот", "ßad",
    ];

    #[rustfmt::skip]
    const POOL: &[&str] = &[
        "bad", "$hit", "a", "s", " ", ".", "\u{0}", "\u{300}", "\u{20DD}", "ß", "ẞ", "ﬁ", "ﷺ", "😀",
        "👨‍👩‍👧", "🇫🇷", "שלום", "مرحبا", "\u{202E}", "\u{200B}", "ｂ", "İ", "ǅ", "Ω", "1", "|", "!",
        "é", "\u{FEFF}", "\u{10FFFF}", "각", "ᄀ",
    ];

    fn filter() -> Filter {
        Filter::new(WORDS)
    }

    /// Checks the invariants every result must hold, whatever the input.
    fn check(f: &Filter, text: &str) {
        let hits = f.find(text);
        assert!(
            hits.windows(2).all(|p| p[0].end <= p[1].start),
            "{text:?}: {hits:?}"
        );
        for r in &hits {
            let sliceable = r.start < r.end && text.get(r.clone()).is_some();
            assert!(sliceable, "{text:?}: {r:?}");
        }
        assert_eq!(f.is_clean(text), hits.is_empty());
        match f.mask(text) {
            None => assert!(hits.is_empty()),
            Some(masked) => {
                assert_eq!(masked.chars().count(), text.chars().count(), "{text:?}");
                let mut rest = hits.iter().peekable();
                for ((i, c), m) in text.char_indices().zip(masked.chars()) {
                    while rest.next_if(|r| r.end <= i).is_some() {}
                    let inside = rest.peek().is_some_and(|r| r.contains(&i));
                    assert_eq!(m, if inside { '*' } else { c }, "{text:?} at {i}");
                }
            }
        }
    }

    #[test]
    fn blocks_evasions() {
        let f = filter();
        for &(text, want) in BLOCKED {
            assert_eq!(f.mask(text).as_deref(), Some(want), "{text:?}");
            check(&f, text);
        }
    }

    #[test]
    fn passes_innocent_text() {
        let f = filter();
        for &text in CLEAN {
            assert!(f.is_clean(text), "{text:?} -> {:?}", f.find(text));
            assert_eq!(f.mask(text), None, "{text:?}");
        }
    }

    #[test]
    fn find_ranges_slice_back_to_original() {
        let f = filter();
        let cases: [(&str, &[&str]); 5] = [
            ("say ｂａｄ now", &["ｂａｄ"]),
            ("$hit and a$$!", &["$hit", "a$$"]),
            ("«ѕhіt»", &["ѕhіt"]),
            ("x ba\u{300}d\u{301} y", &["ba\u{300}d\u{301}"]),
            ("ﬁne aß", &["aß"]),
        ];
        for (text, want) in cases {
            let got: Vec<&str> = f.find(text).into_iter().map(|r| &text[r]).collect();
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn merges_nested_and_overlapping_hits() {
        let f = Filter::new(["hit", "shit", "bad word"]);
        assert_eq!(f.find("$hit").first(), Some(&(0..4)));
        assert_eq!(f.mask("a bad word!").as_deref(), Some("a ********!"));
        assert!(f.is_clean("a bad wordsmith"));
        let f = Filter::new(["bad word", "word up"]);
        assert_eq!(f.mask("a bad word up!").as_deref(), Some("a ***********!"));
    }

    #[test]
    fn counts_distinct_normalised_words() {
        assert!(Filter::new(Vec::<String>::new()).is_empty());
        let f = Filter::new(["", "  ", "Bad", "bad", "ＢＡＤ", "b4d", "ass"]);
        assert_eq!((f.len(), f.is_empty()), (2, false));
        assert_eq!(format!("{f:?}"), "Filter { words: 2 }");
        assert!(Filter::new([""]).is_clean("anything"));
    }

    #[test]
    fn indexes_i_l_spellings_up_to_the_cap() {
        let all = variants("illicit1ll");
        assert_eq!((all.len(), all[0].as_str()), (MAX_VARIANTS, "illicit1ll"));
        assert!(all.contains(&"1ll1c1till".to_owned()));
        // The entry's own `1` reads as `i` or `l` too.
        let f = Filter::new(["il1"]);
        assert!(!f.is_clean("ili") && !f.is_clean("1|l") && f.is_clean("lil"));
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Filter>();
    }

    #[test]
    fn never_panics_on_generated_text() {
        let f = filter();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next() % 24 {
                if next() % 4 == 0 {
                    text.extend(char::from_u32((next() % 0x11_0000) as u32));
                } else {
                    text.push_str(POOL[next() % POOL.len()]);
                }
            }
            check(&f, &text);
        }
        check(&f, &"ｂａｄ \u{301}".repeat(50_000));
        check(&f, &"\u{301}".repeat(100_000));
    }

    #[test]
    fn reads_word_lists_from_files() {
        let path = std::env::temp_dir().join(format!("moderation-{}.txt", std::process::id()));
        let list = "# dev list\n\nBad\n  ass  # trailing comment\nbad\nｂａｄ\n   \n";
        std::fs::write(&path, list).expect("write temp list");
        let f = Filter::from_file(&path);
        std::fs::remove_file(&path).expect("remove temp list");
        let f = f.expect("list loads");
        assert_eq!(f.len(), 2);
        assert!(!f.is_clean("you ASS") && f.is_clean("dev list comment"));

        let missing = Path::new("/nonexistent/moderation-words.txt");
        let err = Filter::from_file(missing).expect_err("missing file");
        let msg = err.to_string();
        assert!(matches!(err, FilterError::Read { .. }), "{err:?}");
        assert!(msg.contains("/nonexistent/moderation-words.txt"), "{msg}");
    }

    #[test]
    fn shipped_word_list_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/moderation-words.txt");
        let f = Filter::from_file(Path::new(path)).expect("shipped list loads");
        assert!(!f.is_empty() && !f.is_clean("sh1t happens"));
    }
}
