//! What the agent reads of a URL on its own: `host:port`, for a span's service target and
//! destination (transport thread) and for the calls past the span limit that
//! `dropped_spans_stats` counts per destination (application thread).

/// `host:port` of an URL, with the scheme's default port when none is written; none for a URL
/// without a scheme.
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = split_scheme(url)?;
    host_port_in(scheme, &rest[..authority_len(rest)]).map(|(host, port)| (host.to_owned(), port))
}

/// The scheme and what follows its `://`, when the URL starts with one (RFC 3986: a letter,
/// then letters, digits, `+`, `-` or `.`): a path whose query holds a URL has none.
pub(crate) fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let end = url.bytes().position(|b| b == b':')?;
    let scheme = &url[..end];
    let mut chars = scheme.bytes();
    let valid = chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = url[end..].strip_prefix("://")?;
    valid.then_some((scheme, rest))
}

/// How long the authority (`user@host:port`) is at the start of what follows `://`: up to
/// the path, the query or the fragment.
pub(crate) fn authority_len(rest: &str) -> usize {
    rest.bytes()
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len())
}

/// `host:port` of an authority under `scheme`, the host borrowed from it (an IPv6 address
/// with its brackets), with the scheme's default port when none is written.
pub(crate) fn host_port_in<'a>(scheme: &str, authority: &'a str) -> Option<(&'a str, u16)> {
    let (host, port) = host_and_written_port(authority)?;
    Some((host, port.unwrap_or_else(|| default_port(scheme))))
}

/// The host of an authority (without its credentials; an IPv6 address with its brackets) and
/// the port written after it, if any (and valid).
pub(crate) fn host_and_written_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let authority = split_at_last(authority, b'@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        (&authority[..h.len() + 2], port)
    } else {
        match split_at_last(authority, b':') {
            Some((h, p)) => (h, p.parse().ok()),
            None => (authority, None),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

/// The port a URL of `scheme` means when it writes none.
pub(crate) fn default_port(scheme: &str) -> u16 {
    if scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("wss") {
        443
    } else {
        80
    }
}

/// `text` split around its last `b` (an ASCII byte), as `rsplit_once` splits it: a loop over
/// the bytes, without the string searcher's setup (hosts and ports are a few bytes long, and
/// the searcher's setup cost more than their search).
#[inline]
pub(crate) fn split_at_last(text: &str, b: u8) -> Option<(&str, &str)> {
    debug_assert!(b.is_ascii());
    let at = text.bytes().rposition(|c| c == b)?;
    // An ASCII byte is a whole character: both sides are on character boundaries.
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// `text` split around its first `b` (an ASCII byte), as `split_once` splits it (see
/// [`split_at_last`]).
#[inline]
pub(crate) fn split_at_first(text: &str, b: u8) -> Option<(&str, &str)> {
    debug_assert!(b.is_ascii());
    let at = text.bytes().position(|c| c == b)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_at_a_byte_is_splitting_at_its_character() {
        for text in [
            "",
            ":",
            "a:b",
            "::",
            "user:pw@host:80",
            "é:ü@ĥ:1",
            "[::1]:8080",
            "no-sep",
            "a@",
            "@a",
        ] {
            for (b, c) in [(b':', ':'), (b'@', '@'), (b'?', '?')] {
                assert_eq!(split_at_last(text, b), text.rsplit_once(c), "{text:?} {c}");
                assert_eq!(split_at_first(text, b), text.split_once(c), "{text:?} {c}");
            }
        }
    }

    #[test]
    fn a_scheme_is_split_off_only_where_the_url_starts_with_one() {
        assert_eq!(split_scheme("http://a.b/x"), Some(("http", "a.b/x")));
        assert_eq!(split_scheme("svn+ssh://h"), Some(("svn+ssh", "h")));
        assert_eq!(
            split_scheme("https://u:p@a.b:1/x?q=http://c"),
            Some(("https", "u:p@a.b:1/x?q=http://c"))
        );
        for url in [
            "/path?next=http://c.d/",
            "a:b:c://d",
            "1http://d",
            "mailto:x@y",
            "no-scheme",
            "://nothing-before",
            "",
        ] {
            assert_eq!(split_scheme(url), None, "{url:?}");
        }
    }

    #[test]
    fn urls_give_host_and_port_without_their_credentials() {
        assert_eq!(host_port("http://a.b:9200/x"), Some(("a.b".into(), 9200)));
        assert_eq!(host_port("https://a.b/x"), Some(("a.b".into(), 443)));
        assert_eq!(host_port("http://u:p@a.b?q"), Some(("a.b".into(), 80)));
        assert_eq!(
            host_port("http://[::1]:8080/"),
            Some(("[::1]".into(), 8080))
        );
        assert_eq!(host_port("no-scheme/path"), None);
        assert_eq!(host_port("http:///path"), None);
        assert_eq!(host_port("HTTPS://a.b/x"), Some(("a.b".into(), 443)));
        assert_eq!(host_port("wss://a.b"), Some(("a.b".into(), 443)));
        assert_eq!(host_port("http://[::1/"), None, "an unclosed bracket");
    }
}
