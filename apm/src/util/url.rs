//! What the agent reads of a URL on its own: `host:port`, for a span's service target and
//! destination (transport thread) and for the calls past the span limit that
//! `dropped_spans_stats` counts per destination (application thread).

/// `host:port` of an URL, with the scheme's default port when none is written.
pub(crate) fn host_port(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => 443,
        _ => 80,
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        (format!("[{h}]"), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p.parse().ok()),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port.unwrap_or(default)))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
