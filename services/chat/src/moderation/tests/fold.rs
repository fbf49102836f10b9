//! What the normalised reading folds, and what it must leave alone.

use super::{check, filter};
use crate::moderation::normalize::normalize;

fn reads(text: &str) -> String {
    String::from_utf8(normalize(text).bytes).expect("normalised text is UTF-8")
}

#[test]
fn drops_every_invisible_format_char() {
    for c in [
        '\u{AD}',
        '\u{34F}',
        '\u{61C}',
        '\u{115F}',
        '\u{180E}',
        '\u{200B}',
        '\u{200D}',
        '\u{200F}',
        '\u{2060}',
        '\u{2062}',
        '\u{2064}',
        '\u{206F}',
        '\u{3164}',
        '\u{FEFF}',
        '\u{FFA0}',
        '\u{E0001}',
        '\u{E0041}',
        '\u{E007F}',
    ] {
        assert_eq!(reads(&format!("b{c}ad")), "bad", "U+{:04X}", c as u32);
    }
}

#[test]
fn folds_look_alike_and_styled_letters() {
    for text in [
        "ƒuck",
        "fսck",
        "ꜰᴜᴄᴋ",
        "ꓝꓴꓚꓗ",
        "fuᏟᏦ",
        "𝐟𝐮𝐜𝐤",
        "𝔣𝔲𝔠𝔨",
        "𝕗𝕦𝕔𝕜",
        "ｆｕｃｋ",
        "ⓕⓤⓒⓚ",
        "🅕🅤🅒🅚",
        "🅵🆄🅲🅺",
        "🄵🅄🄲🄺",
        "🇫🇺🇨🇰",
        "⒡⒰⒞⒦",
        "fúçk",
        "FUCK",
        "fu\u{301}ck",
    ] {
        assert_eq!(reads(text), "fuck", "{text:?}");
    }
}

#[test]
fn keeps_the_scripts_of_real_conversations() {
    assert_eq!(reads("你好"), "你好");
    assert_eq!(reads("שלום"), "שלום");
    assert_eq!(reads("مرحبا"), "مرحبا");
    assert_eq!(reads("こんにちは"), "こんにちは");
    // ß is German's own letter, not `ss` (nor `b`, as decancer reads it).
    assert_eq!(reads("aß"), "aß");
}

#[test]
fn collapses_repeats_and_remembers_them() {
    let n = normalize("fuuuuck ass");
    assert_eq!(n.bytes, b"fuck as");
    assert_eq!(n.run, [1, 4, 1, 1, 1, 1, 2]);
}

#[test]
fn joins_spelled_out_letters_only() {
    assert_eq!(reads("f u c k"), "fuck");
    assert_eq!(reads("f.u.c.k."), "fuck ");
    assert_eq!(reads("f*u*c*k"), "fuck");
    assert_eq!(reads("s - h - i - t"), "shit");
    // Two letters, or words of two letters, stay apart.
    assert_eq!(reads("e.g. an ox"), "e g an ox");
    assert_eq!(reads("a b"), "a b");
}

#[test]
fn reads_digits_as_letters_only_in_words_with_letters() {
    assert_eq!(reads("sh1t a55hole 5hit"), "sh1t ashole shit");
    assert_eq!(reads("Room 455"), "rom 455");
    assert_eq!(reads("555-455-0199"), "555 455 0199");
    // Capitals then digits: a product code.
    assert_eq!(reads("Galaxy A55"), "galaxy a55");
    assert_eq!(reads("SH17 RTX4090"), "sh17 rtx4090");
}

#[test]
fn reads_symbols_as_letters_inside_words_and_punctuation_around_them() {
    assert_eq!(reads("$hit a$$ sh!t"), "shit as shit");
    assert_eq!(reads("wow! (so) $5"), "wow so 5");
    assert_eq!(reads("f*ck f**k"), "f*ck f*k");
    assert_eq!(reads("**bold**"), " bold ");
}

#[test]
fn a_lone_letter_and_a_dash_hide_a_letter() {
    assert_eq!(reads("sh-t a-hole"), "sh*t a*hole");
    assert_eq!(reads("well-known e-mail"), "wel known e*mail");
}

#[test]
fn undoes_right_to_left_overrides() {
    assert_eq!(reads("\u{202E}kcuf\u{202C}"), "fuck");
    assert_eq!(reads("a \u{202E}dab\u{202C} b"), "a bad b");
    // Marks stay on their letter when the run is reversed.
    let n = normalize("\u{202E}dae\u{301}b\u{202C}");
    assert_eq!(n.bytes, b"bead");
    assert_eq!(n.original(1, 2), Some((5, 8)));
}

#[test]
fn never_panics_on_generated_text() {
    #[rustfmt::skip]
    const POOL: &[&str] = &[
        "fuck", "$hit", "a", "s", " ", ".", "-", "*", "\u{0}", "\u{300}", "\u{20DD}", "ß", "ẞ", "ﬁ",
        "ﷺ", "😀", "👨‍👩‍👧", "🇫🇷", "שלום", "مرحبا", "\u{202E}", "\u{202C}", "\u{200B}", "ｂ", "İ",
        "ǅ", "Ω", "1", "5", "|", "!", "é", "\u{FEFF}", "\u{10FFFF}", "각", "ᄀ", "I", "@",
    ];
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
    check(&f, &"ｆｕｃｋ \u{301}".repeat(20_000));
    check(&f, &"\u{301}".repeat(100_000));
    check(&f, &"a ".repeat(50_000));
    check(&f, &"\u{202E}kcuf".repeat(10_000));
}
