//! What an upload may declare: its content type, size and file name.
//! Pure functions, so the rules are tested without a network.

use crate::{MediaError, MediaLimits};

/// Longest stored file name, in bytes of UTF-8.
pub const MAX_FILENAME_BYTES: usize = 255;

/// `raw` lowercased when it is a bare `type/subtype` made of RFC 6838
/// name characters, with no parameters, spaces or anything else.
pub(crate) fn bare_content_type(raw: &str) -> Option<String> {
    let (kind, subtype) = raw.split_once('/')?;
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    (name_ok(kind) && name_ok(subtype)).then(|| raw.to_ascii_lowercase())
}

/// The declared content type, if the allow-list holds it. Parameters
/// (`; charset=...`) and capitals are refused rather than stripped or
/// folded: the type is bound into the upload signature, and the client must
/// send exactly what was checked.
pub fn check_content_type(raw: &str, limits: &MediaLimits) -> Result<String, MediaError> {
    let Some(ct) = bare_content_type(raw) else {
        return Err(MediaError::InvalidArgument {
            field: "content_type",
            reason: "must be a bare type/subtype such as image/png, without parameters".into(),
        });
    };
    if ct != raw {
        return Err(MediaError::InvalidArgument {
            field: "content_type",
            reason: format!("must be lowercase: {ct}, not {raw}"),
        });
    }
    if !limits.content_types.contains(&ct) {
        return Err(MediaError::TypeNotAllowed {
            content_type: ct,
            allowed: limits.content_types.join(", "),
        });
    }
    Ok(ct)
}

/// Fails unless `size` is between one byte and the limit.
pub fn check_size(size: u64, limits: &MediaLimits) -> Result<(), MediaError> {
    if size == 0 {
        return Err(MediaError::InvalidArgument {
            field: "size",
            reason: "must be at least 1 byte".into(),
        });
    }
    if size > limits.max_size {
        return Err(MediaError::TooLarge {
            size,
            limit: limits.max_size,
        });
    }
    Ok(())
}

/// The display name kept for a client's file name. It is metadata only and
/// never reaches a path, but it is shown to other users, so it is made
/// inert: control and bidirectional-override characters are dropped, any
/// directory part is cut off, surrounding spaces are trimmed and the result
/// is capped in length. A name with nothing left is refused.
pub fn display_name(raw: &str) -> Result<String, MediaError> {
    let cleaned: String = raw.chars().filter(|&c| !invisible(c)).collect();
    let base = cleaned
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(MediaError::InvalidArgument {
            field: "filename",
            reason: "must contain a printable name after any directory part".into(),
        });
    }
    let mut end = base.len().min(MAX_FILENAME_BYTES);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    Ok(base[..end].trim_end().to_owned())
}

/// Characters that control a terminal or reorder text on screen.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'   // zero-width, LRM/RLM
            | '\u{202a}'..='\u{202e}' // bidi embeddings and overrides
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{feff}'              // BOM / zero-width no-break space
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> MediaLimits {
        MediaLimits {
            max_size: 1000,
            ..MediaLimits::default()
        }
    }

    #[test]
    fn content_type_must_be_exact_and_allowed() {
        let l = limits();
        assert_eq!(check_content_type("image/png", &l).unwrap(), "image/png");
        for capitals in ["IMAGE/PNG", "Image/png", "image/PNG"] {
            match check_content_type(capitals, &l) {
                Err(MediaError::InvalidArgument { field, reason }) => {
                    assert_eq!(field, "content_type");
                    assert!(reason.contains("lowercase"), "{reason}");
                }
                other => panic!("{capitals}: {other:?}"),
            }
        }
        for trick in [
            "image/png; charset=utf-8",
            "image/png ",
            " image/png",
            "image/png\r\nx-evil: 1",
            "image/png,text/html",
            "image/",
            "/png",
            "image",
            "",
            "image/png/x",
        ] {
            assert!(
                matches!(
                    check_content_type(trick, &l),
                    Err(MediaError::InvalidArgument { .. })
                ),
                "{trick:?}"
            );
        }
        for refused in ["text/html", "image/svg+xml", "application/octet-stream"] {
            assert!(
                matches!(
                    check_content_type(refused, &l),
                    Err(MediaError::TypeNotAllowed { .. })
                ),
                "{refused}"
            );
        }
    }

    #[test]
    fn size_between_one_byte_and_the_limit() {
        let l = limits();
        assert!(check_size(1, &l).is_ok());
        assert!(check_size(1000, &l).is_ok());
        assert!(matches!(
            check_size(0, &l),
            Err(MediaError::InvalidArgument { .. })
        ));
        assert!(matches!(
            check_size(1001, &l),
            Err(MediaError::TooLarge { .. })
        ));
    }

    #[test]
    fn display_names_are_inert() {
        assert_eq!(display_name("cat.png").unwrap(), "cat.png");
        assert_eq!(display_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(display_name("C:\\Users\\me\\cv.pdf").unwrap(), "cv.pdf");
        assert_eq!(display_name("a\0b\x07c\n.txt").unwrap(), "abc.txt");
        assert_eq!(display_name("evil\u{202e}gnp.exe").unwrap(), "evilgnp.exe");
        assert_eq!(
            display_name("  spaced name.png  ").unwrap(),
            "spaced name.png"
        );
        assert_eq!(display_name(".bashrc").unwrap(), ".bashrc");
        for empty in ["", "\0\x01", "..", "dir/", "  ", "a/.."] {
            assert!(display_name(empty).is_err(), "{empty:?}");
        }
        let long = "é".repeat(200);
        let name = display_name(&long).unwrap();
        assert!(name.len() <= MAX_FILENAME_BYTES);
        assert!(name.chars().all(|c| c == 'é'));
    }
}
