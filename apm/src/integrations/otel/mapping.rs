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

use super::super::semconv::{self, keys, Class, Has, Kind};

/// The kind as the conventions name it.
pub(super) fn kind_of(kind: &SpanKind) -> Kind {
    match kind {
        SpanKind::Client => Kind::Client,
        SpanKind::Server => Kind::Server,
        SpanKind::Producer => Kind::Producer,
        SpanKind::Consumer => Kind::Consumer,
        SpanKind::Internal => Kind::Internal,
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

    /// What decides the class and the transaction type. HTTP: a URL or a scheme (the spec
    /// reads no method).
    fn decisive(&self) -> Has {
        Has {
            db: self.has(keys::DB_SYSTEM),
            messaging: self.has(keys::MESSAGING_SYSTEM),
            rpc: self.has(keys::RPC_SYSTEM),
            http: self.has(keys::HTTP_URL) || self.has(keys::HTTP_SCHEME),
        }
    }
}

/// The transaction type of a span that starts a transaction.
pub(super) fn transaction_type(kind: Kind, attributes: &[KeyValue]) -> &'static str {
    semconv::transaction_type(Some(kind), Attrs(attributes).decisive())
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

pub(super) fn span_type(kind: Kind, attributes: &[KeyValue]) -> SpanType {
    let a = Attrs(attributes);
    let class = semconv::classify(Some(kind), a.decisive());
    let owned = |keys: &[&str]| a.text(keys).map(|t| Cow::Owned(t.into_owned()));
    let net_port = a.port(keys::PEER_PORT);
    let net_peer = a.text(keys::PEER_NAME).or_else(|| a.text(keys::PEER_IP));
    let (subtype, name): (Option<Cow<'static, str>>, Option<String>) = match class {
        Class::Db => (
            owned(keys::DB_SYSTEM),
            a.text(keys::DB_NAME).map(Cow::into_owned),
        ),
        // The spec's feature file (`otel_bridge.feature`) names the target after the
        // destination alone: the broker's address is not a target name.
        Class::Messaging => (
            owned(keys::MESSAGING_SYSTEM),
            a.text(keys::MESSAGING_DESTINATION).map(Cow::into_owned),
        ),
        Class::Rpc => {
            let net_name = net_peer.as_ref().map(|peer| match net_port {
                Some(port) => format!("{peer}:{port}"),
                None => peer.to_string(),
            });
            (
                owned(keys::RPC_SYSTEM),
                net_name.or_else(|| a.text(keys::RPC_SERVICE).map(Cow::into_owned)),
            )
        }
        Class::Http => {
            let scheme = a.text(keys::HTTP_SCHEME);
            let name = match a.text(keys::HTTP_HOST).or(net_peer) {
                Some(host) => match net_port.or_else(|| scheme.as_deref().and_then(scheme_port)) {
                    Some(port) => Some(format!("{host}:{port}")),
                    None => Some(host.into_owned()),
                },
                None => a.text(keys::HTTP_URL).as_deref().and_then(url_host_port),
            };
            (Some(Cow::Borrowed("http")), name)
        }
        Class::Internal => {
            return SpanType {
                kind: class.span_type(),
                subtype: Some(Cow::Borrowed("internal")),
                target: None,
                name_only_resource: false,
            }
        }
        Class::Unknown => {
            return SpanType {
                kind: class.span_type(),
                subtype: None,
                target: None,
                name_only_resource: false,
            }
        }
    };
    SpanType {
        kind: class.span_type(),
        target: subtype.clone().map(|t| (t, name)),
        subtype,
        name_only_resource: matches!(class, Class::Rpc | Class::Http),
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
            Kind::Client,
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
            Kind::Client,
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
            transaction_type(Kind::Server, &attrs(&[("url.scheme", "https")])),
            "request"
        );
    }
}
