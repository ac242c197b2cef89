//! Wildcard matching as the Elastic agent spec defines it for `disable_metrics`,
//! `sanitize_field_names` and `transaction_ignore_urls` (type `List<WildcardMatcher>` in
//! `specs/agents/sanitization.md`; rules agreed in elastic/apm#144; conformance cases in
//! `tests/agents/json-specs/wildcard_matcher_tests.json`):
//!
//! - `*` matches zero or more characters, anywhere in the pattern, any number of times;
//! - matching is case-insensitive unless the pattern starts with `(?-i)`;
//! - there is no other special character: `?` is literal, and there is no escape, so a literal
//!   `*` cannot be matched.
//!
//! Patterns are compiled once when configuration is read; [`WildcardMatcher::matches`] runs on
//! every request, header or metric name, so it never allocates.

/// Makes the rest of the pattern case-sensitive. Only recognised as a prefix, as in the
/// spec's "prepending a matcher with `(?-i)`"; anywhere else it is literal text.
const CASE_SENSITIVE_PREFIX: &str = "(?-i)";

/// The explicit form of the default. Not in the spec text, but the Java and .NET agents (where
/// the syntax comes from) strip it, so a pattern copied from their configuration means the same
/// here instead of silently never matching.
const CASE_INSENSITIVE_PREFIX: &str = "(?i)";

/// One compiled wildcard pattern.
///
/// The pattern is split at `*` once, up front, into its literal segments, so that matching is a
/// prefix check, a suffix check and a left-to-right search for the segments in between: no
/// backtracking, no allocation. Leftmost search is enough because `*` is the only operator: if a
/// segment can be placed at all after the previous one, placing it as early as possible leaves
/// the most room for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WildcardMatcher {
    /// The configured text, prefix included, for diagnostics.
    pattern: Box<str>,
    /// The non-empty literals between wildcards (`**` contributes nothing), in order.
    segments: Box<[Segment]>,
    /// The pattern does not start with `*`: the first segment must be a prefix.
    anchored_start: bool,
    /// The pattern does not end with `*`: the last segment must be a suffix.
    anchored_end: bool,
    case_sensitive: bool,
    /// The segments' bytes in all; with `exact`, the pattern has no `*`.
    literal_len: usize,
    exact: bool,
    /// Every segment is ASCII: against an ASCII text, lengths in bytes bound a match.
    all_ascii: bool,
}

/// A literal run of the pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    text: Box<str>,
    /// Lets a case-insensitive comparison against ASCII text use byte comparison.
    ascii: bool,
    /// `text` in ASCII lowercase (when `ascii`), compared as it is with a text lowercased once.
    lower: Box<[u8]>,
}

/// ASCII texts up to this many bytes are lowercased once, on the stack, for all the patterns
/// of a list (header names, metric names); longer ones are compared ignoring case as they go.
const LOWERED_ROOM: usize = 64;

/// A text as the patterns compare it.
#[derive(Debug, Clone, Copy)]
struct Hay<'a> {
    text: &'a str,
    /// `text` in ASCII lowercase, when it is ASCII and short enough to be lowercased once.
    lower: Option<&'a [u8]>,
}

impl<'a> Hay<'a> {
    /// Runs `f` on `text`, lowercased once when it is ASCII and short.
    fn with<R>(text: &'a str, f: impl FnOnce(Hay<'_>) -> R) -> R {
        let mut room = [0u8; LOWERED_ROOM];
        let lower = (text.len() <= LOWERED_ROOM && text.is_ascii()).then(|| {
            let lower = &mut room[..text.len()];
            lower.copy_from_slice(text.as_bytes());
            lower.make_ascii_lowercase();
            &*lower
        });
        f(Hay { text, lower })
    }

    /// `text[lo..hi]`, as a hay.
    fn get(self, lo: usize, hi: usize) -> Option<Hay<'a>> {
        Some(Hay {
            text: self.text.get(lo..hi)?,
            lower: match self.lower {
                Some(lower) => Some(lower.get(lo..hi)?),
                None => None,
            },
        })
    }

    fn len(self) -> usize {
        self.text.len()
    }
}

impl WildcardMatcher {
    /// Compiles `pattern`. Every string is a valid pattern, so this cannot fail.
    pub(crate) fn new(pattern: &str) -> Self {
        let (body, case_sensitive) = if let Some(rest) = pattern.strip_prefix(CASE_SENSITIVE_PREFIX)
        {
            (rest, true)
        } else if let Some(rest) = pattern.strip_prefix(CASE_INSENSITIVE_PREFIX) {
            (rest, false)
        } else {
            (pattern, false)
        };
        let segments: Box<[Segment]> = body
            .split('*')
            .filter(|s| !s.is_empty())
            .map(|s| Segment {
                text: s.into(),
                ascii: s.is_ascii(),
                lower: s.to_ascii_lowercase().into_bytes().into(),
            })
            .collect();
        WildcardMatcher {
            pattern: pattern.into(),
            literal_len: segments.iter().map(|s| s.text.len()).sum(),
            exact: !body.contains('*'),
            all_ascii: segments.iter().all(|s| s.ascii),
            segments,
            anchored_start: !body.starts_with('*'),
            anchored_end: !body.ends_with('*'),
            case_sensitive,
        }
    }

    /// Whether the whole of `text` matches the pattern. Allocation-free.
    #[cfg(any(test, apm_server))]
    pub(crate) fn matches(&self, text: &str) -> bool {
        Hay::with(text, |hay| self.matches_hay(hay))
    }

    fn matches_hay(&self, hay: Hay<'_>) -> bool {
        let cmp = Cmp {
            case_sensitive: self.case_sensitive,
            text_ascii: !self.case_sensitive && (hay.lower.is_some() || hay.text.is_ascii()),
        };
        // Where characters compare byte for byte, the text's length rules most names out
        // (a non-ASCII character may match one of another length without case).
        if self.case_sensitive || (self.all_ascii && cmp.text_ascii) {
            let n = hay.len();
            if n < self.literal_len || (self.exact && n != self.literal_len) {
                return false;
            }
        }
        self.match_segments(cmp, hay).is_some()
    }

    /// `Some(())` on a match; `Option` only so that `?` can say "no match" at each step.
    fn match_segments(&self, cmp: Cmp, text: Hay<'_>) -> Option<()> {
        let mut segments = &self.segments[..];
        if segments.is_empty() {
            // "" matches only ""; "*", "**", ... match everything.
            return (!(self.anchored_start || self.anchored_end) || text.len() == 0).then_some(());
        }
        // `text[lo..hi]` is what the remaining segments may still consume.
        let (mut lo, mut hi) = (0, text.len());
        if self.anchored_start {
            let (first, rest) = segments.split_first()?;
            if rest.is_empty() && self.anchored_end {
                // No wildcard at all: the whole text must equal the pattern.
                return (cmp.prefix_len(text, first)? == text.len()).then_some(());
            }
            lo = cmp.prefix_len(text, first)?;
            segments = rest;
        }
        if self.anchored_end {
            let (last, rest) = segments.split_last()?;
            // Searched only after the prefix, so that the two cannot overlap ("ab*ba" vs "aba").
            hi = lo + cmp.suffix_start(text.get(lo, hi)?, last)?;
            segments = rest;
        }
        for segment in segments {
            lo += cmp.find_end(text.get(lo, hi)?, segment)?;
        }
        Some(())
    }
}

/// How characters compare for one `matches` call.
#[derive(Debug, Clone, Copy)]
struct Cmp {
    case_sensitive: bool,
    /// The text is ASCII, so an ASCII segment can be compared byte-wise.
    text_ascii: bool,
}

impl Cmp {
    /// The byte length of the start of `text` that equals `seg`, if it does.
    ///
    /// Case-insensitive comparison goes character by character, so the matched part of `text`
    /// may differ in byte length from `seg` (the Kelvin sign `K` is three bytes, `k` one).
    fn prefix_len(self, hay: Hay<'_>, seg: &Segment) -> Option<usize> {
        let text = hay.text;
        if self.case_sensitive {
            return text.starts_with(&*seg.text).then_some(seg.text.len());
        }
        if let (Some(lower), true) = (hay.lower, seg.ascii) {
            return lower.starts_with(&seg.lower).then_some(seg.lower.len());
        }
        if self.text_ascii && seg.ascii {
            let n = seg.text.len();
            let head = text.as_bytes().get(..n)?;
            return head.eq_ignore_ascii_case(seg.text.as_bytes()).then_some(n);
        }
        let mut chars = text.char_indices();
        for p in seg.text.chars() {
            let (_, t) = chars.next()?;
            if !chars_eq_ignore_case(p, t) {
                return None;
            }
        }
        Some(chars.next().map_or(text.len(), |(i, _)| i))
    }

    /// The byte offset in `text` where a suffix equal to `seg` starts, if there is one.
    fn suffix_start(self, hay: Hay<'_>, seg: &Segment) -> Option<usize> {
        let text = hay.text;
        if self.case_sensitive {
            return text
                .ends_with(&*seg.text)
                .then(|| text.len() - seg.text.len());
        }
        if let (Some(lower), true) = (hay.lower, seg.ascii) {
            let start = lower.len().checked_sub(seg.lower.len())?;
            return lower.ends_with(&seg.lower).then_some(start);
        }
        if self.text_ascii && seg.ascii {
            let start = text.len().checked_sub(seg.text.len())?;
            let tail = text.as_bytes().get(start..)?;
            return tail
                .eq_ignore_ascii_case(seg.text.as_bytes())
                .then_some(start);
        }
        let mut chars = text.char_indices().rev();
        let mut start = text.len();
        for p in seg.text.chars().rev() {
            let (i, t) = chars.next()?;
            if !chars_eq_ignore_case(p, t) {
                return None;
            }
            start = i;
        }
        Some(start)
    }

    /// The byte offset just past the leftmost occurrence of `seg` in `text`, if any.
    fn find_end(self, hay: Hay<'_>, seg: &Segment) -> Option<usize> {
        let text = hay.text;
        if self.case_sensitive {
            return text.find(&*seg.text).map(|i| i + seg.text.len());
        }
        if let (Some(lower), true) = (hay.lower, seg.ascii) {
            return find_end_bytes(lower, &seg.lower);
        }
        if self.text_ascii && seg.ascii {
            let n = seg.text.len();
            return text
                .as_bytes()
                .windows(n)
                .position(|w| w.eq_ignore_ascii_case(seg.text.as_bytes()))
                .map(|i| i + n);
        }
        text.char_indices().find_map(|(i, _)| {
            let rest = hay.get(i, text.len())?;
            self.prefix_len(rest, seg).map(|n| i + n)
        })
    }
}

/// The end of the leftmost `needle` (not empty) in `hay`: candidates found by their first
/// byte, the rest compared only there (a comparison at every position was most of what
/// matching a header name against the default list cost).
fn find_end_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let last = hay.len().checked_sub(needle.len())?;
    let mut from = 0;
    while from <= last {
        let at = from + hay[from..=last].iter().position(|&b| b == first)?;
        if hay[at + 1..at + needle.len()] == *rest {
            return Some(at + needle.len());
        }
        from = at + 1;
    }
    None
}

/// Case-insensitive equality of two characters, with the semantics of Java's
/// `String.regionMatches(ignoreCase = true)` that the reference agent uses: equal, or equal
/// after upper-casing, or equal after lower-casing. Both directions are needed: `ſ` (long s)
/// and `s` only agree upper-cased, `K` (Kelvin sign) and `k` only lower-cased. Locale-free, and
/// the case-mapping iterators do not allocate.
fn chars_eq_ignore_case(a: char, b: char) -> bool {
    if a == b {
        return true;
    }
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(&b);
    }
    a.to_uppercase().eq(b.to_uppercase()) || a.to_lowercase().eq(b.to_lowercase())
}

/// A configured list of patterns, such as `sanitize_field_names`: a text is selected when any
/// of them matches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct WildcardList(Vec<WildcardMatcher>);

impl WildcardList {
    /// Compiles every item. Items are taken as given: the config layer has already split the
    /// comma-separated value, trimmed the items and dropped empty ones (`parse::parse_list`).
    pub(crate) fn parse(list: &[String]) -> Self {
        WildcardList(list.iter().map(|p| WildcardMatcher::new(p)).collect())
    }

    /// Whether any pattern matches `text`; `false` for an empty list. Allocation-free.
    pub(crate) fn any_match(&self, text: &str) -> bool {
        if self.0.is_empty() {
            return false;
        }
        Hay::with(text, |hay| self.0.iter().any(|m| m.matches_hay(hay)))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Hand-written cases for what the fixture does not cover, then the cross-agent fixture, every
/// case. The fixture needs serde_json (the `enable` feature).
#[cfg(all(test, feature = "enable"))]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        WildcardMatcher::new(pattern).matches(text)
    }

    #[test]
    fn empty_pattern_matches_only_empty_text() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(m("(?-i)", ""));
        assert!(!m("(?-i)", "a"));
    }

    #[test]
    fn only_wildcards_match_everything() {
        for p in ["*", "**", "***", "(?-i)*", "(?i)**"] {
            for t in ["", "a", "ÄÖ", "/foo/bar"] {
                assert!(m(p, t), "{p:?} vs {t:?}");
            }
        }
    }

    #[test]
    fn prefix_and_suffix_do_not_overlap() {
        assert!(!m("ab*ba", "aba"));
        assert!(m("ab*ba", "abba"));
        assert!(m("ab*ba", "abxba"));
        assert!(!m("a*a", "a"));
        assert!(m("a*a", "aa"));
        assert!(!m("(?-i)ab*ba", "aba"));
        assert!(!m("äb*bä", "äbä"));
    }

    #[test]
    fn middle_segments_in_order() {
        assert!(m("*a*b*c*", "xaybzc"));
        assert!(!m("*a*b*c*", "cba"));
        assert!(m("a*b*c", "abc"));
        assert!(!m("a*b*c", "acb"));
        assert!(m("/foo/*/bar/*/baz", "/foo/1/bar/2/bar/3/baz"));
    }

    #[test]
    fn case_sensitive_prefix_only_at_start() {
        assert!(m("(?-i)Foo*", "Foobar"));
        assert!(!m("(?-i)Foo*", "foobar"));
        // Not at the start: literal text, and matching stays case-insensitive.
        assert!(m("x(?-i)y", "X(?-I)Y"));
        assert!(!m("x(?-i)y", "xy"));
        // The explicit default prefix is stripped.
        assert!(m("(?i)FOO", "foo"));
        assert!(!m("(?i)FOO", "(?i)foo"));
    }

    #[test]
    fn no_other_special_characters() {
        assert!(m("a?c", "A?C"));
        assert!(!m("a?c", "abc"));
        assert!(m("[ab]", "[AB]"));
        assert!(!m("[ab]", "a"));
        assert!(m("a.c", "a.c"));
        assert!(!m("a.c", "abc"));
        assert!(m("\\*", "\\anything"));
    }

    #[test]
    fn unicode_case_insensitive() {
        assert!(m("straße*", "STRAßE-1"));
        assert!(m("*ÄÖÜ", "xäöü"));
        assert!(!m("(?-i)*ÄÖÜ", "xäöü"));
        assert!(m("*σ*", "xΣy"));
        // Only equal after upper-casing / after lower-casing.
        assert!(m("s", "ſ"));
        assert!(m("k", "\u{212A}"));
        assert!(m("*k", "x\u{212A}"));
        assert!(m("*k*", "x\u{212A}y"));
        assert!(m("\u{212A}*", "kelvin"));
        // ASCII pattern, non-ASCII text of different byte length.
        assert!(m("a*k*z", "aé\u{212A}éz"));
        assert!(!m("a*k*z", "aé\u{212A}é"));
        // No full case folding: ß is not "ss".
        assert!(!m("ss", "ß"));
        // Non-ASCII on a char boundary, never splitting a character.
        assert!(!m("*e", "xe\u{301}"));
        assert!(m("*e*", "xe\u{301}"));
        assert!(m("*\u{301}", "e\u{301}"));
    }

    /// Obviously-correct backtracking reference, for the exhaustive comparison below.
    fn reference(pattern: &[char], text: &[char], eq: &dyn Fn(char, char) -> bool) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|i| reference(rest, &text[i..], eq)),
            Some((&p, rest)) => text
                .split_first()
                .is_some_and(|(&t, text)| eq(p, t) && reference(rest, text, eq)),
        }
    }

    /// Every word up to `max` characters over `alphabet`.
    fn words(alphabet: &[char], max: usize) -> Vec<Vec<char>> {
        let mut all = vec![Vec::new()];
        let mut last = vec![Vec::new()];
        for _ in 0..max {
            let next: Vec<Vec<char>> = last
                .iter()
                .flat_map(|w| {
                    alphabet.iter().map(move |&c| {
                        let mut w = w.clone();
                        w.push(c);
                        w
                    })
                })
                .collect();
            all.extend(next.iter().cloned());
            last = next;
        }
        all
    }

    #[test]
    fn exhaustive_against_reference() {
        let patterns = words(&['a', 'B', '\u{212A}', '*'], 5);
        let texts = words(&['A', 'b', 'k', 'é'], 5);
        for pattern in &patterns {
            let p: String = pattern.iter().collect();
            let insensitive = WildcardMatcher::new(&p);
            let sensitive = WildcardMatcher::new(&format!("(?-i){p}"));
            for text in &texts {
                let t: String = text.iter().collect();
                let want = reference(pattern, text, &chars_eq_ignore_case);
                assert_eq!(insensitive.matches(&t), want, "{p:?} vs {t:?}");
                let want = reference(pattern, text, &|a, b| a == b);
                assert_eq!(sensitive.matches(&t), want, "(?-i){p:?} vs {t:?}");
            }
        }
    }

    #[test]
    fn list_any_match() {
        let list = WildcardList::parse(&["password".into(), "*token*".into(), "(?-i)X-*".into()]);
        assert!(!list.is_empty());
        assert!(list.any_match("PASSWORD"));
        assert!(list.any_match("x-auth-token"));
        assert!(list.any_match("X-Custom"));
        assert!(!list.any_match("x-custom"));
        assert!(!list.any_match("passwords"));
        assert!(!WildcardList::parse(&[]).any_match(""));
        assert!(WildcardList::default().is_empty());
    }

    const FIXTURE: &str = "agent-json-specs/wildcard_matcher_tests.json";

    /// Layout: `{ test name: { pattern: { text: expected } } }`.
    #[test]
    fn wildcard_matcher_fixture() {
        let Some(text) = crate::util::spec_fixture::read(FIXTURE) else {
            return;
        };
        let groups: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).expect("fixture is a JSON object");
        let mut count = 0;
        let mut failures = Vec::new();
        for (group, patterns) in &groups {
            let patterns = patterns.as_object().expect("group is an object");
            for (pattern, texts) in patterns {
                let matcher = WildcardMatcher::new(pattern);
                let texts = texts.as_object().expect("pattern maps to an object");
                for (text, want) in texts {
                    let want = want.as_bool().expect("expectation is a boolean");
                    count += 1;
                    let got = matcher.matches(text);
                    if got != want {
                        failures.push(format!("{group}: {pattern:?} vs {text:?}: got {got}"));
                    }
                    // A one-item list behaves as its matcher.
                    let list = WildcardList::parse(std::slice::from_ref(pattern));
                    assert_eq!(list.any_match(text), got, "{group}: list of {pattern:?}");
                }
            }
        }
        assert_eq!(
            count, 86,
            "the fixture's case count changed: pin the new one"
        );
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            count,
            failures.join("\n")
        );
        eprintln!("wildcard_matcher_tests: {count} cases passed");
    }
}
