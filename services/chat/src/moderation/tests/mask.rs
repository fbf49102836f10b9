//! Masking replaces exactly the offending chars: one `*` per visible char of a hit, the
//! marks on it included, and nothing else.

use super::{check, filter, shipped};

#[test]
fn masks_only_the_hit_among_marks_emoji_and_rtl_text() {
    let f = filter();
    let cases: [(&str, &str); 10] = [
        ("café fuck ☕", "café **** ☕"),
        // A decomposed accent inside the word goes with its letter.
        ("fu\u{301}ck e\u{301}", "**** e\u{301}"),
        // Marks after the word's last letter are part of it; the next word's are not.
        ("fuck\u{308} no\u{308}", "**** no\u{308}"),
        ("👨‍👩‍👧 fuck 👍🏽", "👨‍👩‍👧 **** 👍🏽"),
        ("🇫🇷 fuck 🇫🇷", "🇫🇷 **** 🇫🇷"),
        ("שלום fuck مرحبا", "שלום **** مرحبا"),
        (
            "مرحبا\u{200F}fuck\u{200F}שלום",
            "مرحبا\u{200F}****\u{200F}שלום",
        ),
        // Invisible chars inside the word are masked away with it.
        ("f\u{200B}u\u{2062}ck!", "****!"),
        // The override is kept; what it displays as `fuck` is masked.
        ("ok \u{202E}kcuf\u{202C} ok", "ok \u{202E}****\u{202C} ok"),
        ("नमस्ते ｆｕｃｋ नमस्ते", "नमस्ते **** नमस्ते"),
    ];
    for (text, want) in cases {
        assert_eq!(f.mask(text).as_deref(), Some(want), "{text:?}");
        check(&f, text);
    }
}

#[test]
fn masks_a_whole_form_and_a_whole_run() {
    let f = filter();
    assert_eq!(
        f.mask("you motherfuckers!").as_deref(),
        Some("you *************!")
    );
    assert_eq!(f.mask("fuuuuck it").as_deref(), Some("******* it"));
    assert_eq!(f.mask("f u c k off").as_deref(), Some("******* off"));
    assert_eq!(f.mask("$hit and a$$!").as_deref(), Some("**** and ***!"));
}

#[test]
fn find_ranges_slice_back_to_the_original() {
    let f = shipped();
    let cases: [(&str, &[&str]); 4] = [
        ("say ｆｕｃｋ now", &["ｆｕｃｋ"]),
        ("$hit and a$$!", &["$hit", "a$$"]),
        ("«ѕhіt»", &["ѕhіt"]),
        ("x fu\u{300}ck\u{301} y", &["fu\u{300}ck\u{301}"]),
    ];
    for (text, want) in cases {
        let got: Vec<&str> = f.find(text).into_iter().map(|r| &text[r]).collect();
        assert_eq!(got, want, "{text:?}");
    }
}
