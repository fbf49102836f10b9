//! The word-list and allow-list file formats.
//!
//! A word-list line is a stem and the forms it takes, separated by spaces; `#` starts a
//! comment:
//!
//! ```text
//! @verb = -s -ed -ing -in -er -ers        # a named set of forms, usable below
//! fuck =fuk =phuck @verb +face mother+    # stem, spellings, forms
//! slut -s -ty !sv !da !no                 # innocent in Swedish, Danish, Norwegian
//! ```
//!
//! - `=spelling`: another spelling of the stem, taking the same forms;
//! - `-ending`: the stem plus this ending (`-ed`: `fucked`);
//! - `+word`: a compound ending, with its plural (`+head`: `dickhead`, `dickheads`);
//! - `word+`: a compound beginning (`mother+`: `motherfucker`);
//! - `@set`: every form of a set defined on an earlier line;
//! - `!xx`: innocent in a message that reads as language `xx`.
//!
//! A stem alone matches only as a whole word. The allow list has one phrase per line.

use std::collections::HashMap;

use super::language::Lang;

/// A line of a list that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct LineError {
    /// One-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The forms a stem takes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Forms {
    /// Endings, as written (`ed`, `head`, `heads`).
    pub(super) suffixes: Vec<String>,
    /// Compound beginnings, as written (`mother`).
    pub(super) prefixes: Vec<String>,
    /// Languages the entry is innocent in.
    pub(super) innocent_in: u16,
}

impl Forms {
    fn extend(&mut self, other: &Forms) {
        self.suffixes.extend(other.suffixes.iter().cloned());
        self.prefixes.extend(other.prefixes.iter().cloned());
        self.innocent_in |= other.innocent_in;
    }
}

/// One blocked stem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    /// The stem and its other spellings, as written.
    pub(super) spellings: Vec<String>,
    /// Its forms.
    pub(super) forms: Forms,
    /// Where it was written, for errors found later.
    pub(super) line: usize,
}

/// Reads a word list.
pub(super) fn parse_words(text: &str) -> Result<Vec<Entry>, LineError> {
    let mut sets: HashMap<String, Forms> = HashMap::new();
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |reason: String| LineError { line, reason };
        let content = raw.split('#').next().unwrap_or_default();
        let mut tokens = content.split_whitespace();
        let Some(first) = tokens.next() else {
            continue;
        };
        let rest: Vec<&str> = tokens.collect();
        if let Some(name) = first.strip_prefix('@') {
            if rest.first() != Some(&"=") {
                return Err(err(format!("a set is defined as `@{name} = forms...`")));
            }
            if !valid_name(name) {
                return Err(err(format!(
                    "set name {first:?} must be letters, digits or -"
                )));
            }
            let mut forms = Forms::default();
            for token in &rest[1..] {
                if token.starts_with('=') {
                    return Err(err(format!("a set cannot hold a spelling ({token})")));
                }
                form(token, &sets, &mut forms, &mut Vec::new()).map_err(err)?;
            }
            if sets.insert(name.to_owned(), forms).is_some() {
                return Err(err(format!("set @{name} is defined twice")));
            }
            continue;
        }
        if first.starts_with(['=', '-', '+', '!']) || first.ends_with('+') {
            return Err(err(format!(
                "{first:?} is a form; the line must start with the stem"
            )));
        }
        let mut entry = Entry {
            spellings: vec![first.to_owned()],
            forms: Forms::default(),
            line,
        };
        for token in rest {
            form(token, &sets, &mut entry.forms, &mut entry.spellings).map_err(err)?;
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

/// Adds one form token to `forms` (or a spelling to `spellings`).
fn form(
    token: &str,
    sets: &HashMap<String, Forms>,
    forms: &mut Forms,
    spellings: &mut Vec<String>,
) -> Result<(), String> {
    let nonempty = |part: &str, what: &str| {
        if part.is_empty() || part.ends_with('+') || part.starts_with('+') {
            Err(format!("{token:?} has no {what}"))
        } else {
            Ok(part.to_owned())
        }
    };
    if let Some(spelling) = token.strip_prefix('=') {
        spellings.push(nonempty(spelling, "spelling after `=`")?);
    } else if let Some(ending) = token.strip_prefix('-') {
        forms.suffixes.push(nonempty(ending, "ending after `-`")?);
    } else if let Some(word) = token.strip_prefix('+') {
        let word = nonempty(word, "compound word after `+`")?;
        forms.suffixes.push(format!("{word}s"));
        forms.suffixes.push(word);
    } else if let Some(word) = token.strip_suffix('+') {
        forms
            .prefixes
            .push(nonempty(word, "compound word before `+`")?);
    } else if let Some(name) = token.strip_prefix('@') {
        let set = sets
            .get(name)
            .ok_or_else(|| format!("set @{name} is not defined on an earlier line"))?;
        forms.extend(set);
    } else if let Some(code) = token.strip_prefix('!') {
        let lang = Lang::from_code(code)
            .ok_or_else(|| format!("unknown language {code:?} (known: {})", Lang::known()))?;
        forms.innocent_in |= lang.bit();
    } else {
        return Err(format!(
            "{token:?} is not a form: write -ending, +compound, prefix+, @set, =spelling or !language"
        ));
    }
    Ok(())
}

/// Reads an allow list: one phrase per line, `#` comments, blank lines ignored.
pub(super) fn parse_allow(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.split('#').next().unwrap_or_default().trim()))
        .filter(|(_, phrase)| !phrase.is_empty())
        .collect()
}
