//! Where requests to the APM Server go: the parts of `server_url` a request needs.

/// The parts of `server_url` a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) tls: bool,
    /// Without brackets for IPv6, as the resolver wants it.
    pub(super) host: String,
    pub(super) port: u16,
    /// `Host` header value: brackets for IPv6, the port unless it is the scheme's default.
    pub(super) authority: String,
    /// The URL's path without a trailing `/` (`""` or e.g. `/apm`), prefixed to every request.
    pub(super) base_path: String,
}

impl Endpoint {
    /// Parses an `http://` or `https://` URL; user information, query and fragment are
    /// ignored.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, String> {
        Endpoint::parse_with(url, |scheme| match scheme {
            "http" => Some((false, 80)),
            "https" => Some((true, 443)),
            _ => None,
        })
        .map_err(|why| format!("server_url {url:?}: {why}"))
    }

    /// Parses a URL whose scheme `scheme` (lower case) accepts, giving whether it is TLS and
    /// its default port.
    pub(crate) fn parse_with(
        url: &str,
        scheme: impl Fn(&str) -> Option<(bool, u16)>,
    ) -> Result<Endpoint, String> {
        let bad = |why: &str| why.to_owned();
        // They would end up in the request line and the `Host` header.
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace or control characters"));
        }
        let (name, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let (tls, default_port) = scheme(&name.to_ascii_lowercase())
            .ok_or_else(|| bad("the scheme must be http or https"))?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, after) = rest.split_at(end);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (host, tail) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            if !tail.is_empty() && !tail.starts_with(':') {
                return Err(bad("unexpected text after the IPv6 address"));
            }
            (host, tail.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the host is missing"));
        }
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let authority = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        let path = after.split(['?', '#']).next().unwrap_or("");
        Ok(Endpoint {
            tls,
            host: host.to_owned(),
            port,
            authority,
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The host, without brackets for IPv6.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// `host:port` (brackets for IPv6), as `CONNECT` names a server.
    pub(crate) fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host is this machine by name (`localhost`, `127.0.0.1`, `::1`), as the
    /// spec's rule for compression has it.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self.host == "127.0.0.1"
            || self.host == "::1"
    }
}
