//! A rough guess at the language of a message, from its function words, for words that are
//! blocked in English and innocent elsewhere (German `dick`, thick; Swedish `slut`, end).
//!
//! Only messages with a hit are guessed at. A language wins when more of its function words
//! than English ones appear; words two of them share (`die`, `so`, `an`, `till`) count for
//! neither.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A language a word-list entry can be innocent in; the bit it has in a set of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lang(u16);

#[rustfmt::skip]
const WORDS: &[(&str, &[&str])] = &[
    ("de", &["und", "ist", "nicht", "ich", "sehr", "der", "das", "ein", "eine", "einen", "einem",
        "mit", "auf", "für", "wir", "auch", "aber", "noch", "zu", "bist", "wird", "werden",
        "haben", "mein", "meine", "dein", "schon", "wie", "wenn", "dass", "den", "dem", "des",
        "im", "vom", "zum", "zur", "kein", "keine", "viel", "wirklich", "ganz", "heute", "jetzt",
        "geworden", "ziemlich", "oder", "nur", "nein", "danke", "bitte", "doch", "mal", "schön",
        "sind", "sie", "ihr", "uns", "hier", "immer", "wieder", "macht", "zu", "sein", "nach"]),
    ("sv", &["och", "är", "det", "att", "jag", "inte", "som", "med", "har", "på", "hon", "ett",
        "så", "när", "efter", "äntligen", "nej", "tack", "mycket", "bara", "också", "vill",
        "ska", "hade", "kommer", "blev", "sig", "dig", "mig", "hej", "vad", "varför", "redan",
        "här", "där", "av", "nu", "vi", "du", "en", "i", "kom", "han"]),
    ("da", &["og", "det", "jeg", "ikke", "som", "med", "har", "på", "til", "hun", "så", "når",
        "efter", "endelig", "nej", "tak", "meget", "bare", "også", "vil", "skal", "havde",
        "kommer", "blev", "mig", "dig", "hej", "hvad", "hvorfor", "allerede", "nu", "vi", "du", "i", "er", "han"]),
    ("no", &["og", "det", "jeg", "ikke", "som", "med", "har", "på", "til", "hun", "så", "når",
        "etter", "endelig", "nei", "takk", "mye", "bare", "også", "vil", "skal", "hadde",
        "kommer", "ble", "meg", "deg", "hei", "hva", "hvorfor", "allerede", "nå", "vi", "du", "i", "er", "han"]),
];

#[rustfmt::skip]
const ENGLISH: &[&str] = &[
    "the", "and", "is", "are", "you", "your", "a", "to", "of", "it", "that", "this", "what", "my",
    "me", "he", "she", "they", "we", "not", "was", "be", "have", "with", "for", "on", "in", "at",
    "i", "an", "his", "her", "him", "our", "do", "does", "did", "just", "like", "such", "if",
];

impl Lang {
    /// The language of an ISO 639-1 code the guesser knows.
    pub(super) fn from_code(code: &str) -> Option<Self> {
        WORDS
            .iter()
            .position(|(c, _)| *c == code)
            .map(|i| Self(1 << i))
    }

    /// The codes the guesser knows, for error messages.
    pub(super) fn known() -> String {
        WORDS.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
    }

    /// The bit of this language in a set.
    pub(super) fn bit(self) -> u16 {
        self.0
    }
}

/// English's bit in [`table`].
const EN: u16 = 1 << 15;

/// Buckets of the function-word table, by length and first byte.
const BUCKETS: usize = 512;

fn bucket(word: &[u8]) -> usize {
    (word.len() * 131 + word.first().map_or(0, |&b| b as usize)) % BUCKETS
}

/// Every function word with the set of languages it belongs to, in buckets.
fn table() -> &'static [Vec<(&'static str, u16)>] {
    static TABLE: OnceLock<Vec<Vec<(&'static str, u16)>>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut words: BTreeMap<&'static str, u16> = BTreeMap::new();
        for (i, (_, list)) in WORDS.iter().enumerate() {
            for w in *list {
                *words.entry(w).or_default() |= 1 << i;
            }
        }
        for w in ENGLISH {
            *words.entry(w).or_default() |= EN;
        }
        let mut buckets = vec![Vec::new(); BUCKETS];
        for (w, bits) in words {
            buckets[bucket(w.as_bytes())].push((w, bits));
        }
        buckets
    })
}

/// The longest function word, in bytes: longer words need no look-up.
const LONGEST: usize = 16;

/// The set of languages `text` reads as (usually none, at most a few close ones).
pub(super) fn guess(text: &str) -> u16 {
    let table = table();
    let mut counts = [0u16; WORDS.len()];
    let mut english = 0u16;
    let mut word = String::with_capacity(LONGEST * 2);
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphabetic() {
            word.push(c.to_ascii_lowercase());
            continue;
        }
        // Function words are written in Latin letters; other scripts only end a word.
        if ('\u{C0}'..'\u{250}').contains(&c) && c.is_alphabetic() {
            word.extend(c.to_lowercase());
            continue;
        }
        if word.is_empty() {
            continue;
        }
        let bits = if word.len() > LONGEST {
            0
        } else {
            table[bucket(word.as_bytes())]
                .iter()
                .find(|(w, _)| *w == word)
                .map_or(0, |&(_, bits)| bits)
        };
        match bits {
            0 => {}
            // Shared with English: evidence for neither.
            bits if bits & EN != 0 && bits != EN => {}
            EN => english += 1,
            bits => {
                for (lang, count) in counts.iter_mut().enumerate() {
                    *count += (bits >> lang) & 1;
                }
            }
        }
        word.clear();
    }
    counts
        .iter()
        .enumerate()
        .filter(|&(_, &n)| n > 0 && n > english)
        .fold(0, |set, (i, _)| set | 1 << i)
}
