//! Text cut to the lengths the intake protocol accepts, as the agent spec says: keyword fields
//! to 1024 characters and long fields to `long_field_max_length` (10 000 by default), ending
//! in `…` when cut.

use std::borrow::Cow;

/// Keyword fields are cut to this many characters.
pub(crate) const KEYWORD_LIMIT: usize = 1024;
/// Long text fields (messages, statements, bodies) are cut to this many characters unless
/// `long_field_max_length` says otherwise.
pub(crate) const DEFAULT_LONG_LIMIT: usize = 10_000;

/// `text` cut to `limit` characters (at least 1), the last one replaced by `…` when cut.
#[inline]
pub(crate) fn truncate(text: &str, limit: usize) -> Cow<'_, str> {
    let limit = limit.max(1);
    // No more bytes than the limit, so no more characters: nothing to count (most fields).
    if text.len() <= limit {
        return Cow::Borrowed(text);
    }
    match text.char_indices().nth(limit) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let cut = text
                .char_indices()
                .nth(limit - 1)
                .map_or(text.len(), |(i, _)| i);
            let mut s = String::with_capacity(cut + 3);
            s.push_str(&text[..cut]);
            s.push('…');
            Cow::Owned(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_counts_characters_and_marks_the_cut() {
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abcd", 3), "ab…");
        let long = "é".repeat(2000);
        let cut = truncate(&long, KEYWORD_LIMIT);
        assert_eq!(cut.chars().count(), KEYWORD_LIMIT);
        assert!(cut.ends_with('…'));
    }
}
