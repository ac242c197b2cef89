//! Configuration: defaults, values set in code through [`ConfigBuilder`], and `ELASTIC_APM_*`
//! environment variables, with Elastic's precedence (central config > environment > code >
//! default, specs/agents/configuration.md). No I/O beyond reading the environment and the
//! executable's name.
//!
//! Every option is a row of one table ([`options()`]): the environment path, the builder's
//! source tracking, [`Config::describe`], `Debug` and the README table all iterate it. An invalid
//! value never panics: it becomes one warning in [`Config::warnings`] and the previous value
//! (default or code) stays.

use std::fmt;
use std::path::Path;
use std::time::Duration;

mod options;
pub(crate) mod parse;
#[cfg(test)]
mod tests;

use options::{Id, COUNT, DEFAULT_SANITIZE_FIELD_NAMES, OPTIONS};
pub use options::{Kind, OptionSpec};

/// Where an option's effective value comes from, lowest precedence first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The agent's default.
    Default,
    /// Set in code through [`ConfigBuilder`].
    Code,
    /// An `ELASTIC_APM_*` environment variable.
    Environment,
    /// Central configuration (Kibana), received from the APM Server.
    Central,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Default => "default",
            Source::Code => "code",
            Source::Environment => "environment",
            Source::Central => "central config",
        })
    }
}

/// Declares an enum whose values are written as fixed words (case-insensitive when parsed).
macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($(#[$vmeta:meta])* $variant:ident = $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }
        impl $name {
            pub(crate) const NAMES: &'static [&'static str] = &[$($word),+];
            /// The word for this value, as written in configuration.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
            pub(crate) fn parse(text: &str) -> Result<Self, String> {
                let t = text.trim();
                $(if t.eq_ignore_ascii_case($word) { return Ok($name::$variant); })+
                Err(format!("invalid {} {t:?} (expected one of: {})", $what, Self::NAMES.join(", ")))
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// `log_level`: the agent's own log verbosity (specs/agents/logging.md).
    LogLevel, "log level" {
        /// Everything.
        Trace = "trace",
        /// Debugging detail.
        Debug = "debug",
        /// Normal operation (the default).
        Info = "info",
        /// Problems the agent works around.
        Warning = "warning",
        /// Failures.
        Error = "error",
        /// Failures that stop the agent.
        Critical = "critical",
        /// No logging.
        Off = "off",
    }
);

impl LogLevel {
    /// Also accepts `warn`, the `log` crate's spelling.
    pub(crate) fn parse_lenient(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("warn") {
            return Ok(LogLevel::Warning);
        }
        LogLevel::parse(text)
    }
}

word_enum!(
    /// `capture_body`: which request bodies to capture.
    CaptureBody, "capture_body value" {
        /// Never (the default).
        Off = "off",
        /// For error events only.
        Errors = "errors",
        /// For transactions only.
        Transactions = "transactions",
        /// For both.
        All = "all",
    }
);

word_enum!(
    /// `cloud_provider`: where to look for cloud metadata (`metadata.cloud`).
    CloudProvider, "cloud_provider value" {
        /// Every provider, in turn (the default): Azure App Service and Azure Functions from
        /// their environment variables, then the AWS, Google Cloud and Azure metadata
        /// endpoints, with short timeouts and a budget of a second in all.
        Auto = "auto",
        /// Azure only: App Service and Functions from their environment variables, else the
        /// instance metadata service of a virtual machine.
        Azure = "azure",
        /// Amazon Web Services only: the EC2 instance identity document (IMDSv2).
        Aws = "aws",
        /// Google Cloud only: the metadata server.
        Gcp = "gcp",
        /// No cloud metadata.
        None = "none",
    }
);

word_enum!(
    /// `trace_continuation_strategy`: what to do with an incoming `traceparent`
    /// (specs/agents/trace-continuation.md).
    TraceContinuationStrategy, "trace continuation strategy" {
        /// Continue the incoming trace (the default).
        Continue = "continue",
        /// Always start a new trace, linked to the incoming one.
        Restart = "restart",
        /// Start a new trace unless `tracestate` carries an `es` entry.
        RestartExternal = "restart_external",
    }
);

/// The agent's configuration. Build it with [`Config::builder`] or [`Config::from_env`].
///
/// `Debug` shows every option; `secret_token` and `api_key` appear as `[REDACTED]`.
#[derive(Clone)]
pub struct Config {
    pub(crate) service_name: String,
    pub(crate) service_version: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) service_node_name: Option<String>,
    pub(crate) hostname: Option<String>,
    /// Without trailing `/`.
    pub(crate) server_url: String,
    pub(crate) secret_token: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) verify_server_cert: bool,
    /// PEM file of the certificates that sign the APM Server's (instead of the built-in roots).
    pub(crate) server_ca_cert_file: Option<String>,
    /// PEM file of the APM Server's own certificate, pinned.
    pub(crate) server_cert: Option<String>,
    pub(crate) enabled: bool,
    pub(crate) recording: bool,
    /// In [0, 1], already rounded to 4 decimals.
    pub(crate) transaction_sample_rate: f64,
    pub(crate) transaction_max_spans: u32,
    /// Bytes, > 0.
    pub(crate) api_request_size: u64,
    /// At least 1ms.
    pub(crate) api_request_time: Duration,
    /// `Duration::ZERO` means no timeout.
    pub(crate) server_timeout: Duration,
    /// Events, > 0.
    pub(crate) max_queue_size: usize,
    pub(crate) global_labels: Vec<(String, String)>,
    /// Problems found while reading the configuration, reported once when the agent starts.
    pub(crate) warnings: Vec<String>,
    pub(crate) log_level: LogLevel,
    /// `Duration::ZERO` disables metrics.
    pub(crate) metrics_interval: Duration,
    pub(crate) breakdown_metrics: bool,
    pub(crate) central_config: bool,
    /// Wildcard patterns.
    pub(crate) disable_metrics: Vec<String>,
    /// Wildcard patterns.
    pub(crate) sanitize_field_names: Vec<String>,
    pub(crate) capture_headers: bool,
    pub(crate) capture_body: CaptureBody,
    pub(crate) cloud_provider: CloudProvider,
    /// Wildcard patterns.
    pub(crate) transaction_ignore_urls: Vec<String>,
    pub(crate) ignore_message_queues: Vec<String>,
    pub(crate) ignore_exceptions: Vec<String>,
    pub(crate) transaction_ignore_user_agents: Vec<String>,
    pub(crate) transaction_name_groups: Vec<String>,
    pub(crate) exit_span_min_duration: Duration,
    pub(crate) span_compression_enabled: bool,
    pub(crate) span_compression_exact_match_max_duration: Duration,
    /// `Duration::ZERO` disables same-kind compression.
    pub(crate) span_compression_same_kind_max_duration: Duration,
    /// `None`: never capture span stack traces; `Some(ZERO)`: always.
    pub(crate) span_stack_trace_min_duration: Option<Duration>,
    /// `None`: all frames; `Some(0)`: no stack traces.
    pub(crate) stack_trace_limit: Option<usize>,
    pub(crate) trace_continuation_strategy: TraceContinuationStrategy,
    /// Characters, > 0.
    pub(crate) long_field_max_length: usize,
    pub(crate) use_elastic_traceparent_header: bool,
    /// Source of each option, indexed by [`Id`].
    sources: [Source; COUNT],
}

impl Default for Config {
    /// The defaults only (no environment); the service name comes from the executable.
    fn default() -> Self {
        Config {
            service_name: service_name_from_exe(std::env::current_exe().ok().as_deref()),
            service_version: None,
            environment: None,
            service_node_name: None,
            hostname: None,
            server_url: String::from("http://localhost:8200"),
            secret_token: None,
            api_key: None,
            verify_server_cert: true,
            server_ca_cert_file: None,
            server_cert: None,
            enabled: true,
            recording: true,
            transaction_sample_rate: 1.0,
            transaction_max_spans: 500,
            api_request_size: 768 * 1024,
            api_request_time: Duration::from_secs(10),
            server_timeout: Duration::from_secs(5),
            // Events the transport thread may fall behind by: while a request waits it drains
            // the queue only every kernel tick or so (10 ms), and a busy machine can keep it
            // off the CPU for tens of milliseconds. 65 536 events are 131 ms at 500 000 events/s
            // (BENCHMARKS.md §5), and take 7 MiB when full (112 bytes per event, plus what a
            // transaction or error keeps on the heap). The other agents' defaults (Node.js 1024,
            // Ruby 1000) drop at such rates.
            max_queue_size: 65_536,
            global_labels: Vec::new(),
            warnings: Vec::new(),
            log_level: LogLevel::Info,
            metrics_interval: Duration::from_secs(30),
            breakdown_metrics: true,
            central_config: true,
            disable_metrics: Vec::new(),
            sanitize_field_names: DEFAULT_SANITIZE_FIELD_NAMES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            capture_headers: true,
            capture_body: CaptureBody::Off,
            cloud_provider: CloudProvider::Auto,
            transaction_ignore_urls: Vec::new(),
            ignore_message_queues: Vec::new(),
            ignore_exceptions: Vec::new(),
            transaction_ignore_user_agents: Vec::new(),
            transaction_name_groups: Vec::new(),
            exit_span_min_duration: Duration::ZERO,
            span_compression_enabled: true,
            span_compression_exact_match_max_duration: Duration::from_millis(50),
            span_compression_same_kind_max_duration: Duration::ZERO,
            span_stack_trace_min_duration: Some(Duration::from_millis(5)),
            stack_trace_limit: Some(50),
            trace_continuation_strategy: TraceContinuationStrategy::Continue,
            long_field_max_length: 10_000,
            use_elastic_traceparent_header: true,
            sources: [Source::Default; COUNT],
        }
    }
}

/// The name used when none is configured and the executable's name is unusable
/// (specs/agents/configuration.md, "Zero-configuration support": `unknown-${agent}-service`).
pub(crate) const UNKNOWN_SERVICE_NAME: &str = "unknown-rust-service";

/// The default service name: the executable's file name (without `.exe`), with characters
/// outside `[a-zA-Z0-9 _-]` replaced by `_`.
fn service_name_from_exe(exe: Option<&Path>) -> String {
    let name = exe
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .map(|n| {
            n.strip_suffix(std::env::consts::EXE_SUFFIX)
                .filter(|s| !s.is_empty())
                .unwrap_or(n)
        });
    match name {
        Some(n) if !n.trim().is_empty() => replace_invalid_chars(n.trim()),
        _ => UNKNOWN_SERVICE_NAME.to_owned(),
    }
}

fn replace_invalid_chars(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks a configured service name: empty is invalid; characters outside `[a-zA-Z0-9 _-]` (the
/// set the APM UI allows) are replaced by `_` with a warning, rather than refusing the name.
fn sanitize_service_name(text: &str) -> Result<(String, Option<String>), String> {
    let name = text.trim();
    if name.is_empty() {
        return Err("the service name is empty".to_owned());
    }
    let clean = replace_invalid_chars(name);
    let note = (clean != name).then(|| {
        format!(
            "service name {name:?} has characters other than a-z, A-Z, 0-9, space, _ and -; \
             using {clean:?}"
        )
    });
    Ok((clean, note))
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder {
            config: Config::default(),
            env: false,
        }
    }

    /// The defaults overridden by the `ELASTIC_APM_*` environment variables
    /// (`Config::builder().with_env().build()`).
    pub fn from_env() -> Config {
        Config::builder().with_env().build()
    }

    /// Every option with its effective value and where it comes from, in table order, to print
    /// the configuration at start. Secrets are `[REDACTED]`; unset values are empty.
    pub fn describe(&self) -> Vec<(&'static str, String, Source)> {
        OPTIONS
            .iter()
            .map(|o| (o.name(), self.shown(o), self.sources[o.id as usize]))
            .collect()
    }

    /// Where the value of option `name` (e.g. `transaction_sample_rate`) comes from; `None` for
    /// an unknown name.
    pub fn source(&self, name: &str) -> Option<Source> {
        options::find(name).map(|o| self.sources[o.id as usize])
    }

    /// Problems found while building this configuration (invalid values, unknown
    /// `ELASTIC_APM_*` variables), one sentence each. The agent logs them once at start.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Applies one option given as a string, exactly as an environment variable is read; this is
    /// also the entry point of central configuration. `name` is the Elastic option name.
    ///
    /// On success returns an optional warning about an accepted value (a unit missing, a service
    /// name sanitized). On error (unknown name, invalid value) nothing changes and the reason is
    /// returned, e.g. `sample rate 1.5 out of range [0, 1]`; nothing is added to
    /// [`Config::warnings`] either way.
    pub(crate) fn set_option(
        &mut self,
        name: &str,
        value: &str,
        source: Source,
    ) -> Result<Option<String>, String> {
        let option = options::find(name).ok_or_else(|| format!("unknown option {name:?}"))?;
        let note = (option.set)(self, value)?;
        self.sources[option.id as usize] = source;
        Ok(note)
    }

    /// Reads the `ELASTIC_APM_*` variables through `lookup`; `names` are the variables present,
    /// used only to report unknown ones. An empty value counts as unset.
    fn apply_env(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
        names: impl IntoIterator<Item = String>,
    ) {
        for option in &OPTIONS {
            let Some(value) = lookup(option.env_var()) else {
                continue;
            };
            if value.trim().is_empty() {
                continue;
            }
            let result = self.set_option(option.name(), &value, Source::Environment);
            self.report(option, option.env_var(), result);
        }
        self.warn_unknown_env(names);
    }

    /// Turns the result of a set into at most one warning naming the option as `label`.
    fn report(&mut self, option: &OptionSpec, label: &str, result: Result<Option<String>, String>) {
        let warning = match result {
            Ok(None) => return,
            Ok(Some(note)) => format!("{label}: {note}"),
            Err(error) => {
                let value = match self.shown(option) {
                    v if v.is_empty() => "(unset)".to_owned(),
                    v => v,
                };
                let fallback = match self.sources[option.id as usize] {
                    Source::Default => format!("the default {value}"),
                    Source::Code => format!("the value set in code, {value}"),
                    Source::Environment => format!("the environment's value, {value}"),
                    Source::Central => format!("the central config value, {value}"),
                };
                format!("{label}: {error}; using {fallback}")
            }
        };
        self.warnings.push(warning);
    }

    /// One warning listing the `ELASTIC_APM_*` variables no option reads, with the closest known
    /// name for likely typos.
    fn warn_unknown_env(&mut self, names: impl IntoIterator<Item = String>) {
        let mut unknown: Vec<String> = names
            .into_iter()
            .filter(|n| n.starts_with("ELASTIC_APM_") && options::find_env(n).is_none())
            .collect();
        if unknown.is_empty() {
            return;
        }
        unknown.sort();
        unknown.dedup();
        let listed: Vec<String> = unknown
            .iter()
            .map(|name| match closest_env_var(name) {
                Some(known) => format!("{name} (did you mean {known}?)"),
                None => name.clone(),
            })
            .collect();
        self.warnings.push(format!(
            "unknown environment variable{} ignored: {}",
            if listed.len() == 1 { "" } else { "s" },
            listed.join(", ")
        ));
    }

    /// The option's value as text, secrets redacted.
    fn shown(&self, option: &OptionSpec) -> String {
        let value = (option.get)(self);
        if option.is_secret() && !value.is_empty() {
            "[REDACTED]".to_owned()
        } else {
            value
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Config");
        for option in &OPTIONS {
            s.field(option.name(), &self.shown(option));
        }
        s.field("warnings", &self.warnings).finish()
    }
}

/// The known variable within edit distance 3 of `name`, if any.
fn closest_env_var(name: &str) -> Option<&'static str> {
    OPTIONS
        .iter()
        .map(|o| (edit_distance(name, o.env_var()), o.env_var()))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance over bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

/// Every option, in a stable order: name, environment variable, type, default, whether it is
/// dynamic, doc line. The README's configuration table is [`markdown_table`].
pub fn options() -> &'static [OptionSpec] {
    &OPTIONS
}

/// The options as a Markdown table, for the README.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Option | Environment variable | Type | Default | Dynamic | Description |\n\
         |---|---|---|---|---|---|\n",
    );
    for o in &OPTIONS {
        let default = if o.default_text().is_empty() {
            String::new()
        } else {
            format!("`{}`", o.default_text())
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} | {} | {} |\n",
            o.name(),
            o.env_var(),
            o.kind(),
            default,
            if o.is_dynamic() { "yes" } else { "no" },
            o.doc()
        ));
    }
    out
}

/// Builds a [`Config`] from defaults and values set in code; with [`ConfigBuilder::with_env`],
/// `ELASTIC_APM_*` variables override them at [`ConfigBuilder::build`].
///
/// Setters never fail: an invalid value (e.g. a sample rate of 1.5) is reported in
/// [`Config::warnings`] and the previous value is kept.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    config: Config,
    env: bool,
}

/// Declares builder setters that take a value every option of that type accepts.
macro_rules! plain_setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => $id:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name(self, value: $ty) -> Self {
            self.code(Id::$id, Ok(value), |c, v| c.$name = v)
        }
    )+};
}

/// Declares builder setters that go through the option's string parser (names, URLs), so code
/// and environment apply the same checks.
macro_rules! text_setters {
    ($($(#[$doc:meta])* $name:ident => $id:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name(self, value: impl Into<String>) -> Self {
            self.code_text(Id::$id, &value.into())
        }
    )+};
}

/// Declares builder setters for list options: items trimmed, empty items dropped.
macro_rules! list_setters {
    ($($(#[$doc:meta])* $name:ident => $id:ident;)+) => {$(
        $(#[$doc])*
        pub fn $name<I: IntoIterator<Item = S>, S: Into<String>>(self, items: I) -> Self {
            let items = items
                .into_iter()
                .map(|s| s.into().trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            self.code(Id::$id, Ok(items), |c, v| c.$name = v)
        }
    )+};
}

impl ConfigBuilder {
    /// Lets `ELASTIC_APM_*` environment variables override the values set in code (read at
    /// [`ConfigBuilder::build`], whatever the call order).
    pub fn with_env(mut self) -> Self {
        self.env = true;
        self
    }

    /// The configuration, with the environment applied if [`ConfigBuilder::with_env`] was
    /// called. Never fails; see [`Config::warnings`].
    pub fn build(self) -> Config {
        if !self.env {
            return self.config;
        }
        let names = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .filter(|k| k.starts_with("ELASTIC_APM_"));
        let lookup = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        self.build_with(lookup, names)
    }

    /// [`ConfigBuilder::build`] with the environment read through `lookup` (tests pass a map).
    fn build_with(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
        names: impl IntoIterator<Item = String>,
    ) -> Config {
        if self.env {
            self.config.apply_env(lookup, names);
        }
        self.config
    }

    /// Sets a checked value from code, or reports why it was refused.
    fn code<T>(
        mut self,
        id: Id,
        value: Result<T, String>,
        assign: impl FnOnce(&mut Config, T),
    ) -> Self {
        let option = &OPTIONS[id as usize];
        match value {
            Ok(v) => {
                assign(&mut self.config, v);
                self.config.sources[id as usize] = Source::Code;
            }
            Err(e) => {
                let label = format!("{} (set in code)", option.name());
                self.config.report(option, &label, Err(e));
            }
        }
        self
    }

    /// Sets an option from code through its string parser.
    fn code_text(mut self, id: Id, value: &str) -> Self {
        let option = &OPTIONS[id as usize];
        let result = self.config.set_option(option.name(), value, Source::Code);
        let label = format!("{} (set in code)", option.name());
        self.config.report(option, &label, result);
        self
    }

    text_setters! {
        /// `service_name`: allowed characters a-z, A-Z, 0-9, space, `_` and `-` (others become
        /// `_`, with a warning). Default: the executable's file name.
        service_name => ServiceName;
        /// `service_version`, e.g. a release or a git commit.
        service_version => ServiceVersion;
        /// `environment`, e.g. `production`.
        environment => Environment;
        /// `service_node_name`: unique name of this instance.
        service_node_name => ServiceNodeName;
        /// `hostname`: reported instead of the detected host name.
        hostname => Hostname;
        /// `server_url`: the APM Server, `http://` or `https://` (default
        /// `http://localhost:8200`).
        server_url => ServerUrl;
        /// `secret_token` for the APM Server.
        secret_token => SecretToken;
        /// `api_key` for the APM Server.
        api_key => ApiKey;
        /// `server_ca_cert_file`: a PEM file with the certificate(s) the APM Server's
        /// certificate is verified against, in place of the built-in roots (self-signed or
        /// private CAs).
        server_ca_cert_file => ServerCaCertFile;
        /// `server_cert`: a PEM file with the APM Server's own certificate, pinned: the
        /// server must present exactly this certificate, which is then trusted without a CA
        /// or a host name check (a self-signed server reached by address, say).
        server_cert => ServerCert;
    }

    plain_setters! {
        /// `verify_server_cert` (default true).
        verify_server_cert: bool => VerifyServerCert;
        /// `enabled`: false starts no agent at all (default true).
        enabled: bool => Enabled;
        /// `recording`: false records nothing, reversibly (default true).
        recording: bool => Recording;
        /// `transaction_max_spans` (default 500).
        transaction_max_spans: u32 => TransactionMaxSpans;
        /// `server_timeout`; `Duration::ZERO` disables the timeout (default 5s).
        server_timeout: Duration => ServerTimeout;
        /// `log_level` (default info).
        log_level: LogLevel => LogLevel;
        /// `metrics_interval`; `Duration::ZERO` disables metrics (default 30s).
        metrics_interval: Duration => MetricsInterval;
        /// `breakdown_metrics` (default true).
        breakdown_metrics: bool => BreakdownMetrics;
        /// `central_config`: poll the APM Server for Kibana's configuration (default true).
        central_config: bool => CentralConfig;
        /// `capture_headers` (default true).
        capture_headers: bool => CaptureHeaders;
        /// `capture_body` (default off).
        capture_body: CaptureBody => CaptureBody;
        /// `cloud_provider` (default auto).
        cloud_provider: CloudProvider => CloudProvider;
        /// `exit_span_min_duration` (default 0ms).
        exit_span_min_duration: Duration => ExitSpanMinDuration;
        /// `span_compression_enabled` (default true).
        span_compression_enabled: bool => SpanCompressionEnabled;
        /// `span_compression_exact_match_max_duration` (default 50ms).
        span_compression_exact_match_max_duration: Duration => SpanCompressionExactMatchMaxDuration;
        /// `span_compression_same_kind_max_duration`; zero disables (default 0ms).
        span_compression_same_kind_max_duration: Duration => SpanCompressionSameKindMaxDuration;
        /// `span_stack_trace_min_duration`: `None` never captures span stack traces,
        /// `Some(Duration::ZERO)` always does (default 5ms).
        span_stack_trace_min_duration: Option<Duration> => SpanStackTraceMinDuration;
        /// `stack_trace_limit`: frames per stack trace; `None` for all, `Some(0)` for none
        /// (default 50).
        stack_trace_limit: Option<usize> => StackTraceLimit;
        /// `trace_continuation_strategy` (default continue).
        trace_continuation_strategy: TraceContinuationStrategy => TraceContinuationStrategy;
        /// `use_elastic_traceparent_header`: outgoing requests also carry
        /// `elastic-apm-traceparent` (default true).
        use_elastic_traceparent_header: bool => UseElasticTraceparentHeader;
    }

    list_setters! {
        /// `disable_metrics`: wildcard patterns of metric names not to report.
        disable_metrics => DisableMetrics;
        /// `sanitize_field_names`: wildcard patterns of field names to redact; replaces the
        /// default list.
        sanitize_field_names => SanitizeFieldNames;
        /// `transaction_ignore_urls`: wildcard patterns of URL paths not to trace.
        transaction_ignore_urls => TransactionIgnoreUrls;
        /// `ignore_message_queues`: wildcard patterns of queues, topics and exchanges whose
        /// messages are not traced.
        ignore_message_queues => IgnoreMessageQueues;
        /// `ignore_exceptions`: wildcard patterns of error type paths (as
        /// `std::any::type_name` writes them) not to report; `panic` matches panics.
        ignore_exceptions => IgnoreExceptions;
        /// `transaction_ignore_user_agents`: wildcard patterns of User-Agent headers not to trace.
        transaction_ignore_user_agents => TransactionIgnoreUserAgents;
        /// `transaction_name_groups`: wildcard patterns grouping transaction names.
        transaction_name_groups => TransactionNameGroups;
    }

    /// `transaction_sample_rate` in [0, 1], rounded half away from zero to 4 decimals
    /// (default 1). Out of range or NaN: reported, previous value kept.
    pub fn transaction_sample_rate(self, rate: f64) -> Self {
        self.code(
            Id::TransactionSampleRate,
            parse::check_sample_rate(rate),
            |c, v| c.transaction_sample_rate = v,
        )
    }

    /// `api_request_size` in bytes, greater than 0 (default 768kb).
    pub fn api_request_size(self, bytes: u64) -> Self {
        self.code(Id::ApiRequestSize, options::non_zero(bytes), |c, v| {
            c.api_request_size = v
        })
    }

    /// `api_request_time`, at least 1ms (default 10s).
    pub fn api_request_time(self, time: Duration) -> Self {
        let checked = if time < Duration::from_millis(1) {
            Err(format!(
                "{} is below the minimum 1ms",
                parse::format_duration(time)
            ))
        } else {
            Ok(time)
        };
        self.code(Id::ApiRequestTime, checked, |c, v| c.api_request_time = v)
    }

    /// `long_field_max_length` in characters, greater than 0 (default 10000): error messages,
    /// database statements and request bodies longer than this are cut.
    pub fn long_field_max_length(self, chars: usize) -> Self {
        self.code(Id::LongFieldMaxLength, options::non_zero(chars), |c, v| {
            c.long_field_max_length = v
        })
    }

    /// `max_queue_size` in events, greater than 0 (default 65 536).
    pub fn max_queue_size(self, events: usize) -> Self {
        self.code(Id::MaxQueueSize, options::non_zero(events), |c, v| {
            c.max_queue_size = v
        })
    }

    /// `global_labels`: replaces all global labels.
    pub fn global_labels<I, K, V>(self, labels: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let labels: Vec<(String, String)> = labels
            .into_iter()
            .map(|(k, v)| (k.into().trim().to_owned(), v.into().trim().to_owned()))
            .collect();
        let checked = match labels.iter().find(|(k, _)| k.is_empty()) {
            Some((_, v)) => Err(format!("label with an empty key (value {v:?})")),
            None => Ok(labels),
        };
        self.code(Id::GlobalLabels, checked, |c, v| c.global_labels = v)
    }

    /// Adds one global label (`global_labels`); a later label with the same key replaces it.
    pub fn global_label(self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let (key, value) = (key.into().trim().to_owned(), value.into().trim().to_owned());
        let checked = if key.is_empty() {
            Err(format!("label with an empty key (value {value:?})"))
        } else {
            Ok((key, value))
        };
        self.code(Id::GlobalLabels, checked, |c, (k, v)| {
            c.global_labels.retain(|(existing, _)| *existing != k);
            c.global_labels.push((k, v));
        })
    }
}
