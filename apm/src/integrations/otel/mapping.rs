//! What an OpenTelemetry span's kind and attributes make of it, as the Elastic bridge spec
//! says (`specs/agents/tracing-api-otel.md`, "Compatibility mapping"): the transaction type, or
//! the span type, subtype and service target. Everything else about the attributes is the APM
//! Server's business: they are sent as they are, in `otel.attributes`.
//!
//! The spec names the semantic conventions of its time (`http.url`, `net.peer.name`, ...);
//! their current names (`url.full`, `server.address`, `db.system.name`, ...) are read where
//! the old ones are absent.

use std::borrow::Cow;

use opentelemetry::trace::SpanKind;
use opentelemetry::{KeyValue, Value};

/// The `otel.span_kind` of a kind.
pub(super) fn kind_name(kind: &SpanKind) -> &'static str {
    match kind {
        SpanKind::Client => "CLIENT",
        SpanKind::Server => "SERVER",
        SpanKind::Producer => "PRODUCER",
        SpanKind::Consumer => "CONSUMER",
        SpanKind::Internal => "INTERNAL",
    }
}

/// The attributes, looked up by key (the last value set wins; an empty text is absent).
struct Attrs<'a>(&'a [KeyValue]);

impl<'a> Attrs<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.0
            .iter()
            .rev()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
            .filter(|v| !matches!(v, Value::String(s) if s.as_str().is_empty()))
    }

    fn any(&self, keys: &[&str]) -> Option<&'a Value> {
        keys.iter().find_map(|k| self.get(k))
    }

    fn text(&self, keys: &[&str]) -> Option<Cow<'a, str>> {
        self.any(keys).map(|v| match v {
            Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        })
    }

    /// A port, given as a number or as text.
    fn port(&self, keys: &[&str]) -> Option<u16> {
        match self.any(keys)? {
            Value::I64(n) => u16::try_from(*n).ok(),
            Value::String(s) => s.as_str().parse().ok(),
            _ => None,
        }
    }

    fn has(&self, keys: &[&str]) -> bool {
        self.any(keys).is_some()
    }
}

const HTTP_URL: &[&str] = &["http.url", "url.full"];
const HTTP_SCHEME: &[&str] = &["http.scheme", "url.scheme"];
const RPC_SYSTEM: &[&str] = &["rpc.system"];
const MESSAGING_SYSTEM: &[&str] = &["messaging.system"];
const DB_SYSTEM: &[&str] = &["db.system", "db.system.name"];

/// The transaction type of a span that starts a transaction.
pub(super) fn transaction_type(kind: &SpanKind, attributes: &[KeyValue]) -> &'static str {
    let a = Attrs(attributes);
    let http = a.has(HTTP_URL) || a.has(HTTP_SCHEME);
    match kind {
        SpanKind::Server if http || a.has(RPC_SYSTEM) => "request",
        SpanKind::Consumer if a.has(MESSAGING_SYSTEM) => "messaging",
        _ => "unknown",
    }
}

/// A span's type, subtype and service target.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SpanType {
    pub(super) kind: &'static str,
    pub(super) subtype: Option<Cow<'static, str>>,
    /// `service.target` type and name, when the span calls a service.
    pub(super) target: Option<(Cow<'static, str>, Option<String>)>,
    /// `destination.service.resource` is the target's name alone (HTTP and RPC), not
    /// `type/name`.
    pub(super) name_only_resource: bool,
}

pub(super) fn span_type(kind: &SpanKind, attributes: &[KeyValue]) -> SpanType {
    let a = Attrs(attributes);
    let net_port = a.port(&["net.peer.port", "server.port"]);
    let net_peer = a.text(&["net.peer.name", "net.peer.ip", "server.address"]);
    let net_name = net_peer.as_ref().map(|peer| match net_port {
        Some(port) => format!("{peer}:{port}"),
        None => peer.to_string(),
    });
    let owned = |c: Cow<'_, str>| -> Cow<'static, str> { Cow::Owned(c.into_owned()) };
    if let Some(system) = a.text(DB_SYSTEM) {
        let system = owned(system);
        return SpanType {
            kind: "db",
            subtype: Some(system.clone()),
            target: Some((
                system,
                a.text(&["db.name", "db.namespace"]).map(Cow::into_owned),
            )),
            name_only_resource: false,
        };
    }
    if let Some(system) = a.text(MESSAGING_SYSTEM) {
        let system = owned(system);
        // The spec's feature file (`otel_bridge.feature`) names the target after the
        // destination alone: the broker's address is not a target name.
        let name = a
            .text(&["messaging.destination", "messaging.destination.name"])
            .map(Cow::into_owned);
        return SpanType {
            kind: "messaging",
            subtype: Some(system.clone()),
            target: Some((system, name)),
            name_only_resource: false,
        };
    }
    if let Some(system) = a.text(RPC_SYSTEM) {
        let system = owned(system);
        let name = net_name.or_else(|| a.text(&["rpc.service"]).map(Cow::into_owned));
        return SpanType {
            kind: "external",
            subtype: Some(system.clone()),
            target: Some((system, name)),
            name_only_resource: true,
        };
    }
    let url = a.text(HTTP_URL);
    let scheme = a.text(HTTP_SCHEME);
    if url.is_some() || scheme.is_some() {
        let host = a.text(&["http.host"]).or(net_peer);
        let name = match host {
            Some(host) => match net_port.or_else(|| scheme.as_deref().and_then(scheme_port)) {
                Some(port) => Some(format!("{host}:{port}")),
                None => Some(host.into_owned()),
            },
            None => url.as_deref().and_then(url_host_port),
        };
        return SpanType {
            kind: "external",
            subtype: Some(Cow::Borrowed("http")),
            target: Some((Cow::Borrowed("http"), name)),
            name_only_resource: true,
        };
    }
    match kind {
        SpanKind::Internal => SpanType {
            kind: "app",
            subtype: Some(Cow::Borrowed("internal")),
            target: None,
            name_only_resource: false,
        },
        _ => SpanType {
            kind: "unknown",
            subtype: None,
            target: None,
            name_only_resource: false,
        },
    }
}

fn scheme_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host:port` of a URL (the scheme's port when none is written; the host alone for a scheme
/// without a known port).
fn url_host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let has_port = match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'),
        None => authority.contains(':'),
    };
    if authority.is_empty() {
        return None;
    }
    if has_port {
        return Some(authority.to_owned());
    }
    Some(match scheme_port(&scheme.to_ascii_lowercase()) {
        Some(port) => format!("{authority}:{port}"),
        None => authority.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&'static str, &'static str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect()
    }

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            url_host_port("https://testing.invalid:8443/").as_deref(),
            Some("testing.invalid:8443")
        );
        assert_eq!(
            url_host_port("https://[::1]/").as_deref(),
            Some("[::1]:443")
        );
        assert_eq!(
            url_host_port("http://u:p@testing.invalid/x").as_deref(),
            Some("testing.invalid:80")
        );
        assert_eq!(url_host_port("amqp://carrot/q").as_deref(), Some("carrot"));
        assert_eq!(url_host_port("nonsense"), None);
    }

    #[test]
    fn current_semantic_conventions_are_read_too() {
        let t = span_type(
            &SpanKind::Client,
            &[
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.namespace", "shop"),
            ],
        );
        assert_eq!(t.kind, "db");
        assert_eq!(
            t.target,
            Some((Cow::Borrowed("postgresql"), Some("shop".into())))
        );
        let t = span_type(
            &SpanKind::Client,
            &[
                KeyValue::new("url.full", "http://a.invalid/"),
                KeyValue::new("server.address", "a.invalid"),
                KeyValue::new("server.port", 8080_i64),
            ],
        );
        assert_eq!(
            t.target,
            Some((Cow::Borrowed("http"), Some("a.invalid:8080".into())))
        );
        assert_eq!(
            transaction_type(&SpanKind::Server, &attrs(&[("url.scheme", "https")])),
            "request"
        );
    }
}
