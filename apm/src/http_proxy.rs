//! An HTTP proxy between the agent and the APM Server, taken from the environment as curl and
//! the other Elastic agents read it: `https_proxy`/`HTTPS_PROXY` for an `https` server,
//! `http_proxy`/`HTTP_PROXY` for an `http` one, except for hosts that `no_proxy`/`NO_PROXY`
//! lists, and never for this machine (`localhost`, loopback addresses). Plain requests go to
//! the proxy with the absolute URL; `https` ones through a `CONNECT` tunnel, with TLS to the
//! APM Server inside it. Credentials in the proxy URL are sent as `Proxy-Authorization:
//! Basic`.

use std::io::{self, Read, Write};

use crate::http_client::Endpoint;

/// The proxy to use: where to connect, and the credentials to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    /// Parsed from the proxy URL (always `http://`).
    pub(crate) endpoint: Endpoint,
    /// `Proxy-Authorization` value, when the URL has user information.
    pub(crate) authorization: Option<String>,
}

impl Proxy {
    /// The proxy for requests to `target`, from the variables `var` looks up; `Ok(None)` when
    /// none is set or `no_proxy` exempts the target.
    pub(crate) fn for_target(
        target: &Endpoint,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, String> {
        let names: [&str; 2] = if target.tls {
            ["https_proxy", "HTTPS_PROXY"]
        } else {
            ["http_proxy", "HTTP_PROXY"]
        };
        let Some(url) = names
            .iter()
            .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
        else {
            return Ok(None);
        };
        // As Go's standard library does: a proxy cannot reach this machine's own services.
        let no_proxy = var("no_proxy").or_else(|| var("NO_PROXY"));
        if local(target.host()) || no_proxy.is_some_and(|list| exempts(&list, target.host())) {
            return Ok(None);
        }
        let url = url.trim();
        // `host:port` without a scheme is common in these variables.
        let url = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let endpoint = Endpoint::parse(&url).map_err(|why| format!("proxy: {why}"))?;
        if endpoint.tls {
            return Err(format!(
                "proxy {url:?}: only http:// proxies are supported (the tunnel to an https \
                 APM Server is encrypted end to end all the same)"
            ));
        }
        let authorization = user_info(&url).map(|creds| format!("Basic {}", base64(creds)));
        Ok(Some(Proxy {
            endpoint,
            authorization,
        }))
    }

    /// Opens a tunnel to `target` (`CONNECT host:port`) on `stream`, a connection to the
    /// proxy; on success the stream carries the APM Server's bytes.
    pub(crate) fn tunnel(
        &self,
        stream: &mut (impl Read + Write),
        target: &Endpoint,
    ) -> io::Result<()> {
        let to = target.host_port();
        let mut head = format!("CONNECT {to} HTTP/1.1\r\nHost: {to}\r\n");
        if let Some(auth) = &self.authorization {
            head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes())?;
        stream.flush()?;
        // Byte by byte up to the blank line: whatever follows it is the APM Server's.
        let mut answer = Vec::with_capacity(128);
        let mut byte = [0u8; 1];
        while !answer.ends_with(b"\r\n\r\n") && !answer.ends_with(b"\n\n") {
            if answer.len() >= 8 * 1024 || stream.read(&mut byte)? == 0 {
                return Err(io::Error::other(
                    "the proxy closed or sent no answer to CONNECT",
                ));
            }
            answer.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(&answer);
        let status_line = status_line.lines().next().unwrap_or("");
        let status = status_line.split_whitespace().nth(1).unwrap_or("");
        if status.starts_with('2') && status_line.starts_with("HTTP/1.") {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "the proxy refused the tunnel to {to}: {status_line}"
            )))
        }
    }
}

/// `localhost` or a loopback address.
fn local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `no_proxy` (comma-separated hosts or domains, `*` for all) exempts `host`. A
/// domain covers its subdomains, with or without a leading dot; a port is ignored.
fn exempts(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        let entry = match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => entry.split(':').next().unwrap_or(""),
        };
        let domain = entry.trim_start_matches('.').to_ascii_lowercase();
        !domain.is_empty()
            && (host == domain
                || host
                    .strip_suffix(&domain)
                    .is_some_and(|sub| sub.ends_with('.')))
    })
}

/// The `user:password` of a URL, if it has one.
fn user_info(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.rsplit_once('@').map(|(creds, _)| creds)
}

/// Standard base64 with padding (RFC 4648), for Basic credentials.
fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(text.len().div_ceil(3) * 4);
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Endpoint {
        Endpoint::parse(url).unwrap()
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn base64_follows_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("user:p@ss", "dXNlcjpwQHNz"),
        ] {
            assert_eq!(base64(plain), encoded, "{plain:?}");
        }
    }

    #[test]
    fn no_proxy_exempts_hosts_and_their_subdomains() {
        let list = "localhost, .internal,example.com:8200, [::1], 10.0.0.7";
        for host in [
            "localhost",
            "apm.internal",
            "example.com",
            "apm.example.com",
            "::1",
            "10.0.0.7",
        ] {
            assert!(exempts(list, host), "{host}");
        }
        for host in [
            "badexample.com",
            "internal.org",
            "10.0.0.70",
            "apm.example.org",
        ] {
            assert!(!exempts(list, host), "{host}");
        }
        assert!(exempts("*", "anything"));
        assert!(!exempts("", "anything"));
    }

    #[test]
    fn the_proxy_comes_from_the_variable_for_the_scheme() {
        let vars = [
            ("HTTP_PROXY", "http://plain-proxy:3128"),
            ("https_proxy", "user:p@ss@tls-proxy:8080"),
            ("HTTPS_PROXY", "http://ignored:1"),
            ("NO_PROXY", "skip.example.com"),
        ];
        let plain = Proxy::for_target(&target("http://apm:8200"), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(plain.endpoint.host_port(), "plain-proxy:3128");
        assert_eq!(plain.authorization, None);

        let tls = Proxy::for_target(&target("https://apm.cloud:443"), env(&vars))
            .unwrap()
            .unwrap();
        assert_eq!(tls.endpoint.host_port(), "tls-proxy:8080");
        assert_eq!(tls.authorization.as_deref(), Some("Basic dXNlcjpwQHNz"));

        let exempt = Proxy::for_target(&target("http://skip.example.com"), env(&vars));
        assert_eq!(exempt, Ok(None));
        for local in [
            "http://localhost:8200",
            "http://127.0.0.2:8200",
            "https://[::1]:8200",
        ] {
            assert_eq!(
                Proxy::for_target(&target(local), env(&vars)),
                Ok(None),
                "{local}"
            );
        }
        assert_eq!(Proxy::for_target(&target("http://apm"), env(&[])), Ok(None));
        assert!(Proxy::for_target(
            &target("http://apm"),
            env(&[("HTTP_PROXY", "https://proxy:443")])
        )
        .is_err());
    }

    /// A connection that answers CONNECT with `answer` and records what was written.
    struct FakeProxy {
        answer: io::Cursor<Vec<u8>>,
        written: Vec<u8>,
    }
    impl Read for FakeProxy {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.answer.read(buf)
        }
    }
    impl Write for FakeProxy {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn tunnels_are_asked_for_and_refusals_reported() {
        let proxy = Proxy::for_target(
            &target("https://apm.cloud"),
            env(&[("HTTPS_PROXY", "http://u:p@proxy:3128")]),
        )
        .unwrap()
        .unwrap();
        let mut ok = FakeProxy {
            answer: io::Cursor::new(b"HTTP/1.1 200 Connection established\r\n\r\nTLS".to_vec()),
            written: Vec::new(),
        };
        proxy.tunnel(&mut ok, &target("https://apm.cloud")).unwrap();
        assert_eq!(
            String::from_utf8(ok.written).unwrap(),
            "CONNECT apm.cloud:443 HTTP/1.1\r\nHost: apm.cloud:443\r\n\
             Proxy-Authorization: Basic dTpw\r\n\r\n"
        );
        // The bytes after the answer are left for TLS.
        let mut rest = String::new();
        ok.answer.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "TLS");

        let mut refused = FakeProxy {
            answer: io::Cursor::new(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n".to_vec()),
            written: Vec::new(),
        };
        let err = proxy
            .tunnel(&mut refused, &target("https://apm.cloud"))
            .unwrap_err();
        assert!(err.to_string().contains("407"), "{err}");
    }
}
