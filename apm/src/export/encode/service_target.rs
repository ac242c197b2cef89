//! The `service.target` and legacy `destination.service.resource` of an exit span, inferred
//! from its context as `specs/agents/tracing-spans-service-target.md` describes (cases in
//! `service_resource_inference.json`); and the URL forms its context is sent with.

use std::borrow::Cow;

use crate::types::span_context::SpanExtra;
pub(crate) use crate::util::url::host_port;

/// `service.target` type and name, and the legacy `destination.service.resource`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) kind: String,
    pub(crate) name: Option<String>,
    pub(crate) resource: String,
}

/// The service target of an exit span, per the spec's inference rules.
pub(crate) fn infer(kind: &str, subtype: Option<&str>, extra: &SpanExtra) -> Option<Target> {
    if !extra.exit {
        return None;
    }
    let base = subtype.unwrap_or(kind);
    let (target_kind, name) = if extra.target_type.is_some() || extra.target_name.is_some() {
        (
            extra.target_type.as_deref().unwrap_or(base).to_owned(),
            extra.target_name.as_deref().map(str::to_owned),
        )
    } else if let Some(db) = &extra.db {
        (base.to_owned(), db.instance.clone())
    } else if let Some(m) = &extra.message {
        (base.to_owned(), m.queue.clone())
    } else if let Some((host, port)) = extra
        .http
        .as_ref()
        .and_then(|h| h.url.as_deref())
        .and_then(host_port)
    {
        (base.to_owned(), Some(format!("{host}:{port}")))
    } else {
        (base.to_owned(), None)
    };
    // The legacy resource: an HTTP target is `host:port` alone; others `type/name`.
    let resource = match (
        &name,
        extra.http.is_some() && extra.db.is_none() && extra.message.is_none(),
    ) {
        (Some(n), true) if extra.target_type.is_none() && extra.target_name.is_none() => n.clone(),
        #[cfg(feature = "opentelemetry")]
        (Some(n), _) if extra.name_only_resource => n.clone(),
        (Some(n), _) => format!("{target_kind}/{n}"),
        (None, _) => target_kind.clone(),
    };
    Some(Target {
        kind: target_kind,
        name,
        resource,
    })
}

/// The URL without its user information (`user:password@`), as the spec asks for
/// `context.http.url`.
pub(crate) fn redact_userinfo(url: &str) -> Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Cow::Borrowed(url);
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => Cow::Owned(format!("{scheme}://{}", &rest[at + 1..])),
        None => Cow::Borrowed(url),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::span_context::{Db, Http, Message};

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_userinfo("https://user:pw@host:1/p?x=@"),
            "https://host:1/p?x=@"
        );
        assert_eq!(redact_userinfo("https://host/p"), "https://host/p");
    }

    /// Every case of `service_resource_inference.json`.
    #[test]
    fn service_resource_inference_fixture() {
        let Some(text) =
            crate::util::spec_fixture::read("agent-json-specs/service_resource_inference.json")
        else {
            return;
        };
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON array");
        assert_eq!(
            cases.len(),
            16,
            "the fixture's case count changed: pin the new one"
        );
        for case in &cases {
            let span = &case["span"];
            let ctx = &span["context"];
            let s = |v: &serde_json::Value| v.as_str().map(str::to_owned);
            let extra = SpanExtra {
                exit: span["exit"] == "true",
                http: ctx.get("http").map(|h| Http {
                    url: s(&h["url"]),
                    ..Http::default()
                }),
                db: ctx.get("db").map(|d| Db {
                    instance: s(&d["instance"]),
                    ..Db::default()
                }),
                message: ctx.get("message").map(|m| Message {
                    queue: s(&m["queue"]["name"]),
                }),
                target_type: s(&ctx["service"]["target"]["type"]).map(Cow::Owned),
                target_name: s(&ctx["service"]["target"]["name"]).map(Cow::Owned),
                ..SpanExtra::default()
            };
            let kind = span["type"].as_str().unwrap_or_default();
            let got = infer(kind, span["subtype"].as_str(), &extra);
            let why = case["failure_message"].as_str().unwrap_or_default();
            match (&got, case["expected_resource"].as_str()) {
                (None, None) => assert!(case["expected_service_target"].is_null(), "{why}"),
                (Some(t), Some(resource)) => {
                    assert_eq!(t.resource, resource, "{why}");
                    let expected = &case["expected_service_target"];
                    assert_eq!(Some(t.kind.as_str()), expected["type"].as_str(), "{why}");
                    assert_eq!(t.name.as_deref(), expected["name"].as_str(), "{why}");
                }
                _ => panic!("{why}: got {got:?}"),
            }
        }
        eprintln!("service_resource_inference: {} cases passed", cases.len());
    }
}
