//! The table of options: one row per option with its Elastic name, environment variable, type,
//! default, whether central configuration may change it, a doc line, and how to set and show it.
//! Environment, builder, central configuration, `describe` and `Debug` all iterate this table.

use std::time::Duration;

use super::parse::{self, Unit};
use super::{CaptureBody, CloudProvider, Config, LogLevel, TraceContinuationStrategy};

/// Identifies an option; its discriminant is the option's index in [`OPTIONS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Id {
    ServiceName,
    ServiceVersion,
    Environment,
    ServiceNodeName,
    Hostname,
    ServerUrl,
    SecretToken,
    ApiKey,
    VerifyServerCert,
    ServerCaCertFile,
    ServerCert,
    Enabled,
    Recording,
    TransactionSampleRate,
    TransactionMaxSpans,
    ApiRequestSize,
    ApiRequestTime,
    ServerTimeout,
    MaxQueueSize,
    GlobalLabels,
    LogLevel,
    MetricsInterval,
    BreakdownMetrics,
    CentralConfig,
    DisableMetrics,
    SanitizeFieldNames,
    CaptureHeaders,
    CaptureBody,
    CloudProvider,
    TransactionIgnoreUrls,
    TransactionIgnoreUserAgents,
    TransactionNameGroups,
    IgnoreMessageQueues,
    ExitSpanMinDuration,
    SpanCompressionEnabled,
    SpanCompressionExactMatchMaxDuration,
    SpanCompressionSameKindMaxDuration,
    SpanStackTraceMinDuration,
    StackTraceLimit,
    IgnoreExceptions,
    TraceContinuationStrategy,
    LongFieldMaxLength,
    UseElasticTraceparentHeader,
}

/// Number of options (the length of [`OPTIONS`]).
pub(crate) const COUNT: usize = Id::UseElasticTraceparentHeader as usize + 1;

/// The value type of an option, as named in specs/agents/configuration.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// Free text.
    String,
    /// An `http`/`https` URL.
    Url,
    /// `true` or `false`.
    Boolean,
    /// A whole number.
    Integer,
    /// A number in [0, 1], rounded to 4 decimals.
    SampleRate,
    /// `10s`, `500ms`, `1m`.
    Duration,
    /// Like `Duration`, also `us` (microseconds).
    GranularDuration,
    /// `768kb`, `1mb`, `100b`.
    Size,
    /// `a,b,c`.
    List,
    /// `k=v,k2=v2`.
    Mapping,
    /// One of the listed words.
    Enum(&'static [&'static str]),
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Kind::String => f.write_str("string"),
            Kind::Url => f.write_str("URL"),
            Kind::Boolean => f.write_str("boolean"),
            Kind::Integer => f.write_str("integer"),
            Kind::SampleRate => f.write_str("float in [0, 1]"),
            Kind::Duration => f.write_str("duration"),
            Kind::GranularDuration => f.write_str("duration (us allowed)"),
            Kind::Size => f.write_str("size"),
            Kind::List => f.write_str("list"),
            Kind::Mapping => f.write_str("mapping"),
            Kind::Enum(words) => write!(f, "one of {}", words.join(", ")),
        }
    }
}

/// What a successful set produced: nothing to say, or a warning about an accepted value.
pub(crate) type Applied = Result<Option<String>, String>;

/// One configuration option (see [`options()`](super::options())).
#[derive(Debug)]
pub struct OptionSpec {
    pub(crate) id: Id,
    name: &'static str,
    env_var: &'static str,
    kind: Kind,
    default: &'static str,
    dynamic: bool,
    secret: bool,
    doc: &'static str,
    /// Parses a string (environment, central configuration) into the config.
    pub(crate) set: fn(&mut Config, &str) -> Applied,
    /// Shows the current value in the configuration's own format.
    pub(crate) get: fn(&Config) -> String,
}

impl OptionSpec {
    /// The Elastic option name, e.g. `api_request_time` (also the central configuration key).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The environment variable, e.g. `ELASTIC_APM_API_REQUEST_TIME`.
    pub fn env_var(&self) -> &'static str {
        self.env_var
    }
    /// The value type.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// The default as text, in the option's format (empty: unset).
    pub fn default_text(&self) -> &'static str {
        self.default
    }
    /// Whether central configuration (Kibana) may change it while the agent runs.
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }
    /// Whether the value is a secret, shown as `[REDACTED]`.
    pub fn is_secret(&self) -> bool {
        self.secret
    }
    /// One line of documentation.
    pub fn doc(&self) -> &'static str {
        self.doc
    }
}

// Setters shared by many rows, so each row stays a line or two.

fn set_string(slot: &mut Option<String>, v: &str) -> Applied {
    let v = v.trim();
    *slot = (!v.is_empty()).then(|| v.to_owned());
    Ok(None)
}

fn set_bool(slot: &mut bool, v: &str) -> Applied {
    *slot = parse::parse_bool(v)?;
    Ok(None)
}

/// Sets a duration; a bare number is accepted in `unit` with a deprecation warning.
fn set_duration(
    slot: &mut Duration,
    v: &str,
    unit: Unit,
    granular: bool,
    min: Duration,
) -> Applied {
    let d = if granular {
        parse::parse_granular_duration(v, unit)?
    } else {
        parse::parse_duration(v, unit)?
    };
    if d < min {
        return Err(format!(
            "{:?} is below the minimum {}",
            v.trim(),
            parse::format_duration(min)
        ));
    }
    *slot = d;
    Ok(bare_unit_note(v, unit))
}

fn bare_unit_note(v: &str, unit: Unit) -> Option<String> {
    parse::is_bare_number(v).then(|| {
        let unit = match unit {
            Unit::Millis => "ms",
            Unit::Secs => "s",
        };
        format!(
            "{:?} has no unit, read as {}{unit}; values without a unit are deprecated",
            v.trim(),
            v.trim()
        )
    })
}

/// Checks a value that must not be zero (a zero queue or request size cannot work).
pub(crate) fn non_zero<T: Default + PartialEq + std::fmt::Display>(v: T) -> Result<T, String> {
    if v == T::default() {
        Err(format!("{v} is not allowed (must be greater than 0)"))
    } else {
        Ok(v)
    }
}

fn show_opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

fn show_list(v: &[String]) -> String {
    v.join(", ")
}

const NO_MIN: Duration = Duration::ZERO;
const ONE_MS: Duration = Duration::from_millis(1);

/// The default of `sanitize_field_names` (specs/agents/sanitization.md; `*auth*` covers
/// `authorization`, and `*principal*` is in the Java and Python agents' defaults too).
pub(crate) const DEFAULT_SANITIZE_FIELD_NAMES: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "*key",
    "*token*",
    "*session*",
    "*credit*",
    "*card*",
    "*auth*",
    "set-cookie",
    "*principal*",
];

macro_rules! row {
    ($id:ident, $name:literal, $env:literal, $kind:expr, $default:literal, dynamic: $dynamic:literal,
     $(secret: $secret:literal,)? $doc:literal, set: $set:expr, get: $get:expr $(,)?) => {
        OptionSpec {
            id: Id::$id,
            name: $name,
            env_var: concat!("ELASTIC_APM_", $env),
            kind: $kind,
            default: $default,
            dynamic: $dynamic,
            secret: false $(|| $secret)?,
            doc: $doc,
            set: $set,
            get: $get,
        }
    };
}

/// Every option, in [`Id`] order. `env_var` is `ELASTIC_APM_` + the name in upper case (a test
/// checks it).
pub(crate) static OPTIONS: [OptionSpec; COUNT] = [
    OptionSpec {
        id: Id::ServiceName,
        name: "service_name",
        env_var: "ELASTIC_APM_SERVICE_NAME",
        kind: Kind::String,
        default: "",
        dynamic: false,
        secret: false,
        doc: "Name of the service; allowed characters a-z, A-Z, 0-9, space, _ and -. \
              Default: the executable's file name, else unknown-rust-service.",
        set: |c, v| {
            let (name, note) = super::sanitize_service_name(v)?;
            c.service_name = name;
            Ok(note)
        },
        get: |c| c.service_name.clone(),
    },
    row!(ServiceVersion, "service_version", "SERVICE_VERSION", Kind::String, "", dynamic: false,
        "Version of the service (e.g. a release or a git commit).",
        set: |c, v| set_string(&mut c.service_version, v), get: |c| show_opt(&c.service_version)),
    row!(Environment, "environment", "ENVIRONMENT", Kind::String, "", dynamic: false,
        "Environment name, e.g. production or staging.",
        set: |c, v| set_string(&mut c.environment, v), get: |c| show_opt(&c.environment)),
    row!(ServiceNodeName, "service_node_name", "SERVICE_NODE_NAME",
        Kind::String, "", dynamic: false,
        "Unique name of this service instance.",
        set: |c, v| set_string(&mut c.service_node_name, v),
        get: |c| show_opt(&c.service_node_name)),
    row!(Hostname, "hostname", "HOSTNAME", Kind::String, "", dynamic: false,
        "Host name to report instead of the detected one.",
        set: |c, v| set_string(&mut c.hostname, v), get: |c| show_opt(&c.hostname)),
    row!(ServerUrl, "server_url", "SERVER_URL", Kind::Url, "http://localhost:8200", dynamic: false,
        "URL of the APM Server (http or https).",
        set: |c, v| { c.server_url = parse::parse_url(v)?; Ok(None) },
        get: |c| c.server_url.clone()),
    row!(SecretToken, "secret_token", "SECRET_TOKEN",
        Kind::String, "", dynamic: false, secret: true,
        "Secret token sent as `Authorization: Bearer`.",
        set: |c, v| set_string(&mut c.secret_token, v), get: |c| show_opt(&c.secret_token)),
    row!(ApiKey, "api_key", "API_KEY", Kind::String, "", dynamic: false, secret: true,
        "API key sent as `Authorization: ApiKey` (used instead of the secret token when both are set).",
        set: |c, v| set_string(&mut c.api_key, v), get: |c| show_opt(&c.api_key)),
    row!(VerifyServerCert, "verify_server_cert", "VERIFY_SERVER_CERT",
        Kind::Boolean, "true", dynamic: false,
        "Whether to verify the APM Server's TLS certificate.",
        set: |c, v| set_bool(&mut c.verify_server_cert, v),
        get: |c| c.verify_server_cert.to_string()),
    row!(ServerCaCertFile, "server_ca_cert_file", "SERVER_CA_CERT_FILE", Kind::String, "",
        dynamic: false,
        "PEM file of the CA certificate(s) the APM Server's certificate is verified against, in place of the built-in roots.",
        set: |c, v| set_string(&mut c.server_ca_cert_file, v),
        get: |c| show_opt(&c.server_ca_cert_file)),
    row!(ServerCert, "server_cert", "SERVER_CERT", Kind::String, "", dynamic: false,
        "PEM file of the APM Server's own certificate, pinned: the server must present exactly it (no CA or host name check).",
        set: |c, v| set_string(&mut c.server_cert, v),
        get: |c| show_opt(&c.server_cert)),
    row!(Enabled, "enabled", "ENABLED", Kind::Boolean, "true", dynamic: false,
        "Whether the agent starts at all (no threads, no network when false).",
        set: |c, v| set_bool(&mut c.enabled, v), get: |c| c.enabled.to_string()),
    row!(Recording, "recording", "RECORDING", Kind::Boolean, "true", dynamic: true,
        "Whether the agent records and sends events; reversible while running.",
        set: |c, v| set_bool(&mut c.recording, v), get: |c| c.recording.to_string()),
    row!(TransactionSampleRate, "transaction_sample_rate", "TRANSACTION_SAMPLE_RATE",
        Kind::SampleRate, "1", dynamic: true,
        "Share of transactions sampled, in [0, 1], rounded to 4 decimals.",
        set: |c, v| { c.transaction_sample_rate = parse::parse_sample_rate(v)?; Ok(None) },
        get: |c| c.transaction_sample_rate.to_string()),
    row!(TransactionMaxSpans, "transaction_max_spans", "TRANSACTION_MAX_SPANS",
        Kind::Integer, "500", dynamic: true,
        "Maximum number of spans recorded per transaction.",
        set: |c, v| { c.transaction_max_spans = parse::parse_int(v)?; Ok(None) },
        get: |c| c.transaction_max_spans.to_string()),
    row!(ApiRequestSize, "api_request_size", "API_REQUEST_SIZE", Kind::Size, "768kb", dynamic: true,
        "Maximum compressed size of one request to the APM Server.",
        set: |c, v| {
            c.api_request_size = non_zero(parse::parse_size(v)?)?;
            Ok(parse::is_bare_number(v).then(|| format!(
                "{:?} has no unit, read as bytes; values without a unit are deprecated", v.trim())))
        },
        get: |c| parse::format_size(c.api_request_size)),
    row!(ApiRequestTime, "api_request_time", "API_REQUEST_TIME",
        Kind::Duration, "10s", dynamic: true,
        "Maximum time a request to the APM Server stays open.",
        set: |c, v| set_duration(&mut c.api_request_time, v, Unit::Secs, false, ONE_MS),
        get: |c| parse::format_duration(c.api_request_time)),
    row!(ServerTimeout, "server_timeout", "SERVER_TIMEOUT", Kind::Duration, "5s", dynamic: true,
        "Timeout of a request to the APM Server; 0 disables the timeout.",
        set: |c, v| set_duration(&mut c.server_timeout, v, Unit::Secs, false, NO_MIN),
        get: |c| parse::format_duration(c.server_timeout)),
    row!(MaxQueueSize, "max_queue_size", "MAX_QUEUE_SIZE", Kind::Integer, "65536", dynamic: false,
        "Maximum number of events waiting for the transport; more are dropped and counted.",
        set: |c, v| { c.max_queue_size = non_zero(parse::parse_int(v)?)?; Ok(None) },
        get: |c| c.max_queue_size.to_string()),
    row!(GlobalLabels, "global_labels", "GLOBAL_LABELS", Kind::Mapping, "", dynamic: false,
        "Labels added to every event, `key=value,key2=value2`.",
        set: |c, v| { c.global_labels = parse::parse_mapping(v)?; Ok(None) },
        get: |c| c.global_labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")),
    row!(LogLevel, "log_level", "LOG_LEVEL", Kind::Enum(LogLevel::NAMES), "info", dynamic: true,
        "Level of the agent's own log.",
        set: |c, v| { c.log_level = LogLevel::parse_lenient(v)?; Ok(None) },
        get: |c| c.log_level.as_str().to_owned()),
    row!(MetricsInterval, "metrics_interval", "METRICS_INTERVAL",
        Kind::Duration, "30s", dynamic: false,
        "Interval between metric reports; 0s disables metrics.",
        set: |c, v| set_duration(&mut c.metrics_interval, v, Unit::Secs, false, NO_MIN),
        get: |c| parse::format_duration(c.metrics_interval)),
    row!(BreakdownMetrics, "breakdown_metrics", "BREAKDOWN_METRICS",
        Kind::Boolean, "true", dynamic: false,
        "Whether to report breakdown metrics (self time per span type).",
        set: |c, v| set_bool(&mut c.breakdown_metrics, v),
        get: |c| c.breakdown_metrics.to_string()),
    row!(CentralConfig, "central_config", "CENTRAL_CONFIG", Kind::Boolean, "true", dynamic: false,
        "Whether to poll the APM Server for central configuration (Kibana).",
        set: |c, v| set_bool(&mut c.central_config, v), get: |c| c.central_config.to_string()),
    row!(DisableMetrics, "disable_metrics", "DISABLE_METRICS", Kind::List, "", dynamic: false,
        "Wildcard patterns of metric names not to report.",
        set: |c, v| { c.disable_metrics = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.disable_metrics)),
    row!(SanitizeFieldNames, "sanitize_field_names", "SANITIZE_FIELD_NAMES", Kind::List,
        "password, passwd, pwd, secret, *key, *token*, *session*, *credit*, *card*, *auth*, set-cookie, *principal*",
        dynamic: true,
        "Wildcard patterns of field names (headers, form fields) whose values are redacted; replaces the default list.",
        set: |c, v| { c.sanitize_field_names = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.sanitize_field_names)),
    row!(CaptureHeaders, "capture_headers", "CAPTURE_HEADERS", Kind::Boolean, "true", dynamic: true,
        "Whether to capture HTTP request and response headers.",
        set: |c, v| set_bool(&mut c.capture_headers, v), get: |c| c.capture_headers.to_string()),
    row!(CaptureBody, "capture_body", "CAPTURE_BODY",
        Kind::Enum(CaptureBody::NAMES), "off", dynamic: true,
        "Whether to capture request bodies: off, errors, transactions or all.",
        set: |c, v| { c.capture_body = CaptureBody::parse(v)?; Ok(None) },
        get: |c| c.capture_body.as_str().to_owned()),
    row!(CloudProvider, "cloud_provider", "CLOUD_PROVIDER",
        Kind::Enum(CloudProvider::NAMES), "auto", dynamic: false,
        "Where to look for cloud metadata: auto, azure, aws, gcp or none (Azure App Service and Functions are detected from their environment; otherwise the provider's metadata endpoint is asked, on the agent's thread, before the first request: auto tries AWS, GCP and Azure within a second in all).",
        set: |c, v| { c.cloud_provider = CloudProvider::parse(v)?; Ok(None) },
        get: |c| c.cloud_provider.as_str().to_owned()),
    row!(TransactionIgnoreUrls, "transaction_ignore_urls", "TRANSACTION_IGNORE_URLS",
        Kind::List, "", dynamic: true,
        "Wildcard patterns of URL paths for which no transaction is recorded.",
        set: |c, v| { c.transaction_ignore_urls = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.transaction_ignore_urls)),
    row!(TransactionIgnoreUserAgents, "transaction_ignore_user_agents", "TRANSACTION_IGNORE_USER_AGENTS",
        Kind::List, "", dynamic: true,
        "Wildcard patterns of User-Agent headers for which no transaction is recorded (e.g. health checks).",
        set: |c, v| { c.transaction_ignore_user_agents = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.transaction_ignore_user_agents)),
    row!(TransactionNameGroups, "transaction_name_groups", "TRANSACTION_NAME_GROUPS",
        Kind::List, "", dynamic: true,
        "Wildcard patterns that group transaction names: a name matching one is replaced by the pattern.",
        set: |c, v| { c.transaction_name_groups = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.transaction_name_groups)),
    row!(IgnoreMessageQueues, "ignore_message_queues", "IGNORE_MESSAGE_QUEUES",
        Kind::List, "", dynamic: true,
        "Wildcard patterns of queues, topics and exchanges whose messages are not traced: no span for a message sent to one, no transaction for a message received from one.",
        set: |c, v| { c.ignore_message_queues = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.ignore_message_queues)),
    row!(ExitSpanMinDuration, "exit_span_min_duration", "EXIT_SPAN_MIN_DURATION",
        Kind::GranularDuration, "0ms", dynamic: true,
        "Discardable exit spans shorter than this are dropped (counted in span_count.dropped).",
        set: |c, v| set_duration(&mut c.exit_span_min_duration, v, Unit::Millis, true, NO_MIN),
        get: |c| parse::format_duration(c.exit_span_min_duration)),
    row!(SpanCompressionEnabled, "span_compression_enabled", "SPAN_COMPRESSION_ENABLED",
        Kind::Boolean, "true", dynamic: true,
        "Whether consecutive similar exit spans are compressed into one composite span.",
        set: |c, v| set_bool(&mut c.span_compression_enabled, v),
        get: |c| c.span_compression_enabled.to_string()),
    row!(SpanCompressionExactMatchMaxDuration, "span_compression_exact_match_max_duration", "SPAN_COMPRESSION_EXACT_MATCH_MAX_DURATION",
        Kind::Duration, "50ms", dynamic: true,
        "Exact-match spans up to this duration are compressed.",
        set: |c, v| set_duration(&mut c.span_compression_exact_match_max_duration, v, Unit::Millis, false, NO_MIN),
        get: |c| parse::format_duration(c.span_compression_exact_match_max_duration)),
    row!(SpanCompressionSameKindMaxDuration, "span_compression_same_kind_max_duration", "SPAN_COMPRESSION_SAME_KIND_MAX_DURATION",
        Kind::Duration, "0ms", dynamic: true,
        "Same-kind spans up to this duration are compressed; 0ms disables the strategy.",
        set: |c, v| set_duration(&mut c.span_compression_same_kind_max_duration, v, Unit::Millis, false, NO_MIN),
        get: |c| parse::format_duration(c.span_compression_same_kind_max_duration)),
    row!(SpanStackTraceMinDuration, "span_stack_trace_min_duration", "SPAN_STACK_TRACE_MIN_DURATION",
        Kind::Duration, "5ms", dynamic: true,
        "Spans at least this long get a stack trace; 0ms: all spans; negative (-1ms): none.",
        set: |c, v| {
            let (negative, d) = parse::parse_signed_duration(v, Unit::Millis, false)?;
            c.span_stack_trace_min_duration = (!negative).then_some(d);
            Ok(bare_unit_note(v, Unit::Millis))
        },
        get: |c| c.span_stack_trace_min_duration.map_or_else(|| "-1ms".to_owned(), parse::format_duration)),
    row!(StackTraceLimit, "stack_trace_limit", "STACK_TRACE_LIMIT",
        Kind::Integer, "50", dynamic: true,
        "Maximum number of frames per stack trace; 0: none; -1: all.",
        set: |c, v| {
            let n: i64 = parse::parse_int(v)?;
            c.stack_trace_limit = if n < 0 { None } else {
                Some(usize::try_from(n).map_err(|_| format!("{n} is too large"))?)
            };
            Ok(None)
        },
        get: |c| c.stack_trace_limit.map_or_else(|| "-1".to_owned(), |n| n.to_string())),
    row!(IgnoreExceptions, "ignore_exceptions", "IGNORE_EXCEPTIONS",
        Kind::List, "", dynamic: true,
        "Wildcard patterns of error type paths not to report (e.g. `*::ParseIntError`, `std::io::error::Error`); `panic` matches panics.",
        set: |c, v| { c.ignore_exceptions = parse::parse_list(v); Ok(None) },
        get: |c| show_list(&c.ignore_exceptions)),
    row!(TraceContinuationStrategy, "trace_continuation_strategy", "TRACE_CONTINUATION_STRATEGY",
        Kind::Enum(TraceContinuationStrategy::NAMES), "continue", dynamic: true,
        "Use of an incoming traceparent: continue, restart, or restart_external (restart unless tracestate has `es`).",
        set: |c, v| { c.trace_continuation_strategy = TraceContinuationStrategy::parse(v)?; Ok(None) },
        get: |c| c.trace_continuation_strategy.as_str().to_owned()),
    row!(LongFieldMaxLength, "long_field_max_length", "LONG_FIELD_MAX_LENGTH",
        Kind::Integer, "10000", dynamic: true,
        "Maximum characters of long text fields (error messages, database statements, request bodies); longer ones are cut.",
        set: |c, v| { c.long_field_max_length = non_zero(parse::parse_int(v)?)?; Ok(None) },
        get: |c| c.long_field_max_length.to_string()),
    row!(UseElasticTraceparentHeader, "use_elastic_traceparent_header", "USE_ELASTIC_TRACEPARENT_HEADER",
        Kind::Boolean, "true", dynamic: true,
        "Whether outgoing requests also carry the legacy `elastic-apm-traceparent` header (same value as `traceparent`).",
        set: |c, v| set_bool(&mut c.use_elastic_traceparent_header, v),
        get: |c| c.use_elastic_traceparent_header.to_string()),
];

/// The option named `name` (the Elastic name, e.g. `transaction_sample_rate`; case-insensitive).
pub(crate) fn find(name: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.name.eq_ignore_ascii_case(name))
}

/// The option whose environment variable is `var`.
pub(crate) fn find_env(var: &str) -> Option<&'static OptionSpec> {
    OPTIONS.iter().find(|o| o.env_var == var)
}
