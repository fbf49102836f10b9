//! `@user` mentions in message text. One parser serves every reader: chat
//! and the gateway put the result on the wire, storage indexes it, so a
//! mention means the same everywhere.

use crate::UserId;

/// Most distinct users one message mentions; mentions past this are text.
pub const MAX_MENTIONS: usize = 32;

/// Characters that end a sentence or close a bracket: trimmed from the end
/// of a mention, so "thanks @ana." mentions `ana`.
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', ')', ']', '}', '"', '\'', '>'];

/// The users `body` mentions, in order of first mention, each once.
///
/// A mention is `@` followed by a user ID (printable characters up to the
/// next whitespace, closing punctuation trimmed). The `@` must start the
/// text or follow a character that is neither a letter nor a digit, so an
/// e-mail address mentions nobody. `author` is left out: mentioning
/// oneself notifies nobody.
pub fn mentions(body: &str, author: Option<&UserId>) -> Vec<UserId> {
    let mut found: Vec<UserId> = Vec::new();
    let mut previous: Option<char> = None;
    for (at, c) in body.char_indices() {
        let starts = c == '@' && !previous.is_some_and(|p| p.is_alphanumeric() || p == '@');
        previous = Some(c);
        if !starts {
            continue;
        }
        let rest = &body[at + 1..];
        let end = rest
            .find(|c: char| c.is_whitespace() || c.is_control() || c == '@')
            .unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches(TRAILING);
        let Ok(user) = UserId::new(name) else {
            continue;
        };
        if author == Some(&user) || found.contains(&user) {
            continue;
        }
        found.push(user);
        if found.len() == MAX_MENTIONS {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(body: &str) -> Vec<String> {
        mentions(body, None).into_iter().map(String::from).collect()
    }

    #[test]
    fn finds_mentions_at_word_starts() {
        assert_eq!(names("@ana hi @bo-b, and @c.d."), ["ana", "bo-b", "c.d"]);
        assert_eq!(names("(cc @ana)"), ["ana"]);
        assert_eq!(names("héllo,@zoë!"), ["zoë"]);
    }

    #[test]
    fn ignores_addresses_bare_signs_and_repeats() {
        assert!(names("mail ana@example.com").is_empty());
        assert!(names("@ @. @@ @!").is_empty());
        assert_eq!(names("@ana @ana @ana"), ["ana"]);
    }

    #[test]
    fn leaves_out_the_author() {
        let me = UserId::new("ana").unwrap();
        let found = mentions("@ana @bob", Some(&me));
        assert_eq!(found, [UserId::new("bob").unwrap()]);
    }

    #[test]
    fn caps_distinct_mentions() {
        let body: String = (0..100).map(|i| format!("@u{i} ")).collect();
        let found = mentions(&body, None);
        assert_eq!(found.len(), MAX_MENTIONS);
        assert_eq!(found[MAX_MENTIONS - 1].as_str(), "u31");
    }

    #[test]
    fn skips_names_too_long_to_be_users() {
        let long = format!("@{} @ok", "x".repeat(UserId::MAX_LEN + 1));
        assert_eq!(names(&long), ["ok"]);
    }
}
