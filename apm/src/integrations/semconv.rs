//! OpenTelemetry's semantic conventions as both bridges read them (`apm::tracing`'s fields,
//! `apm::otel`'s attributes): the span kinds, the attribute names (those the Elastic bridge
//! spec names, `specs/agents/tracing-api-otel.md`, and their current names), and the spec's
//! decisions on what a span or transaction is from them.

/// A span kind (`otel.kind` of a tracing span, `SpanKind` of the OpenTelemetry API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl Kind {
    /// `server`, `SERVER`, `SpanKind::Server`...
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(crate) fn parse(s: &str) -> Option<Kind> {
        let s = s.rsplit("::").next().unwrap_or(s);
        Some(match s.to_ascii_lowercase().as_str() {
            "internal" => Kind::Internal,
            "server" => Kind::Server,
            "client" => Kind::Client,
            "producer" => Kind::Producer,
            "consumer" => Kind::Consumer,
            _ => return None,
        })
    }

    /// `otel.span_kind` as the intake writes it.
    #[cfg_attr(not(feature = "opentelemetry"), allow(dead_code))]
    pub(crate) fn otel_name(self) -> &'static str {
        match self {
            Kind::Internal => "INTERNAL",
            Kind::Server => "SERVER",
            Kind::Client => "CLIENT",
            Kind::Producer => "PRODUCER",
            Kind::Consumer => "CONSUMER",
        }
    }
}

/// Attribute names, the spec's first. Each bridge reads some of them.
#[allow(dead_code)]
pub(crate) mod keys {
    pub(crate) const DB_SYSTEM: &[&str] = &["db.system", "db.system.name"];
    pub(crate) const DB_NAME: &[&str] = &["db.name", "db.namespace"];
    pub(crate) const DB_STATEMENT: &[&str] = &["db.statement", "db.query.text"];
    pub(crate) const HTTP_URL: &[&str] = &["http.url", "url.full"];
    pub(crate) const HTTP_SCHEME: &[&str] = &["http.scheme", "url.scheme"];
    pub(crate) const HTTP_METHOD: &[&str] = &["http.request.method", "http.method"];
    pub(crate) const HTTP_STATUS: &[&str] = &["http.response.status_code", "http.status_code"];
    pub(crate) const MESSAGING_SYSTEM: &[&str] = &["messaging.system"];
    pub(crate) const MESSAGING_DESTINATION: &[&str] =
        &["messaging.destination", "messaging.destination.name"];
    pub(crate) const RPC_SYSTEM: &[&str] = &["rpc.system"];
    pub(crate) const RPC_SERVICE: &[&str] = &["rpc.service"];
    pub(crate) const PEER_NAME: &[&str] = &["net.peer.name", "server.address"];
    pub(crate) const PEER_IP: &[&str] = &["net.peer.ip"];
    pub(crate) const PEER_PORT: &[&str] = &["net.peer.port", "server.port"];
    pub(crate) const HTTP_HOST: &[&str] = &["http.host"];
}

/// What the spec makes of a span, by the first of these its attributes name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `db`, subtype `db.system`.
    Db,
    /// `messaging`, subtype `messaging.system`.
    Messaging,
    /// `external`, subtype `rpc.system`.
    Rpc,
    /// `external`, subtype `http`.
    Http,
    /// `app`, subtype `internal`: an internal span (or one of no kind) naming none of these.
    Internal,
    /// `unknown`, no subtype.
    Unknown,
}

impl Class {
    /// The span type.
    pub(crate) fn span_type(self) -> &'static str {
        match self {
            Class::Db => "db",
            Class::Messaging => "messaging",
            Class::Rpc | Class::Http => "external",
            Class::Internal => "app",
            Class::Unknown => "unknown",
        }
    }
}

/// Which attributes a span has, of those that decide its class and its transaction type.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Has {
    pub(crate) db: bool,
    pub(crate) messaging: bool,
    pub(crate) rpc: bool,
    /// HTTP attributes that make a call (or, for a server, a request).
    pub(crate) http: bool,
}

/// A span's class ("Span type, sub-type and service target").
pub(crate) fn classify(kind: Option<Kind>, has: Has) -> Class {
    if has.db {
        Class::Db
    } else if has.messaging {
        Class::Messaging
    } else if has.rpc {
        Class::Rpc
    } else if has.http {
        Class::Http
    } else if matches!(kind, None | Some(Kind::Internal)) {
        Class::Internal
    } else {
        Class::Unknown
    }
}

/// The type of a transaction ("Transaction type").
pub(crate) fn transaction_type(kind: Option<Kind>, has: Has) -> &'static str {
    match kind {
        Some(Kind::Server) if has.http || has.rpc => "request",
        Some(Kind::Consumer) if has.messaging => "messaging",
        _ => "unknown",
    }
}
