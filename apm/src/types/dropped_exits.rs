//! Exit calls that ran past `transaction_max_spans` (not recorded as spans), counted per
//! destination and outcome for the transaction's `dropped_spans_stats`, as the spec's
//! `handling-huge-traces/tracing-spans-dropped-stats.md` asks.

#[cfg(apm_db_client)]
use std::sync::Arc;

#[cfg(apm_db_client)]
use super::db::DbEndpoint;
use super::outcome::Outcome;

/// Where dropped calls went, as the application thread knows it: the transport thread infers
/// their service target from it, as it would for their spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExitTarget {
    /// A database or cache connection's endpoint (shared by all its calls).
    #[cfg(apm_db_client)]
    Db(Arc<DbEndpoint>),
    /// An HTTP request's origin: `scheme://host[:port]` (no user information, no path).
    #[cfg(apm_http_client)]
    Http(Box<str>),
    /// A message's broker (`rabbitmq`, `nats`: its service target's type) and queue, topic or
    /// exchange.
    #[cfg(apm_messaging)]
    Message {
        system: &'static str,
        queue: Box<str>,
    },
}

impl ExitTarget {
    /// Whether calls to `self` and to `other` count together: a database endpoint is one
    /// allocation shared by its calls, compared by address.
    pub(crate) fn same(&self, other: &ExitTarget) -> bool {
        match (self, other) {
            #[cfg(apm_db_client)]
            (ExitTarget::Db(a), ExitTarget::Db(b)) => Arc::ptr_eq(a, b),
            // Unreachable with database clients alone.
            #[allow(unreachable_patterns)]
            _ => self == other,
        }
    }

    /// The origin of `url` (`scheme://host[:port]`), without its user information; `None`
    /// for a text that is not an absolute URL.
    #[cfg(apm_http_client)]
    pub(crate) fn http(url: &str) -> Option<ExitTarget> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if host.is_empty() {
            return None;
        }
        Some(ExitTarget::Http(format!("{scheme}://{host}").into()))
    }
}

/// Calls to one target with one outcome that ran past `transaction_max_spans`: how many, and
/// their summed duration.
#[derive(Debug)]
pub(crate) struct DroppedExits {
    pub(crate) target: ExitTarget,
    pub(crate) outcome: Outcome,
    pub(crate) count: u32,
    pub(crate) sum_ns: u64,
}

#[cfg(all(test, apm_http_client))]
mod tests {
    use super::*;

    #[test]
    fn an_http_target_is_the_url_s_origin_without_credentials() {
        let origin = |url: &str| match ExitTarget::http(url) {
            Some(ExitTarget::Http(o)) => Some(o.to_string()),
            _ => None,
        };
        assert_eq!(
            origin("https://u:p@api.example:8443/v1/x?y#z").as_deref(),
            Some("https://api.example:8443")
        );
        assert_eq!(origin("http://[::1]/").as_deref(), Some("http://[::1]"));
        assert_eq!(origin("http://h?q").as_deref(), Some("http://h"));
        assert_eq!(origin("no-scheme/path"), None);
        assert_eq!(origin("http:///path"), None);
        assert!(ExitTarget::http("http://a/x")
            .zip(ExitTarget::http("http://a/y"))
            .is_some_and(|(a, b)| a.same(&b)));
    }
}
