//! A transaction's `context.request` and `context.response`: headers, cookies and form fields
//! sanitised with `sanitize_field_names`, bodies sent only where `capture_body` allows; and the
//! `context.message` of a messaging transaction, its headers sanitised the same way.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::fields::{Kw, LabelsView};
use super::json;
use crate::types::messaging::Message;
use crate::types::record::TransactionRecord;
use crate::types::user::User;
use crate::types::web;
use crate::util::text::{truncate, DEFAULT_LONG_LIMIT};
use crate::util::url::{
    authority_len, default_port, host_and_written_port, split_at_first, split_scheme,
};
use crate::util::wildcard::WildcardList;

/// How request and response details and long text fields are written: live configuration,
/// compiled on the transport thread.
#[derive(Debug)]
pub(crate) struct Policy {
    sanitize: WildcardList,
    /// Names matched against `sanitize` lately, with the answer: a service's requests carry
    /// the same few header names, and matching one against the default list costs about
    /// 100 ns (`benches/transport.rs`), looking it up here a fraction of that. Emptied when
    /// it holds [`REMEMBERED_NAMES`], so that names made up per request cannot grow it.
    redacted: RefCell<HashMap<Box<str>, bool>>,
    /// The answers for the names of the last headers written, by their position in each kind
    /// of list: a service's requests mostly carry the same names in the same order, found
    /// here with one comparison each, where looking a name up in `redacted` (SipHash) cost
    /// about 270 instructions (`benches/transport.rs`'s web transactions).
    by_position: [RefCell<NamedAnswers>; 3],
    pub(crate) capture_headers: bool,
    /// `capture_body` allows bodies on transactions (`transactions`, `all`) / on errors
    /// (`errors`, `all`).
    pub(crate) body_on_transactions: bool,
    pub(crate) body_on_errors: bool,
    /// `long_field_max_length`: error messages, database statements and bodies are cut to
    /// this many characters.
    pub(crate) long_field_max_length: usize,
}

impl Default for Policy {
    /// Nothing sanitised, no headers or bodies, long fields cut at the default length.
    fn default() -> Self {
        Policy {
            sanitize: WildcardList::default(),
            redacted: RefCell::default(),
            by_position: Default::default(),
            capture_headers: false,
            body_on_transactions: false,
            body_on_errors: false,
            long_field_max_length: DEFAULT_LONG_LIMIT,
        }
    }
}

const REDACTED: &str = "[REDACTED]";

/// Names whose answer [`Policy`] remembers at most.
const REMEMBERED_NAMES: usize = 256;
/// Names with their answers, by position.
type NamedAnswers = Vec<(Box<str>, bool)>;

/// Positions in a list of headers whose names' answers [`Policy`] remembers.
const REMEMBERED_POSITIONS: usize = 64;

/// Which kind of list a header is in: a request's, a response's or a message's names are
/// remembered by position apart.
#[derive(Debug, Clone, Copy)]
pub(super) enum HeaderList {
    Request = 0,
    Response = 1,
    Message = 2,
}

impl Policy {
    /// `sanitize_field_names` as configured now.
    pub(crate) fn set_sanitize(&mut self, sanitize: WildcardList) {
        self.sanitize = sanitize;
        self.redacted.get_mut().clear();
        for names in &mut self.by_position {
            names.get_mut().clear();
        }
    }

    /// [`Policy::redacts`] for the header at position `at` of a `list`: the answer for the
    /// name last seen there, when it is the same name.
    fn redacts_at(&self, list: HeaderList, at: usize, name: &str) -> bool {
        if self.sanitize.is_empty() {
            return false;
        }
        let mut names = self.by_position[list as usize].borrow_mut();
        if let Some((known, answer)) = names.get(at) {
            if **known == *name {
                return *answer;
            }
        }
        let answer = self.redacts(name);
        if let Some(slot) = names.get_mut(at) {
            *slot = (name.into(), answer);
        } else if at == names.len() && at < REMEMBERED_POSITIONS {
            names.push((name.into(), answer));
        }
        answer
    }

    /// Whether a field or header called `name` is sent as `[REDACTED]`.
    pub(crate) fn redacts(&self, name: &str) -> bool {
        if self.sanitize.is_empty() {
            return false;
        }
        let mut redacted = self.redacted.borrow_mut();
        if let Some(&known) = redacted.get(name) {
            return known;
        }
        let matched = self.sanitize.any_match(name);
        if redacted.len() >= REMEMBERED_NAMES {
            redacted.clear();
        }
        redacted.insert(name.into(), matched);
        matched
    }

    fn value<'v>(&self, name: &str, value: &'v str) -> &'v str {
        if self.redacts(name) {
            REDACTED
        } else {
            value
        }
    }
}

/// Headers as an object (repeated names as arrays), sanitised; `Cookie` is sent as `cookies`.
struct HeadersView<'a> {
    headers: &'a [(String, String)],
    policy: &'a Policy,
    list: HeaderList,
}

impl<'a> HeadersView<'a> {
    /// Each name once, where it first appears (`Cookie` left out), with its value and the
    /// values of the headers of the same name after it, as shown (`[REDACTED]` when
    /// `sanitize_field_names` says so). One pass, allocating nothing: this runs for every
    /// request and response a server records.
    fn for_each(&self, mut f: impl FnMut(&'a str, Shown<'a>)) {
        let same = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if same(name, "cookie") || self.headers[..i].iter().any(|(k, _)| same(k, name)) {
                continue;
            }
            let later = &self.headers[i + 1..];
            f(
                name,
                Shown {
                    redacted: self.policy.redacts_at(self.list, i, name),
                    first: value,
                    repeated: later.iter().any(|(k, _)| same(k, name)).then_some(later),
                },
            );
        }
    }

    /// The headers as a JSON object, written by hand (the transaction's context).
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        let mut first = true;
        self.for_each(|name, shown| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            json::string(out, name, usize::MAX);
            out.push(b':');
            if shown.repeated.is_some() {
                out.push(b'[');
                for (i, value) in shown.values(name).enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    json::keyword(out, value, false);
                }
                out.push(b']');
            } else {
                json::keyword(out, shown.value(shown.first), false);
            }
        });
        out.push(b'}');
    }
}

/// A header's value or values, as sent.
struct Shown<'a> {
    redacted: bool,
    first: &'a str,
    /// The headers after the first, when one of them has the same name.
    repeated: Option<&'a [(String, String)]>,
}

impl<'a> Shown<'a> {
    fn value(&self, v: &'a str) -> &'a str {
        if self.redacted {
            REDACTED
        } else {
            v
        }
    }

    /// Every value of the header called `name`, in order.
    fn values(&self, name: &'a str) -> impl Iterator<Item = &'a str> + '_ {
        let later = self.repeated.unwrap_or_default();
        std::iter::once(self.first)
            .chain(
                later
                    .iter()
                    .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_str()),
            )
            .map(|v| self.value(v))
    }
}

impl Serialize for HeadersView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        let mut result = Ok(());
        self.for_each(|name, shown| {
            if result.is_err() {
                return;
            }
            result = if shown.repeated.is_some() {
                let values: Vec<Kw<'_>> = shown.values(name).map(Kw).collect();
                m.serialize_entry(name, &values)
            } else {
                m.serialize_entry(name, &Kw(shown.value(shown.first)))
            };
        });
        result?;
        m.end()
    }
}

/// `name=value; …` pairs of every `Cookie` header, sanitised.
struct CookiesView<'a> {
    headers: &'a [(String, String)],
    policy: &'a Policy,
}

impl CookiesView<'_> {
    fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("cookie"))
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.trim(), v.trim()))
            })
    }
}

impl CookiesView<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.pairs().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            json::string(out, k, usize::MAX);
            out.push(b':');
            json::keyword(out, self.policy.value(k, v), false);
        }
        out.push(b'}');
    }
}

impl Serialize for CookiesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for (k, v) in self.pairs() {
            m.serialize_entry(k, &Kw(self.policy.value(k, v)))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct UrlView<'a> {
    full: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    protocol: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    pathname: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Kw<'a>>,
}

fn url_view(full: &str) -> UrlView<'_> {
    let (scheme, rest) = split_scheme(full).unwrap_or(("", full));
    let path_start = authority_len(rest);
    let (path_query, _fragment) =
        split_at_first(&rest[path_start..], b'#').unwrap_or((&rest[path_start..], ""));
    let (path, query) = match split_at_first(path_query, b'?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    // The authority split off once, for the host and port too, and its port parsed once.
    let host_port = host_and_written_port(&rest[..path_start]);
    let with_scheme = !scheme.is_empty();
    UrlView {
        full: Kw(full),
        // The scheme and the `:` after it, as written.
        protocol: with_scheme.then(|| Kw(&full[..scheme.len() + 1])),
        hostname: host_port.filter(|_| with_scheme).map(|(h, _)| Kw(h)),
        port: match host_port {
            Some((_, Some(written))) => Some(written),
            Some((_, None)) if with_scheme => Some(default_port(scheme)),
            _ => None,
        },
        pathname: Kw(if path.is_empty() { "/" } else { path }),
        search: query.map(Kw),
    }
}

#[derive(Serialize)]
struct SocketView<'a> {
    remote_address: Kw<'a>,
}

#[derive(Serialize)]
pub(super) struct RequestView<'a> {
    method: Kw<'a>,
    url: UrlView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http_version: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cookies: Option<CookiesView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    socket: Option<SocketView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Cow<'a, str>>,
}

#[derive(Serialize)]
struct ResponseView<'a> {
    status_code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersView<'a>>,
}

#[derive(Serialize)]
pub(super) struct TransactionContextView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<LabelsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<RequestView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<MessageView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom: Option<LabelsView<'a>>,
}

// The transaction's context written by hand, from the same views serde writes for errors
// (and in the tests, to check that both write the same): serde's string escaping and
// generic map machinery were most of a web transaction's line.

impl UrlView<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"full\":");
        json::keyword(out, self.full.0, false);
        if let Some(protocol) = &self.protocol {
            out.extend_from_slice(b",\"protocol\":");
            json::keyword(out, protocol.0, false);
        }
        if let Some(hostname) = &self.hostname {
            out.extend_from_slice(b",\"hostname\":");
            json::keyword(out, hostname.0, false);
        }
        if let Some(port) = self.port {
            out.extend_from_slice(b",\"port\":");
            json::uint(out, u64::from(port));
        }
        out.extend_from_slice(b",\"pathname\":");
        json::keyword(out, self.pathname.0, false);
        if let Some(search) = &self.search {
            out.extend_from_slice(b",\"search\":");
            json::keyword(out, search.0, false);
        }
        out.push(b'}');
    }
}

impl RequestView<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"method\":");
        json::keyword(out, self.method.0, false);
        out.extend_from_slice(b",\"url\":");
        self.url.write(out);
        if let Some(version) = &self.http_version {
            out.extend_from_slice(b",\"http_version\":");
            json::keyword(out, version.0, false);
        }
        if let Some(headers) = &self.headers {
            out.extend_from_slice(b",\"headers\":");
            headers.write(out);
        }
        if let Some(cookies) = &self.cookies {
            out.extend_from_slice(b",\"cookies\":");
            cookies.write(out);
        }
        if let Some(socket) = &self.socket {
            out.extend_from_slice(b",\"socket\":{\"remote_address\":");
            json::keyword(out, socket.remote_address.0, false);
            out.push(b'}');
        }
        if let Some(body) = &self.body {
            out.extend_from_slice(b",\"body\":");
            json::string(out, body, usize::MAX);
        }
        out.push(b'}');
    }
}

impl ResponseView<'_> {
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"status_code\":");
        json::uint(out, u64::from(self.status_code));
        if let Some(headers) = &self.headers {
            out.extend_from_slice(b",\"headers\":");
            headers.write(out);
        }
        out.push(b'}');
    }
}

impl TransactionContextView<'_> {
    /// The context as a JSON object: the request and the response by hand, the rest (rarer)
    /// through serde.
    pub(super) fn write(&self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut first = true;
        let mut key = |out: &mut Vec<u8>, key: &[u8]| {
            out.push(if std::mem::take(&mut first) {
                b'{'
            } else {
                b','
            });
            out.push(b'"');
            out.extend_from_slice(key);
            out.extend_from_slice(b"\":");
        };
        if let Some(tags) = &self.tags {
            key(out, b"tags");
            write_serde(out, tags)?;
        }
        if let Some(request) = &self.request {
            key(out, b"request");
            request.write(out);
        }
        if let Some(response) = &self.response {
            key(out, b"response");
            response.write(out);
        }
        if let Some(message) = &self.message {
            key(out, b"message");
            write_serde(out, message)?;
        }
        if let Some(user) = &self.user {
            key(out, b"user");
            write_serde(out, user)?;
        }
        if let Some(custom) = &self.custom {
            key(out, b"custom");
            write_serde(out, custom)?;
        }
        if first {
            out.push(b'{');
        }
        out.push(b'}');
        Ok(())
    }
}

/// A view written through serde.
fn write_serde(out: &mut Vec<u8>, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(out, value).map_err(io::Error::other)
}

/// `context.message` of a messaging transaction.
#[derive(Serialize)]
struct MessageView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    age: Option<AgeView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing_key: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<HeadersView<'a>>,
}

#[derive(Serialize)]
struct QueueView<'a> {
    name: Kw<'a>,
}

#[derive(Serialize)]
struct AgeView {
    ms: u64,
}

impl<'a> MessageView<'a> {
    fn of(m: &'a Message, policy: &'a Policy) -> Self {
        MessageView {
            queue: m.queue.as_deref().map(|name| QueueView { name: Kw(name) }),
            age: m.age_ms.map(|ms| AgeView { ms }),
            routing_key: m.routing_key.as_deref().map(Kw),
            headers: headers_view(&m.headers, policy, HeaderList::Message),
        }
    }
}

/// `context.user`.
#[derive(Serialize)]
pub(super) struct UserView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<Kw<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<Kw<'a>>,
}

impl<'a> UserView<'a> {
    pub(super) fn of(user: &'a User) -> Self {
        UserView {
            id: user.id.as_deref().map(Kw),
            username: user.username.as_deref().map(Kw),
            email: user.email.as_deref().map(Kw),
        }
    }
}

/// A form body with the values of sensitive fields replaced. Not captured or not allowed on
/// this kind of event: `[REDACTED]` for a method that carries a body (POST, PUT, PATCH,
/// DELETE), none for the others (a GET's transaction does not claim a body it never had).
fn sanitized_body<'a>(
    req: &'a web::Request,
    policy: &Policy,
    allowed: bool,
) -> Option<Cow<'a, str>> {
    let Some(body) = req.body.as_ref().filter(|_| allowed) else {
        return carries_body(&req.method).then_some(Cow::Borrowed(REDACTED));
    };
    let form = req.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type") && v.starts_with("application/x-www-form-urlencoded")
    });
    if !form {
        return Some(truncate(body, policy.long_field_max_length));
    }
    let fields: Vec<String> = body
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => format!("{k}={}", policy.value(k, v)),
            None => pair.to_owned(),
        })
        .collect();
    Some(Cow::Owned(
        truncate(&fields.join("&"), policy.long_field_max_length).into_owned(),
    ))
}

/// The methods whose requests carry a body, as the reference agent names them.
fn carries_body(method: &str) -> bool {
    ["POST", "PUT", "PATCH", "DELETE"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m))
}

fn headers_view<'a>(
    h: &'a [(String, String)],
    policy: &'a Policy,
    list: HeaderList,
) -> Option<HeadersView<'a>> {
    (policy.capture_headers && !h.is_empty()).then_some(HeadersView {
        headers: h,
        policy,
        list,
    })
}

pub(super) fn request_view<'a>(
    r: &'a web::Request,
    policy: &'a Policy,
    body_allowed: bool,
) -> RequestView<'a> {
    RequestView {
        method: Kw(&r.method),
        url: url_view(&r.url),
        http_version: r.http_version.as_deref().map(Kw),
        headers: headers_view(&r.headers, policy, HeaderList::Request),
        cookies: (policy.capture_headers
            && r.headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("cookie")))
        .then_some(CookiesView {
            headers: &r.headers,
            policy,
        }),
        socket: r.remote_address.as_deref().map(|a| SocketView {
            remote_address: Kw(a),
        }),
        body: sanitized_body(r, policy, body_allowed),
    }
}

pub(super) fn transaction_context<'a>(
    t: &'a TransactionRecord,
    policy: &'a Policy,
) -> Option<TransactionContextView<'a>> {
    let ex = t.extras();
    let labels = ex.map_or(&[][..], |e| &e.labels[..]);
    let custom = ex.map_or(&[][..], |e| &e.custom[..]);
    let user = ex.and_then(|e| e.user.as_deref());
    let message = ex.and_then(|e| e.message.as_deref());
    if labels.is_empty()
        && t.request.is_none()
        && t.response.is_none()
        && message.is_none()
        && user.is_none()
        && custom.is_empty()
    {
        return None;
    }
    Some(TransactionContextView {
        tags: (!labels.is_empty()).then_some(LabelsView(labels)),
        user: user.map(UserView::of),
        custom: (!custom.is_empty()).then_some(LabelsView(custom)),
        request: t
            .request
            .as_deref()
            .map(|r| request_view(r, policy, policy.body_on_transactions)),
        response: t.response.as_deref().map(|r| ResponseView {
            status_code: r.status_code,
            headers: headers_view(&r.headers, policy, HeaderList::Response),
        }),
        message: message.map(|m| MessageView::of(m, policy)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_split_into_its_parts_with_the_port_its_scheme_means() {
        use serde_json::json;
        let cases = [
            (
                "http://127.0.0.1:39123/",
                json!({"protocol": "http:", "hostname": "127.0.0.1", "port": 39123, "pathname": "/"}),
            ),
            (
                "https://shop.example/a?b=1#c",
                json!({"protocol": "https:", "hostname": "shop.example", "port": 443, "pathname": "/a", "search": "b=1"}),
            ),
            (
                "http://user:pw@host/x",
                json!({"protocol": "http:", "hostname": "host", "port": 80, "pathname": "/x"}),
            ),
            (
                "http://user@host:81",
                json!({"protocol": "http:", "hostname": "host", "port": 81, "pathname": "/"}),
            ),
            (
                "http://[::1]:8080/p",
                json!({"protocol": "http:", "hostname": "[::1]", "port": 8080, "pathname": "/p"}),
            ),
            (
                "http://[::1]/p",
                json!({"protocol": "http:", "hostname": "[::1]", "port": 80, "pathname": "/p"}),
            ),
            (
                "http://host:port/p",
                json!({"protocol": "http:", "hostname": "host", "port": 80, "pathname": "/p"}),
            ),
            (
                "/orders?page=2",
                json!({"pathname": "/orders", "search": "page=2"}),
            ),
            ("localhost:8080/x", json!({"port": 8080, "pathname": "/x"})),
        ];
        for (url, mut expected) in cases {
            expected["full"] = json!(url);
            let written = serde_json::to_value(url_view(url)).expect("json");
            assert_eq!(written, expected, "{url}");
        }
    }

    #[test]
    fn a_body_not_captured_is_redacted_only_for_methods_that_carry_one() {
        let policy = Policy::default();
        let body_of = |method: &str, body: Option<&str>, allowed: bool| {
            let mut req = web::Request::new(method, "http://a.example/x");
            req.body = body.map(str::to_owned);
            let view = request_view(&req, &policy, allowed);
            let mut written = Vec::new();
            view.write(&mut written);
            let written: serde_json::Value = serde_json::from_slice(&written).expect("json");
            let derived = serde_json::to_value(&view).expect("json");
            assert_eq!(written, derived, "both writers agree");
            written.get("body").cloned()
        };
        let redacted = Some(serde_json::json!("[REDACTED]"));
        for method in ["POST", "put", "PATCH", "DELETE"] {
            assert_eq!(body_of(method, None, true), redacted, "{method}");
            assert_eq!(body_of(method, Some("a=1"), false), redacted, "{method}");
        }
        for method in ["GET", "HEAD", "OPTIONS"] {
            assert_eq!(body_of(method, None, true), None, "{method}");
            assert_eq!(body_of(method, Some("a=1"), false), None, "{method}");
        }
        // Captured and allowed: sent, whatever the method.
        let sent = Some(serde_json::json!("a=1"));
        assert_eq!(body_of("GET", Some("a=1"), true), sent);
        assert_eq!(body_of("POST", Some("a=1"), true), sent);
    }

    #[test]
    fn a_url_is_split_into_parts_borrowed_from_it() {
        let view = |url| serde_json::to_value(url_view(url)).expect("json");
        assert_eq!(
            view("https://user:pw@a.example:8443/x/y?q=1#top"),
            serde_json::json!({
                "full": "https://user:pw@a.example:8443/x/y?q=1#top",
                "protocol": "https:",
                "hostname": "a.example",
                "port": 8443,
                "pathname": "/x/y",
                "search": "q=1",
            })
        );
        assert_eq!(
            view("HTTP://[::1]/"),
            serde_json::json!({
                "full": "HTTP://[::1]/",
                "protocol": "HTTP:",
                "hostname": "[::1]",
                "port": 80,
                "pathname": "/",
            })
        );
        assert_eq!(
            view("/only?next=http://b.example/"),
            serde_json::json!({
                "full": "/only?next=http://b.example/",
                "pathname": "/only",
                "search": "next=http://b.example/",
            })
        );
    }

    #[test]
    fn answers_remembered_per_name_follow_the_list_in_effect_and_stay_bounded() {
        let mut policy = Policy::default();
        assert!(!policy.redacts("x-token"), "nothing sanitised by default");
        policy.set_sanitize(WildcardList::parse(&["*token*".to_owned()]));
        assert!(policy.redacts("X-Token"));
        assert!(policy.redacts("X-Token"), "asked again, remembered");
        assert!(!policy.redacts("accept"));
        policy.set_sanitize(WildcardList::parse(&["accept".to_owned()]));
        assert!(
            !policy.redacts("X-Token"),
            "a new list forgets the old answers"
        );
        assert!(policy.redacts("accept"));
        for i in 0..1000 {
            let name = format!("x-token-{i}");
            assert!(!policy.redacts(&name));
            assert!(policy.redacted.borrow().len() <= REMEMBERED_NAMES);
        }
        assert!(policy.redacts("ACCEPT"));
    }

    #[test]
    fn answers_remembered_by_position_are_for_the_name_seen_there_and_follow_the_list() {
        let mut policy = Policy::default();
        policy.set_sanitize(WildcardList::parse(&["*token*".to_owned()]));
        let list = HeaderList::Request;
        assert!(!policy.redacts_at(list, 0, "host"));
        assert!(policy.redacts_at(list, 1, "x-token"));
        assert!(policy.redacts_at(list, 1, "x-token"), "the same name again");
        // Another name in a position: its own answer, then remembered there.
        assert!(!policy.redacts_at(list, 1, "accept"));
        assert!(policy.redacts_at(list, 0, "x-token"));
        // Other kinds of lists apart.
        assert!(!policy.redacts_at(HeaderList::Response, 0, "host"));
        assert!(policy.redacts_at(list, 0, "x-token"));
        // Positions past the bound are answered, not remembered.
        assert!(policy.redacts_at(list, REMEMBERED_POSITIONS + 5, "x-token"));
        assert!(policy.by_position[list as usize].borrow().len() <= REMEMBERED_POSITIONS);
        policy.set_sanitize(WildcardList::parse(&["host".to_owned()]));
        assert!(
            !policy.redacts_at(list, 0, "x-token"),
            "a new list forgets them"
        );
        assert!(policy.redacts_at(HeaderList::Response, 0, "host"));
    }

    #[test]
    fn headers_group_repeated_names_in_first_order_and_sanitise_each_value() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let headers = [
            pair("Accept", "text/html"),
            pair("X-Token", "t1"),
            pair("Cookie", "c=1"),
            pair("accept", "*/*"),
            pair("Host", "example.com"),
            pair("x-token", "t2"),
        ];
        let mut policy = Policy {
            capture_headers: true,
            ..Policy::default()
        };
        policy.set_sanitize(WildcardList::parse(&["*token*".to_owned()]));
        let json = serde_json::to_string(&HeadersView {
            headers: &headers,
            policy: &policy,
            list: HeaderList::Request,
        })
        .unwrap_or_default();
        assert_eq!(
            json,
            r#"{"Accept":["text/html","*/*"],"X-Token":["[REDACTED]","[REDACTED]"],"Host":"example.com"}"#
        );
    }
}
