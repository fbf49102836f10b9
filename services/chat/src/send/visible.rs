//! Whether a body shows anything. Whitespace, and the characters Unicode
//! marks as default-ignorable (zero-width spaces and joiners, bidirectional
//! marks, embeddings, overrides and isolates, variation selectors, fillers,
//! tags), render as nothing; a body made only of them is empty on screen.

/// True when `text` has at least one character that renders.
pub(super) fn has_visible(text: &str) -> bool {
    text.chars()
        .any(|c| !c.is_whitespace() && !default_ignorable(c))
}

/// Unicode's `Default_Ignorable_Code_Point` property (DerivedCoreProperties).
fn default_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00ad}'                    // soft hyphen
        | '\u{034f}'                  // combining grapheme joiner
        | '\u{061c}'                  // Arabic letter mark
        | '\u{115f}'..='\u{1160}'     // Hangul fillers
        | '\u{17b4}'..='\u{17b5}'     // Khmer inherent vowels
        | '\u{180b}'..='\u{180f}'     // Mongolian selectors and separator
        | '\u{200b}'..='\u{200f}'     // zero-width space, joiners, LRM, RLM
        | '\u{202a}'..='\u{202e}'     // bidi embeddings and overrides
        | '\u{2060}'..='\u{206f}'     // word joiner, invisible operators, isolates
        | '\u{3164}'                  // Hangul filler
        | '\u{fe00}'..='\u{fe0f}'     // variation selectors
        | '\u{feff}'                  // zero-width no-break space
        | '\u{ffa0}'                  // halfwidth Hangul filler
        | '\u{fff0}'..='\u{fff8}'     // unassigned specials
        | '\u{1bca0}'..='\u{1bca3}'   // shorthand format controls
        | '\u{1d173}'..='\u{1d17a}'   // musical symbol format controls
        | '\u{e0000}'..='\u{e0fff}'   // tags and variation selectors supplement
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invisible_characters_show_nothing() {
        for blank in [
            "",
            " \n\t",
            "\u{202e}",
            "\u{200b}\u{200d}",
            "\u{2066}\u{2069}",
            "\u{feff}",
            " \u{3164} ",
            "\u{e0041}\u{fe0f}",
            "\u{00a0}\u{3000}",
        ] {
            assert!(!has_visible(blank), "{blank:?}");
        }
    }

    #[test]
    fn text_with_marks_around_it_shows() {
        for text in [
            "hi",
            "\u{202b}שלום\u{202c}",
            "a\u{200d}b",
            "👍\u{fe0f}",
            ".",
        ] {
            assert!(has_visible(text), "{text:?}");
        }
    }
}
