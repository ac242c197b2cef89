//! A proxy between the agent and the APM Server, taken from the environment as curl and Go
//! read it: `https_proxy`/`HTTPS_PROXY` for an `https` server, `http_proxy`/`HTTP_PROXY` for
//! an `http` one, else `all_proxy`/`ALL_PROXY`; except for hosts that `no_proxy`/`NO_PROXY`
//! lists (names, domains, addresses and CIDR ranges, which ureq's own matching lacks), and
//! never for this machine (`localhost`, loopback addresses).
//!
//! An `http://` proxy gets plain requests with the absolute URL, and `https` ones through a
//! `CONNECT` tunnel with TLS to the APM Server inside it; a `socks5://` (`socks5h`, `socks4`,
//! `socks4a`) proxy carries both. Credentials in the proxy URL are presented as the protocol
//! has it (`Proxy-Authorization: Basic` for HTTP).

use std::net::IpAddr;

use super::endpoint::Endpoint;

/// How requests reach the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// An HTTP proxy: absolute URLs for plain requests, `CONNECT` for `https` ones.
    Http,
    /// A SOCKS proxy (ureq's).
    Socks(ureq::ProxyProtocol),
}

/// The proxy to use: where to connect, and the credentials to present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Proxy {
    pub(crate) protocol: Protocol,
    /// The proxy's host and port.
    pub(crate) endpoint: Endpoint,
    /// User and password from the URL, percent-decoded.
    pub(crate) credentials: Option<(String, String)>,
    /// `Proxy-Authorization` value for an HTTP proxy, when the URL has user information.
    pub(crate) authorization: Option<String>,
}

impl Proxy {
    /// The proxy for requests to `target`, from the variables `var` looks up; `Ok(None)` when
    /// none is set or `no_proxy` exempts the target.
    pub(crate) fn for_target(
        target: &Endpoint,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Proxy>, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        // Upper-case `HTTP_PROXY` is skipped in a CGI program, where a request's `Proxy`
        // header arrives as that variable ("httpoxy").
        let cgi = set("REQUEST_METHOD").is_some();
        let names: &[&str] = match (target.tls, cgi) {
            (true, _) => &["https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"],
            (false, false) => &["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"],
            (false, true) => &["http_proxy", "all_proxy", "ALL_PROXY"],
        };
        let Some((name, url)) = names.iter().find_map(|&name| Some((name, set(name)?))) else {
            return Ok(None);
        };
        // As Go's standard library does: a proxy cannot reach this machine's own services.
        let no_proxy = set("no_proxy").or_else(|| set("NO_PROXY"));
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
        // Messages name the variable and never show its credentials.
        let shown = redacted(&url);
        let scheme = url
            .split_once("://")
            .map_or("", |(s, _)| s)
            .to_ascii_lowercase();
        let protocol = match scheme.as_str() {
            "http" => Protocol::Http,
            "socks" | "socks5" => Protocol::Socks(ureq::ProxyProtocol::Socks5),
            "socks5h" => Protocol::Socks(ureq::ProxyProtocol::Socks5h),
            "socks4" => Protocol::Socks(ureq::ProxyProtocol::Socks4),
            "socks4a" => Protocol::Socks(ureq::ProxyProtocol::Socks4A),
            "https" => {
                return Err(format!(
                    "{name} {shown:?}: https:// proxies are not supported, http:// and \
                     socks5:// ones are (the tunnel to an https APM Server is encrypted end to \
                     end all the same)"
                ))
            }
            _ => {
                return Err(format!(
                    "{name} {shown:?}: the scheme must be http, socks5, socks5h, socks4 or \
                     socks4a"
                ))
            }
        };
        let default_port = match protocol {
            Protocol::Http => 80,
            Protocol::Socks(_) => 1080,
        };
        let endpoint = Endpoint::parse_with(&url, |_| Some((false, default_port)))
            .map_err(|why| format!("{name} {shown:?}: {why}"))?;
        let credentials = user_info(&url);
        let authorization = credentials
            .as_ref()
            .map(|(user, password)| format!("Basic {}", base64(&format!("{user}:{password}"))));
        Ok(Some(Proxy {
            protocol,
            endpoint,
            credentials,
            authorization,
        }))
    }

    /// The proxy as ureq's, for `CONNECT` tunnels and SOCKS.
    pub(crate) fn to_ureq(&self) -> Result<ureq::Proxy, String> {
        let protocol = match self.protocol {
            Protocol::Http => ureq::ProxyProtocol::Http,
            Protocol::Socks(p) => p,
        };
        let host = match self.endpoint.host.contains(':') {
            true => format!("[{}]", self.endpoint.host),
            false => self.endpoint.host.clone(),
        };
        let mut builder = ureq::Proxy::builder(protocol)
            .host(&host)
            .port(self.endpoint.port);
        if let Some((user, password)) = &self.credentials {
            builder = builder.username(user).password(password);
        }
        builder
            .build()
            .map_err(|e| format!("proxy {}: {e}", self.endpoint.host_port()))
    }
}

/// `localhost` or a loopback address.
fn local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `no_proxy` (comma-separated hosts, domains, IP addresses or CIDR ranges; `*` for
/// all) exempts `host`. A domain covers its subdomains (with or without a leading `.` or
/// `*.`); a port is ignored.
fn exempts(no_proxy: &str, host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split(',').map(str::trim).any(|entry| {
        if entry == "*" {
            return true;
        }
        if let Some(range) = cidr(entry) {
            return host_ip.is_some_and(|ip| range.contains(ip));
        }
        // `[v6]:port`, `v6`, `name:port`, `name`.
        let entry = match entry.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None if entry.parse::<IpAddr>().is_ok() => entry,
            None => entry.split(':').next().unwrap_or(""),
        };
        if let Ok(ip) = entry.parse::<IpAddr>() {
            return host_ip == Some(ip);
        }
        let domain = entry
            .trim_start_matches("*.")
            .trim_start_matches('.')
            .to_ascii_lowercase();
        host_ip.is_none()
            && !domain.is_empty()
            && (host == domain
                || host
                    .strip_suffix(&domain)
                    .is_some_and(|sub| sub.ends_with('.')))
    })
}

/// An address range (`10.0.0.0/8`, `fd00::/8`).
struct Cidr {
    network: IpAddr,
    bits: u32,
}

fn cidr(entry: &str) -> Option<Cidr> {
    let (addr, bits) = entry.split_once('/')?;
    let network: IpAddr = addr.trim_matches(['[', ']']).parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(Cidr { network, bits })
}

impl Cidr {
    fn contains(&self, ip: IpAddr) -> bool {
        let (network, addr, width) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(a)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), u128::from(a), 128),
            _ => return false,
        };
        let shift = width - self.bits;
        network.checked_shr(shift).unwrap_or(0) == addr.checked_shr(shift).unwrap_or(0)
    }
}

/// The user and password of a URL, percent-decoded, if it has user information (the password
/// may be empty).
fn user_info(url: &str) -> Option<(String, String)> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (creds, _) = authority.rsplit_once('@')?;
    let (user, password) = creds.split_once(':').unwrap_or((creds, ""));
    Some((percent_decoded(user), percent_decoded(password)))
}

/// `url` with its user information replaced by `***`.
fn redacted(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
        None => url.to_owned(),
    }
}

/// `%XX` escapes decoded (invalid ones kept as they are).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
        let check = |list: &str, exempt: &[&str], not: &[&str]| {
            for host in exempt {
                assert!(exempts(list, host), "{list:?} should exempt {host}");
            }
            for host in not {
                assert!(!exempts(list, host), "{list:?} should not exempt {host}");
            }
        };
        check(
            "localhost, .internal,example.com:8200, [::1], 10.0.0.7",
            &[
                "localhost",
                "apm.internal",
                "example.com",
                "apm.example.com",
                "::1",
                "10.0.0.7",
            ],
            &[
                "badexample.com",
                "internal.org",
                "10.0.0.70",
                "apm.example.org",
            ],
        );
        check("*", &["anything"], &[]);
        check("", &[], &["anything"]);
        // Addresses compare as addresses, ranges as ranges.
        check(
            "10.0.0.0/8, 2001:db8::5, fd00::/8, *.corp.example, 0.7",
            &[
                "10.1.2.3",
                "2001:db8::5",
                "fd12::1",
                "apm.corp.example",
                "corp.example",
            ],
            &[
                "11.0.0.1",
                "2001:db8::6",
                "fe80::1",
                "10.0.0.7.example",
                "corp.example.org",
            ],
        );
        // An address is not a domain suffix.
        check("0.7", &[], &["10.0.0.7"]);
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

        let with = |url: &str, vars: &[(&str, &str)]| {
            Proxy::for_target(&target(url), env(vars))
                .map(|p| p.map(|p| (p.endpoint.host_port(), p.authorization.unwrap_or_default())))
        };
        // Credentials are percent-decoded; a user alone has an empty password.
        assert_eq!(
            with(
                "http://apm",
                &[("http_proxy", "http://user:p%40ss@proxy:1")]
            ),
            Ok(Some(("proxy:1".into(), "Basic dXNlcjpwQHNz".into())))
        );
        assert_eq!(
            with("http://apm", &[("http_proxy", "http://bob@proxy:1")]),
            Ok(Some(("proxy:1".into(), "Basic Ym9iOg==".into())))
        );
        // ALL_PROXY when nothing more specific is set; HTTP_PROXY is skipped under CGI.
        assert_eq!(
            with("https://apm", &[("ALL_PROXY", "all:2")]),
            Ok(Some(("all:2".into(), String::new())))
        );
        assert_eq!(
            with(
                "http://apm",
                &[("HTTP_PROXY", "evil:6666"), ("REQUEST_METHOD", "GET")]
            ),
            Ok(None)
        );
        // An empty `no_proxy` does not hide `NO_PROXY`.
        assert_eq!(
            with(
                "http://apm.internal",
                &[
                    ("http_proxy", "p:1"),
                    ("no_proxy", ""),
                    ("NO_PROXY", ".internal")
                ]
            ),
            Ok(None)
        );
        // Errors name the variable and hide the credentials.
        let err = with(
            "http://apm",
            &[("HTTP_PROXY", "https://u:secret@proxy:443")],
        )
        .unwrap_err();
        assert!(
            err.starts_with("HTTP_PROXY") && !err.contains("secret"),
            "{err}"
        );
        let err = with(
            "http://apm",
            &[("http_proxy", "http://u:secret@proxy:port")],
        )
        .unwrap_err();
        assert!(
            err.starts_with("http_proxy") && !err.contains("secret"),
            "{err}"
        );

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
}
