//! The corpus of evasions and innocent phrases in `tests/moderation_corpus`, against the
//! shipped lists. Run with `--nocapture` to see the rates and every line that fails.

use super::shipped;

/// Reads a corpus file: `label<TAB>text` lines, `\u{XXXX}` escapes, `#` comment lines.
fn corpus(name: &str) -> Vec<(String, String)> {
    let path = format!(
        "{}/tests/moderation_corpus/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("corpus file reads");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let (label, raw) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("{name}:{}: no tab", i + 1));
            (label.to_owned(), unescape(raw))
        })
        .collect()
}

fn unescape(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(at) = rest.find("\\u{") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 3..];
        let end = tail.find('}').expect("escape closes");
        let code = u32::from_str_radix(&tail[..end], 16).expect("escape is hex");
        out.push(char::from_u32(code).expect("escape is a char"));
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
#[allow(clippy::print_stdout)]
fn evasions_are_caught_and_innocent_text_passes() {
    let filter = shipped();
    let evasions = corpus("evasions.tsv");
    let innocent = corpus("innocent.tsv");
    assert!(evasions.len() >= 300 && innocent.len() >= 300);
    let languages: std::collections::BTreeSet<&str> =
        innocent.iter().map(|(l, _)| l.as_str()).collect();
    assert!(languages.len() >= 4, "{languages:?}");

    let passed: Vec<&(String, String)> = evasions
        .iter()
        .filter(|(_, t)| filter.is_clean(t))
        .collect();
    let blocked: Vec<&(String, String)> = innocent
        .iter()
        .filter(|(_, t)| !filter.is_clean(t))
        .collect();
    let rate = |n: usize, of: usize| 100.0 * n as f64 / of as f64;
    let pass_rate = rate(passed.len(), evasions.len());
    let block_rate = rate(blocked.len(), innocent.len());
    println!(
        "evasions passing: {}/{} ({pass_rate:.1}%)",
        passed.len(),
        evasions.len()
    );
    for (family, text) in &passed {
        println!("  passes  [{family}] {text:?}");
    }
    println!(
        "innocent blocked: {}/{} ({block_rate:.1}%)",
        blocked.len(),
        innocent.len()
    );
    for (lang, text) in &blocked {
        println!("  blocked [{lang}] {text:?} -> {:?}", filter.mask(text));
    }
    assert!(pass_rate < 5.0, "{pass_rate:.1}% of evasions pass");
    assert!(
        block_rate < 1.0,
        "{block_rate:.1}% of innocent phrases are blocked"
    );
}
