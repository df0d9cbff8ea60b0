//! Route hints written as SQL comments: `/* foobar:primary */`,
//! `/* foobar:replica */`, or the same text after `-- ` or `#`.

use super::Route;

const PREFIX: &[u8] = b"foobar:";

/// The route a comment asks for, if it is a hint. The comment's content
/// (without its markers) must start with `foobar:primary` or
/// `foobar:replica`, case-insensitively, after optional whitespace; anything
/// after the route word that is not part of a word is ignored, so
/// `/* foobar:primary because of X */` is a hint too.
pub(crate) fn parse(comment: &[u8]) -> Option<Route> {
    let text = comment.trim_ascii_start();
    let prefix = text.get(..PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(PREFIX) {
        return None;
    }
    let rest = &text[PREFIX.len()..];
    let end = rest
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b'_'))
        .unwrap_or(rest.len());
    let word = &rest[..end];
    if word.eq_ignore_ascii_case(b"primary") {
        Some(Route::Primary)
    } else if word.eq_ignore_ascii_case(b"replica") {
        Some(Route::Replica)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_syntax() {
        assert_eq!(parse(b" foobar:primary "), Some(Route::Primary));
        assert_eq!(parse(b"FOOBAR:Replica"), Some(Route::Replica));
        assert_eq!(
            parse(b"\n\tfoobar:replica -- reporting"),
            Some(Route::Replica)
        );
        assert_eq!(parse(b"foobar:primaryx"), None);
        assert_eq!(parse(b"foobar: primary"), None);
        assert_eq!(parse(b"master"), None);
        assert_eq!(parse(b"see foobar:primary"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"foobar"), None);
    }
}
