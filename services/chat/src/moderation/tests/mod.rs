//! Tests of the filter, by what they check.

mod corpus;
mod fold;
mod forms;
mod lists;
mod mask;
mod policy;
mod reload;

use super::*;

/// The filter built from the shipped lists.
fn shipped() -> Filter {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    Filter::from_files(
        &dir.join("moderation-words.txt"),
        Some(&dir.join("moderation-allow.txt")),
    )
    .expect("shipped lists load")
}

/// A small list exercising every form syntax.
const WORDS: &str = "\
@verb = -s -ed -ing -er -ers
@dumb = dumb+ jack+
fuck =phuck @verb +face mother+
ass @dumb +hole
shit -ty bull+
dick -s +head !de
slut -s !sv
";

fn filter() -> Filter {
    Filter::parse(WORDS, "Moby Dick\nBalaam's ass\nFucking, Austria\n").expect("test lists load")
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
            // Everything outside the hits is unchanged, and each hit is one run of `*`.
            const CUT: char = '\u{E000}';
            let mut kept = String::new();
            let mut at = 0;
            for r in &hits {
                kept.push_str(&text[at..r.start]);
                kept.push(CUT);
                at = r.end;
            }
            kept.push_str(&text[at..]);
            let mut flat = String::new();
            for c in masked.chars() {
                match c {
                    '*' if flat.ends_with(CUT) => {}
                    '*' => flat.push(CUT),
                    _ => flat.push(c),
                }
            }
            let squeeze = |s: String| s.replace(&format!("{CUT}{CUT}"), &CUT.to_string());
            if !text.contains(['*', CUT]) {
                assert_eq!(squeeze(flat), squeeze(kept), "{text:?} -> {masked:?}");
            }
        }
    }
}
