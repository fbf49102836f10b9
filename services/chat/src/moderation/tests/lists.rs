//! The list formats: what they accept, and the errors that name the bad line.

use super::*;
use crate::moderation::list::{LineError, parse_words};

fn line_error(words: &str) -> LineError {
    match Filter::parse(words, "") {
        Err(FilterError::Line { error, .. }) => error,
        other => panic!("{words:?} should fail with a line error, got {other:?}"),
    }
}

#[test]
fn malformed_lines_are_named() {
    let cases: [(&str, usize, &str); 8] = [
        ("ok\n-ed fuck", 2, "must start with the stem"),
        ("fuck @verb", 1, "set @verb is not defined"),
        ("fuck -", 1, "has no ending"),
        ("fuck +", 1, "has no compound word"),
        ("fuck %x", 1, "is not a form"),
        ("fuck !xx", 1, "unknown language \"xx\""),
        ("@v = -s\n@v = -ed", 2, "defined twice"),
        ("# a list\n\n***", 3, "has nothing to match"),
    ];
    for (words, line, reason) in cases {
        let e = line_error(words);
        assert_eq!(e.line, line, "{words:?}: {e}");
        assert!(e.reason.contains(reason), "{words:?}: {e}");
    }
}

#[test]
fn errors_name_the_file() {
    let dir = std::env::temp_dir().join(format!("moderation-lists-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let words = dir.join("words.txt");
    let allow = dir.join("allow.txt");
    std::fs::write(&words, "fuck\nshit =\n").expect("write words");
    std::fs::write(&allow, "Moby Dick\n!!!\n").expect("write allow");
    let bad_words = Filter::from_files(&words, None).expect_err("bad word list");
    std::fs::write(&words, "fuck\n").expect("write words");
    let bad_allow = Filter::from_files(&words, Some(&allow)).expect_err("bad allow list");
    let missing = Filter::from_files(&dir.join("nope.txt"), None).expect_err("missing list");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");

    let msg = bad_words.to_string();
    assert!(msg.contains("words.txt") && msg.contains("line 2"), "{msg}");
    let msg = bad_allow.to_string();
    assert!(msg.contains("allow.txt") && msg.contains("line 2"), "{msg}");
    assert!(matches!(missing, FilterError::Read { .. }), "{missing:?}");
    assert!(missing.to_string().contains("nope.txt"));
}

#[test]
fn sets_and_forms_expand() {
    let entries =
        parse_words("@v = -s -ed\n@p = mother+ !de\nfuck =fuk @v @p +face -y").expect("parses");
    let [entry] = entries.as_slice() else {
        panic!("{entries:?}");
    };
    assert_eq!(entry.spellings, ["fuck", "fuk"]);
    assert_eq!(entry.forms.suffixes, ["s", "ed", "faces", "face", "y"]);
    assert_eq!(entry.forms.prefixes, ["mother"]);
    assert_ne!(entry.forms.innocent_in, 0);
}

#[test]
fn counts_stems_and_folds_duplicates() {
    assert!(Filter::new(Vec::<String>::new()).is_empty());
    let f = Filter::new(["", "  ", "Bad", "ass"]);
    assert_eq!((f.len(), f.is_empty()), (2, false));
    assert!(format!("{f:?}").starts_with("Filter { words: 2"));
    assert!(Filter::new([""]).is_clean("anything"));
    // Several words make a phrase, matched as the text spaces it.
    let f = Filter::new(["bad word"]);
    assert_eq!(f.mask("a bad  word!").as_deref(), Some("a *********!"));
    assert!(f.is_clean("a bad wordsmith"));
}

#[test]
fn shipped_lists_load() {
    let f = shipped();
    assert!(f.len() > 10);
    assert!(!f.is_clean("sh1t happens") && f.is_clean("Moby Dick"));
}

#[test]
fn is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Filter>();
    assert_send_sync::<SharedFilter>();
}
