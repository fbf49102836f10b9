//! The normalised reading of a text, the one both the word list and messages are matched in.
//!
//! Each char is folded on its own (`fold`), then words are read as a whole:
//!
//! - **letters spelled out**: three or more one-letter words with at most three separator
//!   chars between them are joined (`f u c k`, `f.u.c.k`, `f*u*c*k`);
//! - **leetspeak**: digits read as letters only in a word that also has letters and is not
//!   a product code (`sh1t`, `a55hole`, but not `455`, `555-0199` or `A55`); symbols read as
//!   letters inside a word (`sh!t`), and `$` and `@` at its edges too (`$hit`, `a$$`);
//! - **hidden letters**: `*` and `#` inside a word, and a `-`, `.` or `_` between a lone
//!   letter and a longer word, become a wildcard (`f*ck`, `sh-t`, `a-hole`);
//! - **repeats**: a run of one letter is written once and its length remembered, so `fuuuck`
//!   reads as `fuck` while `as` still differs from `ass` (a run of two);
//! - separators (whitespace, punctuation, emoji) read as one space.
//!
//! Every byte of the result remembers the original byte range it came from, so a match maps
//! back to exactly the chars that make it up.

use decancer::Translation;

use super::fold::{self, Folded, Script, digit_letter};

/// A separator, digit, or letter of a script written without spaces: always a word boundary.
pub(super) const K_OTHER: u8 = 0;
/// A Latin letter as written.
pub(super) const K_LETTER: u8 = 1;
/// A letter read from a digit, symbol or wildcard: part of a word, but never the letter
/// that joins a match to its neighbour (so `fuck123` and `$hit` match).
pub(super) const K_FOLD: u8 = 2;
/// A letter of another spaced script (Arabic, Hebrew...).
pub(super) const K_ALPHA: u8 = 3;

/// Separator chars between spelled-out letters.
const MAX_SPELLED_GAP: usize = 3;
/// Spelled-out letters needed before they are joined.
const MIN_SPELLED: usize = 3;

/// A text in its normalised reading.
#[derive(Debug, Default, Clone)]
pub(super) struct Normalized {
    /// The reading, mostly lower-case ASCII.
    pub(super) bytes: Vec<u8>,
    /// One of the `K_*` kinds, per byte.
    pub(super) kind: Vec<u8>,
    /// How many times the byte's letter was repeated in the original (at most 255).
    pub(super) run: Vec<u8>,
    /// The original byte range each byte came from.
    pub(super) span: Vec<(u32, u32)>,
    /// Where a match may start: the first byte of each char that does not continue a word,
    /// spaces left out.
    pub(super) starts: Vec<u32>,
}

/// A folded letter's spelling: one char, or a longer one kept aside (`æ` → `ae`).
#[derive(Debug, Clone, Copy)]
enum Text {
    One(char),
    Many(u32),
}

#[derive(Debug)]
enum Role {
    Letter {
        text: Text,
        latin: bool,
        lower: bool,
        capital_i: bool,
    },
    /// A capital `I` inside a lower-case word: the ambiguous i/l stroke.
    Stroke,
    Digit(u8),
    Leet {
        letter: u8,
        edge: bool,
    },
    Wildcard,
    /// A letter read from a digit, symbol or wildcard.
    Fold(u8),
    /// A digit that stays a digit.
    Number(u8),
    /// A separator; the ASCII char when it is one (for `sh-t`).
    Sep(u8),
    Unspaced(char),
    Drop,
}

#[derive(Debug)]
struct Unit {
    start: u32,
    end: u32,
    role: Role,
}

impl Unit {
    /// Part of a Latin word before the word is read as a whole.
    fn is_word(&self) -> bool {
        matches!(
            self.role,
            Role::Letter { latin: true, .. } | Role::Digit(_) | Role::Leet { .. } | Role::Wildcard
        )
    }

    fn is_letter(&self) -> bool {
        matches!(self.role, Role::Letter { .. } | Role::Stroke)
    }
}

/// A word: a range of units, some of which may have been dropped.
#[derive(Debug, Clone, Copy)]
struct Word {
    from: usize,
    to: usize,
}

/// Reads `text` as the matcher sees it.
pub(super) fn normalize(text: &str) -> Normalized {
    let (mut units, spellings) = units(text);
    let found = words(&units);
    let words = join_spelled(&mut units, found);
    for w in &words {
        read_word(&mut units[w.from..w.to]);
    }
    hidden_letters(&mut units, &words);
    emit(&units, &spellings, text.len())
}

fn units(text: &str) -> (Vec<Unit>, Vec<Translation>) {
    let mut units: Vec<Unit> = Vec::with_capacity(text.len());
    let mut spellings: Vec<Translation> = Vec::new();
    let mut push = |units: &mut Vec<Unit>, c: char, start: usize, end: usize| {
        let role = match fold::fold(c) {
            Folded::Invisible => return,
            Folded::Mark => {
                // A mark belongs to the char before it: masking that char takes it too.
                if let Some(last) = units.last_mut() {
                    last.end = last.end.max(end as u32);
                }
                return;
            }
            Folded::Separator => Role::Sep(if c.is_ascii() { c as u8 } else { b' ' }),
            Folded::Letter {
                text,
                script,
                lower,
                capital_i,
            } => Role::Letter {
                text: match text {
                    Translation::Character(c) => Text::One(c),
                    other => {
                        spellings.push(other);
                        Text::Many(spellings.len() as u32 - 1)
                    }
                },
                latin: script == Script::Latin,
                lower,
                capital_i,
            },
            Folded::Digit(d) => Role::Digit(d),
            Folded::Leet { letter, edge } => Role::Leet { letter, edge },
            Folded::Wildcard => Role::Wildcard,
            Folded::Unspaced(c) => Role::Unspaced(c),
        };
        units.push(Unit {
            start: start as u32,
            end: end as u32,
            role,
        });
    };
    if text.contains('\u{202E}') {
        for (c, start, end) in fold::visual_order(text) {
            push(&mut units, c, start, end);
        }
    } else {
        for (start, c) in text.char_indices() {
            push(&mut units, c, start, start + c.len_utf8());
        }
    }
    (units, spellings)
}

fn words(units: &[Unit]) -> Vec<Word> {
    let mut words = Vec::new();
    let mut i = 0;
    while i < units.len() {
        if !units[i].is_word() {
            i += 1;
            continue;
        }
        let from = i;
        while i < units.len() && units[i].is_word() {
            i += 1;
        }
        words.push(Word { from, to: i });
    }
    words
}

/// Joins runs of one-letter words (`f u c k`) into one word; see the module comment.
fn join_spelled(units: &mut [Unit], words: Vec<Word>) -> Vec<Word> {
    // A `*` between single letters spells them out too (`f*u*c*k`): split such words first.
    let mut split = Vec::with_capacity(words.len());
    for w in words {
        let part = &units[w.from..w.to];
        let stars = part
            .iter()
            .filter(|u| matches!(u.role, Role::Wildcard))
            .count();
        let alternating = stars >= 2
            && part.len() == 2 * stars + 1
            && part
                .iter()
                .enumerate()
                .all(|(i, u)| (i % 2 == 1) == matches!(u.role, Role::Wildcard));
        if alternating {
            for i in (w.from..w.to).step_by(2) {
                if i + 1 < w.to {
                    units[i + 1].role = Role::Sep(b'*');
                }
                split.push(Word { from: i, to: i + 1 });
            }
        } else {
            split.push(w);
        }
    }
    let joinable = |units: &[Unit], a: Word, b: Word| {
        let gap = &units[a.to..b.from];
        a.to - a.from == 1
            && b.to - b.from == 1
            && gap.len() <= MAX_SPELLED_GAP
            && gap.iter().all(|u| matches!(u.role, Role::Sep(_)))
    };
    let mut out = Vec::with_capacity(split.len());
    let mut i = 0;
    while i < split.len() {
        let mut j = i;
        while j + 1 < split.len() && joinable(units, split[j], split[j + 1]) {
            j += 1;
        }
        let letters = split[i..=j]
            .iter()
            .filter(|w| units[w.from].is_letter())
            .count();
        if j + 1 - i >= MIN_SPELLED && letters >= 2 {
            for pair in split[i..=j].windows(2) {
                for u in &mut units[pair[0].to..pair[1].from] {
                    u.role = Role::Drop;
                }
            }
            out.push(Word {
                from: split[i].from,
                to: split[j].to,
            });
        } else {
            out.extend_from_slice(&split[i..=j]);
        }
        i = j + 1;
    }
    out
}

/// Decides, for one word, which digits and symbols read as letters.
fn read_word(word: &mut [Unit]) {
    // Symbols that cannot start or end a word are punctuation there (`wow!`, `(so)`).
    let edge_ok = |u: &Unit| match u.role {
        Role::Leet { edge, .. } => edge,
        Role::Wildcard => false,
        _ => true,
    };
    let mut from = 0;
    let mut to = word.len();
    while from < to && (!edge_ok(&word[from]) || matches!(word[from].role, Role::Drop)) {
        if !matches!(word[from].role, Role::Drop) {
            word[from].role = Role::Sep(b' ');
        }
        from += 1;
    }
    while to > from && (!edge_ok(&word[to - 1]) || matches!(word[to - 1].role, Role::Drop)) {
        if !matches!(word[to - 1].role, Role::Drop) {
            word[to - 1].role = Role::Sep(b' ');
        }
        to -= 1;
    }
    let core = &mut word[from..to];
    let letters = core.iter().filter(|u| u.is_letter()).count();
    let digits = core
        .iter()
        .filter(|u| matches!(u.role, Role::Digit(_)))
        .count();
    // `A55`, `PS5`, `XC90`: capitals then digits name a product, not a word.
    let code = digits > 0 && {
        let first_digit = core
            .iter()
            .position(|u| matches!(u.role, Role::Digit(_)))
            .unwrap_or(0);
        core[..first_digit]
            .iter()
            .all(|u| matches!(u.role, Role::Letter { lower: false, .. }))
            && core[first_digit..]
                .iter()
                .all(|u| matches!(u.role, Role::Digit(_)))
    };
    let fold_digits = letters > 0 && !code;
    // A word of symbols alone reads as letters too (`@$$`), unless a digit makes it a price.
    let symbols = core
        .iter()
        .filter(|u| matches!(u.role, Role::Leet { .. }))
        .count();
    let fold_symbols = letters > 0 || (digits == 0 && symbols >= 2);
    let mut after_lower = false;
    for u in core.iter_mut() {
        u.role = match std::mem::replace(&mut u.role, Role::Drop) {
            Role::Digit(d) => match digit_letter(d).filter(|_| fold_digits) {
                Some(letter) => Role::Fold(letter),
                None => Role::Number(d),
            },
            Role::Leet { letter, .. } if fold_symbols => Role::Fold(letter),
            Role::Leet { .. } => Role::Sep(b' '),
            Role::Wildcard if letters > 0 => Role::Fold(b'*'),
            Role::Wildcard => Role::Sep(b' '),
            Role::Letter {
                capital_i: true, ..
            } if after_lower => Role::Stroke,
            other => other,
        };
        match u.role {
            Role::Letter { lower, .. } => after_lower = lower,
            Role::Drop => {}
            _ => after_lower = false,
        }
    }
}

/// A `-`, `.` or `_` between a lone letter and a longer word hides a letter (`sh-t`).
fn hidden_letters(units: &mut [Unit], words: &[Word]) {
    let reads = |units: &[Unit], w: Word| {
        units[w.from..w.to]
            .iter()
            .filter(|u| !matches!(u.role, Role::Drop | Role::Sep(_)))
            .count()
    };
    for pair in words.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.from != a.to + 1 {
            continue;
        }
        let Role::Sep(b'-' | b'.' | b'_') = units[a.to].role else {
            continue;
        };
        // The letters must touch the gap: a word that ended in punctuation does not.
        let touches = !matches!(units[a.to - 1].role, Role::Sep(_))
            && !matches!(units[b.from].role, Role::Sep(_));
        let (na, nb) = (reads(units, a), reads(units, b));
        let lone = |w: Word, n: usize| n == 1 && units[w.from..w.to].iter().any(Unit::is_letter);
        if touches && ((lone(a, na) && nb >= 2) || (lone(b, nb) && na >= 2)) {
            units[a.to].role = Role::Fold(b'*');
        }
    }
}

fn emit(units: &[Unit], spellings: &[Translation], len: usize) -> Normalized {
    let mut n = Normalized {
        bytes: Vec::with_capacity(len),
        kind: Vec::with_capacity(len),
        run: Vec::with_capacity(len),
        span: Vec::with_capacity(len),
        starts: Vec::with_capacity(len / 4),
    };
    let mut buf = [0u8; 4];
    for u in units {
        let span = (u.start, u.end);
        match &u.role {
            Role::Letter { text, latin, .. } => {
                let kind = if *latin { K_LETTER } else { K_ALPHA };
                match text {
                    Text::One(c) => n.push_str(c.encode_utf8(&mut buf), kind, span),
                    Text::Many(i) => match spellings.get(*i as usize) {
                        Some(Translation::Character(c)) => {
                            n.push_str(c.encode_utf8(&mut buf), kind, span)
                        }
                        Some(Translation::String(s)) => n.push_str(s, kind, span),
                        Some(Translation::None) | None => {}
                    },
                }
            }
            Role::Stroke => n.push(b'1', K_LETTER, span),
            Role::Fold(letter) => n.push(*letter, K_FOLD, span),
            Role::Number(d) | Role::Digit(d) => n.push(*d, K_OTHER, span),
            Role::Unspaced(c) => n.push_str(c.encode_utf8(&mut buf), K_OTHER, span),
            Role::Sep(_) | Role::Leet { .. } | Role::Wildcard => {
                if n.bytes.last() != Some(&b' ') {
                    n.push(b' ', K_OTHER, span);
                }
            }
            Role::Drop => {}
        }
    }
    n
}

impl Normalized {
    fn push_str(&mut self, s: &str, kind: u8, span: (u32, u32)) {
        for &b in s.as_bytes() {
            self.push(b, kind, span);
        }
    }

    fn push(&mut self, b: u8, kind: u8, span: (u32, u32)) {
        let letter = kind == K_LETTER || kind == K_FOLD;
        if letter && b.is_ascii() && self.bytes.last() == Some(&b) {
            let i = self.bytes.len() - 1;
            if self.kind[i] == K_LETTER || self.kind[i] == K_FOLD {
                self.run[i] = self.run[i].saturating_add(1);
                self.span[i].1 = self.span[i].1.max(span.1);
                return;
            }
        }
        let prev = self.kind.last().copied().unwrap_or(K_OTHER);
        let joined = prev == K_LETTER || (prev == K_ALPHA && !b.is_ascii());
        // A UTF-8 continuation byte (0x80..0xC0) never starts a pattern.
        if !joined && b != b' ' && (b as i8) >= -0x40 {
            self.starts.push(self.bytes.len() as u32);
        }
        self.bytes.push(b);
        self.kind.push(kind);
        self.run.push(1);
        self.span.push(span);
    }

    /// True when the byte at `i` is part of a word (a letter of any kind but another script's).
    pub(super) fn in_word(&self, i: usize) -> bool {
        matches!(self.kind.get(i), Some(&K_LETTER) | Some(&K_FOLD))
    }

    /// True when the byte at `i` joins a match ending or starting next to it into a longer
    /// word, so the match is not a whole word there.
    pub(super) fn joins(&self, i: usize, ascii_edge: bool) -> bool {
        match self.kind.get(i) {
            Some(&K_LETTER) => true,
            Some(&K_ALPHA) => !ascii_edge,
            _ => false,
        }
    }

    /// The original byte range of the normalised bytes `from..to`.
    pub(super) fn original(&self, from: usize, to: usize) -> Option<(usize, usize)> {
        let spans = self.span.get(from..to)?;
        let start = spans.iter().map(|s| s.0).min()?;
        let end = spans.iter().map(|s| s.1).max()?;
        Some((start as usize, end as usize))
    }
}
