//! What one character reads as once its disguise is removed.
//!
//! Confusables (UTS #39 and beyond: Cyrillic, Greek, Armenian, Cherokee, Lisu, small capitals,
//! mathematical, fullwidth, circled and squared letters, `ƒ`...) come from `decancer`, which
//! folds them to lower-case Latin. The writing systems of real conversations (CJK, Arabic,
//! Hebrew, Indic, Thai...) are kept as they are: folding them to look-alike Latin letters
//! would turn innocent text into gibberish words and glue Latin words to it.

use std::cell::RefCell;

use decancer::{Options, Translation};
use unicode_normalization::char::is_combining_mark;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// What one original char contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Folded {
    /// Renders as nothing (format and default-ignorable chars): dropped.
    Invisible,
    /// Modifies the char before it (combining marks, variation selectors): dropped, and masked
    /// along with that char.
    Mark,
    /// Whitespace, punctuation, emoji and other symbols between words.
    Separator,
    /// A letter, folded to `text` (usually one ASCII letter, sometimes two: `æ` → `ae`).
    Letter {
        /// The folded spelling.
        text: Translation,
        /// How the letter separates words from its neighbours.
        script: Script,
        /// Written in lower case (so an `I` after it is more likely an `l`).
        lower: bool,
        /// The ASCII capital `I`, which reads as `l` inside a lower-case word.
        capital_i: bool,
    },
    /// An ASCII digit; it may stand for the letter inside a word that has letters.
    Digit(u8),
    /// A symbol that stands for a letter inside a word (`$` for `s`); `edge` says whether it
    /// may also start or end one (`$hit`, `a$$`), unlike `!` or `(` which end sentences.
    Leet { letter: u8, edge: bool },
    /// `*` or `#` inside a word, hiding letters (`f*ck`).
    Wildcard,
    /// A letter of a script written without spaces (CJK, Thai...): kept, and never part of a
    /// Latin word.
    Unspaced(char),
}

/// How a letter's script separates words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Script {
    /// Latin, and the scripts folded to it (Greek, Cyrillic...): the word list's own.
    Latin,
    /// Another spaced script (Arabic, Hebrew, Indic...): words of it are not Latin words.
    Other,
}

/// Scripts kept rather than folded to Latin look-alikes; see the module comment.
fn options() -> Options {
    Options::default()
        .retain_chinese()
        .retain_japanese()
        .retain_korean()
        .retain_arabic()
        .retain_hebrew()
        .retain_devanagari()
        .retain_bengali()
        .retain_gujarati()
        .retain_tamil()
        .retain_thai()
        .retain_lao()
        .retain_burmese()
        .retain_khmer()
        .retain_braille()
        .retain_emojis()
}

/// Default_Ignorable_Code_Point ranges beyond the format (`Cf`) chars, from Unicode's
/// DerivedCoreProperties: fillers and selectors that render as nothing.
#[rustfmt::skip]
const IGNORABLE: &[(u32, u32)] = &[
    (0x034F, 0x034F), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8),
    (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
];

fn is_ignorable(c: char) -> bool {
    let u = c as u32;
    c.general_category() == GeneralCategory::Format
        || IGNORABLE.iter().any(|&(lo, hi)| (lo..=hi).contains(&u))
}

/// Selectors that change how the char before them looks, so they go with it when masked.
fn is_selector(c: char) -> bool {
    matches!(c as u32, 0xFE00..=0xFE0F | 0x180B..=0x180D | 0xE0100..=0xE01EF)
}

/// Scripts whose words are not separated by spaces: a Latin word may touch them directly.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF | 0x2E80..=0x9FFF
        | 0xA960..=0xA97F | 0xAC00..=0xD7FF | 0xF900..=0xFAFF | 0xFF66..=0xFF9F
        | 0x20000..=0x3FFFF)
}

/// The letter a leetspeak digit stands for; `1` is kept as the ambiguous i/l stroke.
pub(super) fn digit_letter(d: u8) -> Option<u8> {
    Some(match d {
        b'0' => b'o',
        b'1' => b'1',
        b'3' => b'e',
        b'4' => b'a',
        b'5' => b's',
        b'7' => b't',
        b'8' => b'b',
        b'9' => b'g',
        _ => return None,
    })
}

/// Non-ASCII chars folded lately, per thread: a message repeats its chars, and folding one
/// takes several table searches.
const CACHE_SLOTS: usize = 1024;

thread_local! {
    static CACHE: RefCell<Vec<(char, Folded)>> =
        RefCell::new(vec![('\0', Folded::Separator); CACHE_SLOTS]);
}

/// Folds one char.
pub(super) fn fold(c: char) -> Folded {
    if c.is_ascii() {
        return fold_uncached(c);
    }
    let slot = ((c as u32).wrapping_mul(0x9E37_79B1) >> 22) as usize % CACHE_SLOTS;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache[slot].0 != c {
            cache[slot] = (c, fold_uncached(c));
        }
        cache[slot].1.clone()
    })
}

fn fold_uncached(c: char) -> Folded {
    match c {
        'a'..='z' => return latin(c as u8, true, false),
        'A'..='Z' => return latin(c.to_ascii_lowercase() as u8, false, c == 'I'),
        '0'..='9' => return Folded::Digit(c as u8),
        '$' => {
            return Folded::Leet {
                letter: b's',
                edge: true,
            };
        }
        '@' => {
            return Folded::Leet {
                letter: b'a',
                edge: true,
            };
        }
        '!' => {
            return Folded::Leet {
                letter: b'i',
                edge: false,
            };
        }
        '|' => {
            return Folded::Leet {
                letter: b'1',
                edge: false,
            };
        }
        '(' => {
            return Folded::Leet {
                letter: b'c',
                edge: false,
            };
        }
        '+' => {
            return Folded::Leet {
                letter: b't',
                edge: false,
            };
        }
        '*' | '#' => return Folded::Wildcard,
        _ if c.is_ascii() => return Folded::Separator,
        // decancer reads `ß` as `b`; it is German's own letter, and folding it to `ss` turns
        // `aß` (ate) into a word it is not.
        'ß' | 'ẞ' => {
            return Folded::Letter {
                text: Translation::Character('ß'),
                script: Script::Latin,
                lower: c == 'ß',
                capital_i: false,
            };
        }
        _ => {}
    }
    if is_selector(c) || is_combining_mark(c) {
        return Folded::Mark;
    }
    if is_ignorable(c) {
        return Folded::Invisible;
    }
    if c.is_whitespace() {
        return Folded::Separator;
    }
    if is_unspaced(c) {
        return Folded::Unspaced(c);
    }
    // Enclosed letters (negative squared, regional indicators) are emoji to decancer; only
    // its emoji folding reads them as letters.
    let options = if matches!(c as u32, 0x1F100..=0x1F1FF) {
        Options::default()
    } else {
        options()
    };
    let text = decancer::cure_char(c, options);
    let first = match &text {
        Translation::Character(f) => Some(*f),
        Translation::String(s) => s.chars().next(),
        Translation::None => None,
    };
    let Some(first) = first else {
        return Folded::Mark;
    };
    if first.is_ascii_digit() && !c.is_alphabetic() {
        return Folded::Digit(first as u8);
    }
    if !first.is_alphabetic() && !first.is_ascii_digit() {
        return Folded::Separator;
    }
    if first.is_ascii() && c.general_category() == GeneralCategory::CurrencySymbol {
        // Currency signs decancer reads as letters (`€`, `¢`, `£`, `¥`) stand for them only
        // inside a word: `5€` is a price.
        return Folded::Leet {
            letter: first as u8,
            edge: false,
        };
    }
    let script = if first.is_ascii() || (first as u32) < 0x0590 {
        Script::Latin
    } else {
        Script::Other
    };
    Folded::Letter {
        text,
        script,
        lower: c.is_lowercase() || !c.is_uppercase(),
        capital_i: false,
    }
}

fn latin(letter: u8, lower: bool, capital_i: bool) -> Folded {
    Folded::Letter {
        text: Translation::Character(letter as char),
        script: Script::Latin,
        lower,
        capital_i,
    }
}

/// Bidi controls that open an embedding or override, closed by `PDF`.
fn opens_embedding(c: char) -> bool {
    matches!(c, '\u{202A}' | '\u{202B}' | '\u{202D}' | '\u{202E}')
}

/// The chars of `text` with their byte ranges, in the order a reader sees them: a run forced
/// right-to-left by `RLO` (up to its `PDF` or the end of the paragraph) is reversed, so
/// `\u{202E}kcuf` reads as it is displayed. Marks stay after the char they modify.
pub(super) fn visual_order(text: &str) -> Vec<(char, usize, usize)> {
    let chars: Vec<(char, usize, usize)> = text
        .char_indices()
        .map(|(i, c)| (c, i, i + c.len_utf8()))
        .collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].0 != '\u{202E}' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        out.push(chars[i]);
        let start = i + 1;
        let mut depth = 1usize;
        let mut end = start;
        while end < chars.len() {
            let c = chars[end].0;
            if matches!(c, '\n' | '\r' | '\u{2029}' | '\u{85}') {
                break;
            }
            if opens_embedding(c) {
                depth += 1;
            } else if c == '\u{202C}' {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            end += 1;
        }
        // Reverse whole clusters: a base char and the marks after it.
        let mut clusters: Vec<&[(char, usize, usize)]> = Vec::new();
        let mut j = start;
        while j < end {
            let mut k = j + 1;
            while k < end && matches!(fold(chars[k].0), Folded::Mark) {
                k += 1;
            }
            clusters.push(&chars[j..k]);
            j = k;
        }
        out.extend(clusters.iter().rev().flat_map(|c| c.iter().copied()));
        i = end;
    }
    out
}
