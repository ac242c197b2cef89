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
    /// An HTTP request's destination, `host:port` (the scheme's default port when the URL
    /// has none): its service target's name and resource.
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

    /// The destination of a request to `url`; `None` for a text that is not an absolute URL.
    #[cfg(apm_http_client)]
    pub(crate) fn http(url: &str) -> Option<ExitTarget> {
        let (host, port) = crate::util::url::host_port(url)?;
        Some(ExitTarget::Http(format!("{host}:{port}").into()))
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
    fn requests_to_one_host_and_port_count_together() {
        let target = |url: &str| ExitTarget::http(url).expect("an absolute URL");
        assert_eq!(
            target("https://u:p@api.example/v1/x?y#z"),
            ExitTarget::Http("api.example:443".into())
        );
        assert!(target("http://a/x").same(&target("http://a:80/y")));
        assert!(!target("http://a/x").same(&target("https://a/x")));
        assert_eq!(ExitTarget::http("no-scheme/path"), None);
    }
}
