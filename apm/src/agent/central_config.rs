//! The `apm-config` thread: central configuration (Kibana's "APM Agent Configuration"), polled
//! from the APM Server as specs/agents/configuration.md ("APM Agent Configuration via Kibana")
//! describes.
//!
//! Each poll is `GET {server_url}/config/v1/agents?service.name=…[&service.environment=…]`
//! with `If-None-Match` once an `ETag` was received. A 200 carries a JSON object of option
//! names to string values, read exactly as environment variables are. The effective
//! configuration is rebuilt from the local one on every 200, so an option removed in Kibana
//! falls back to its local value (the spec's "Interaction with local config"). A 304, an error
//! status, a connection error or a body that is not a JSON object keeps the values in force.
//!
//! The thread only reads the network and swaps the tracer's effective configuration; nothing
//! here can reach the application's threads except through [`Tracer::update`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::agent::worker::{Stop, Worker};
use crate::config::Config;
use crate::config::{options, Source};
use crate::export::http::client::{Request, Server, Writes};
use crate::queue::tracer::Tracer;
use crate::util::diag::{warn_limited, warn_once};

/// Wait before the next poll when the answer has no usable `Cache-Control: max-age`, or there
/// was no answer at all (specs/agents/configuration.md, "Dealing with errors": "agents should
/// retry after 5 minutes").
const DEFAULT_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// Floor of the poll interval. The spec sets none; this keeps a `max-age=0` from turning the
/// thread into a busy loop against the APM Server.
const MIN_INTERVAL: Duration = Duration::from_secs(5);

/// Ceiling of the poll interval: a huge `max-age` must neither overflow a deadline nor stop
/// the polling for good.
const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Bound of the set of (option, value) pairs already reported, so a server sending ever new
/// values cannot grow it without limit.
const MAX_REPORTED: usize = 1024;

/// Diagnostic kind shared by this thread's rate-limited messages.
const KIND: &str = "central-config";

/// Starts the central configuration thread; `None` when `central_config` is off.
pub(crate) fn start(tracer: &'static Tracer, stop: Arc<Stop>) -> Option<Worker> {
    if !tracer.config.central_config {
        return None;
    }
    let mut poller = Poller::new(tracer);
    match Worker::spawn("apm-config", move || poller.run(&stop)) {
        Ok(worker) => Some(worker),
        Err(e) => {
            warn_once!(
                "could not start the central configuration thread ({e}); \
                 the local configuration stays in force"
            );
            None
        }
    }
}

/// The polling state: what to ask and what the last answer was.
struct Poller {
    tracer: &'static Tracer,
    server: Server,
    /// `/config/v1/agents?service.name=…`, appended to `server_url`.
    path: String,
    /// The whole URL, for messages.
    url: String,
    /// The `ETag` of the last configuration applied, sent back as `If-None-Match`.
    etag: Option<String>,
    /// (option, value) pairs already reported as unsupported or invalid: each is reported
    /// once, not on every poll.
    reported: HashSet<(String, String)>,
}

/// The parts of an HTTP answer the poller reads (separate from the client, for the tests).
#[derive(Debug, Clone, Copy)]
struct Answer<'a> {
    status: u16,
    etag: Option<&'a str>,
    cache_control: Option<&'a str>,
    body: &'a [u8],
}

impl Poller {
    fn new(tracer: &'static Tracer) -> Poller {
        let config = &tracer.config;
        let path = config_path(config);
        Poller {
            tracer,
            server: Server::new(config, Writes::Small),
            url: format!("{}{path}", config.server_url),
            path,
            etag: None,
            reported: HashSet::new(),
        }
    }

    /// Polls at once, then as each answer says, until stopped.
    fn run(&mut self, stop: &Stop) {
        while !stop.is_stopped() {
            let wait = self.poll(stop);
            if stop.wait(wait) {
                return;
            }
        }
    }

    /// One request and its handling; returns the wait before the next one.
    fn poll(&mut self, stop: &Stop) -> Duration {
        let etag = self.etag.as_deref().map(|e| ("If-None-Match", e));
        let answer = self.server.send(&Request {
            method: "GET",
            path: &self.path,
            headers: etag.as_slice(),
            body: &[],
            timeout: self.tracer.live.server_timeout(),
        });
        match answer {
            Ok(resp) => {
                if stop.is_stopped() {
                    // Shutting down: a late answer must not switch recording back on.
                    return Duration::ZERO;
                }
                self.handle(Answer {
                    status: resp.status,
                    etag: resp.header("etag"),
                    cache_control: resp.header("cache-control"),
                    body: &resp.body,
                })
            }
            Err(e) => {
                warn_limited!(
                    KIND,
                    "central configuration: could not reach {}: {e}; next attempt in {}s",
                    self.url,
                    DEFAULT_INTERVAL.as_secs()
                );
                DEFAULT_INTERVAL
            }
        }
    }

    /// Applies an answer; returns the wait before the next poll. The spec ("Dealing with
    /// errors"): the server sends `Cache-Control` even when the request fails, and agents
    /// retry after that interval, or after 5 minutes when it is missing or invalid.
    fn handle(&mut self, answer: Answer<'_>) -> Duration {
        let next = next_interval(answer.cache_control);
        match answer.status {
            200 => match parse_settings(answer.body) {
                Ok(settings) => {
                    self.apply(&settings);
                    // Remembered only once applied: a body we could not read is asked again.
                    if let Some(etag) = answer.etag {
                        self.etag = Some(etag.to_owned());
                    }
                }
                Err(why) => warn_limited!(
                    KIND,
                    "central configuration: the APM Server answered {why}; keeping the current \
                     values"
                ),
            },
            // Not Modified: the configuration in force is the server's.
            304 => {}
            // The spec: "If the server responds with any 5xx, agents should log at error level".
            status @ 500..=599 => crate::util::diag::report(
                log::Level::Error,
                KIND,
                format_args!(
                    "central configuration: the APM Server answered HTTP {status} ({}); keeping \
                     the current values",
                    excerpt(answer.body)
                ),
            ),
            // The spec: on 4xx "the central config feature is not available, or is not
            // enabled"; not required to log, at most at debug level.
            status @ 400..=499 => crate::util::diag::report(
                log::Level::Debug,
                KIND,
                format_args!(
                    "central configuration: the APM Server answered HTTP {status} ({}); central \
                     configuration is unavailable or not enabled",
                    excerpt(answer.body)
                ),
            ),
            status => warn_limited!(
                KIND,
                "central configuration: unexpected HTTP {status} from the APM Server; keeping \
                 the current values"
            ),
        }
        next
    }

    /// Puts `settings` in force on top of the local configuration, and logs what changed.
    fn apply(&mut self, settings: &Map<String, Value>) {
        let mut effective = self.tracer.config.clone();
        let mut unsupported = Vec::new();
        for (name, value) in settings {
            let Some(text) = value_text(value) else {
                let shown = value.to_string();
                if self.first_report(name, &shown) {
                    warn_once!(
                        "central configuration: invalid value for {name}: {shown} is not a \
                         string; ignored"
                    );
                }
                continue;
            };
            let dynamic = options().iter().any(|o| o.name() == name && o.is_dynamic());
            if !dynamic {
                if self.first_report(name, &text) {
                    unsupported.push(name.as_str());
                }
                continue;
            }
            match effective.set_option(name, &text, Source::Central) {
                Ok(None) => {}
                Ok(Some(note)) => {
                    if self.first_report(name, &text) {
                        warn_once!("central configuration: {name}: {note}");
                    }
                }
                Err(why) => {
                    if self.first_report(name, &text) {
                        warn_once!(
                            "central configuration: invalid value for {name}: {why}; ignored"
                        );
                    }
                }
            }
        }
        if !unsupported.is_empty() {
            // The spec's wording: "Unsupported config names: …".
            warn_once!(
                "central configuration: unsupported config names (unknown, or not changeable \
                 while the agent runs), ignored: {}",
                unsupported.join(", ")
            );
        }
        let changes = {
            let current = self.tracer.effective();
            changes(&current, &effective)
        };
        if changes.is_empty() {
            return;
        }
        self.tracer.update(effective);
        for change in changes {
            crate::util::diag::once(
                log::Level::Info,
                format_args!("central configuration: {change}"),
            );
        }
    }

    /// Whether (`name`, `value`) is reported for the first time (and remembers it).
    fn first_report(&mut self, name: &str, value: &str) -> bool {
        if self.reported.len() >= MAX_REPORTED {
            self.reported.clear();
        }
        self.reported.insert((name.to_owned(), value.to_owned()))
    }
}

/// `/config/v1/agents?service.name=…`, with `service.environment` when set.
fn config_path(config: &Config) -> String {
    let mut url = format!(
        "/config/v1/agents?service.name={}",
        percent_encode(&config.service_name)
    );
    if let Some(env) = config.environment.as_deref().filter(|e| !e.is_empty()) {
        url.push_str("&service.environment=");
        url.push_str(&percent_encode(env));
    }
    url
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The wait before the next poll: `max-age` from `Cache-Control`, within
/// [`MIN_INTERVAL`, `MAX_INTERVAL`]; [`DEFAULT_INTERVAL`] when absent or invalid.
fn next_interval(cache_control: Option<&str>) -> Duration {
    cache_control
        .and_then(max_age)
        .map_or(DEFAULT_INTERVAL, |secs| {
            Duration::from_secs(secs).clamp(MIN_INTERVAL, MAX_INTERVAL)
        })
}

/// The `max-age` directive of a `Cache-Control` value (RFC 9111 §5.2: case-insensitive name,
/// a non-negative integer, possibly quoted).
fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Too many digits for u64: as long as can be.
        Some(value.parse().unwrap_or(u64::MAX))
    })
}

/// Reads `body` as central configuration and sets each dynamic option it names on a default
/// configuration, as [`Poller::apply`] does (`crate::fuzz`).
#[cfg(any(test, fuzzing))]
pub(crate) fn read_any_central_config(body: &[u8]) {
    let Ok(settings) = parse_settings(body) else {
        return;
    };
    let mut config = Config::default();
    for (name, value) in &settings {
        let dynamic = options().iter().any(|o| o.name() == name && o.is_dynamic());
        if let (true, Some(text)) = (dynamic, value_text(value)) {
            let _ = config.set_option(name, &text, Source::Central);
        }
    }
}

/// The body of a 200: a JSON object; otherwise why not, for the log.
fn parse_settings(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!(
            "a JSON {} instead of an object",
            match other {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            }
        )),
        Err(e) => Err(format!("a body that is not JSON ({e}): {}", excerpt(body))),
    }
}

/// A setting's value as text: strings as they are (the spec's encoding); numbers and booleans,
/// which a server could send for `transaction_sample_rate` or `recording`, as written.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The start of a body, for a log line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "empty body".to_owned();
    }
    crate::util::text::truncate(text, 200).into_owned()
}

/// `name = new (was old)` for every option whose value differs, in table order.
fn changes(before: &Config, after: &Config) -> Vec<String> {
    before
        .describe()
        .into_iter()
        .zip(after.describe())
        .filter(|((_, old, _), (_, new, _))| old != new)
        .map(|((name, old, _), (_, new, source))| {
            let old = if old.is_empty() { "(unset)" } else { &old };
            if source == Source::Central {
                format!("{name} = {new} (was {old})")
            } else {
                format!("{name} = {new} (was {old}; the {source} value is back)")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn ok<'a>(body: &'a str, etag: &'a str) -> Answer<'a> {
        Answer {
            status: 200,
            etag: Some(etag),
            cache_control: Some("max-age=30, must-revalidate"),
            body: body.as_bytes(),
        }
    }

    fn rate(t: &Tracer) -> u32 {
        t.live.sample_rate.load(Relaxed)
    }

    #[test]
    fn the_url_names_the_service_and_its_environment_encoded() {
        let c = Config::builder()
            .service_name("shop api")
            .server_url("http://apm:8200/")
            .build();
        assert_eq!(config_path(&c), "/config/v1/agents?service.name=shop%20api");
        let c = Config::builder()
            .service_name("shop")
            .environment("prod&eu=1/ü")
            .build();
        assert!(
            config_path(&c)
                .ends_with("?service.name=shop&service.environment=prod%26eu%3D1%2F%C3%BC"),
            "{}",
            config_path(&c)
        );
    }

    #[test]
    fn without_max_age_the_next_poll_is_five_minutes_later() {
        let t = Tracer::leaked_for_tests(Config::default());
        let mut p = Poller::new(t);
        for (status, body) in [(200, "{}"), (304, ""), (503, "unavailable"), (404, "")] {
            let next = p.handle(Answer {
                status,
                etag: None,
                cache_control: None,
                body: body.as_bytes(),
            });
            assert_eq!(next, Duration::from_secs(5 * 60), "{status}");
        }
    }

    #[test]
    fn max_age_sets_the_interval_within_bounds() {
        assert_eq!(
            next_interval(Some("max-age=30, must-revalidate")),
            Duration::from_secs(30)
        );
        assert_eq!(
            next_interval(Some("must-revalidate, MAX-AGE=\"42\"")),
            Duration::from_secs(42)
        );
        assert_eq!(next_interval(Some("max-age=0")), MIN_INTERVAL);
        assert_eq!(next_interval(Some("max-age=3")), MIN_INTERVAL);
        assert_eq!(
            next_interval(Some("max-age=99999999999999999999999")),
            MAX_INTERVAL
        );
        for invalid in [
            None,
            Some(""),
            Some("no-cache"),
            Some("max-age="),
            Some("max-age=-5"),
            Some("max-age=1.5"),
            Some("s-maxage=10"),
        ] {
            assert_eq!(next_interval(invalid), DEFAULT_INTERVAL, "{invalid:?}");
        }
    }

    #[test]
    fn a_setting_applies_and_reverts_to_the_local_value_when_removed() {
        let t = Tracer::leaked_for_tests(Config::builder().transaction_sample_rate(0.5).build());
        let mut p = Poller::new(t);
        assert_eq!(
            p.handle(ok(r#"{"transaction_sample_rate": "0.1"}"#, "\"a\"")),
            Duration::from_secs(30)
        );
        assert_eq!(rate(t), 1000);
        assert_eq!(
            t.effective().source("transaction_sample_rate"),
            Some(Source::Central)
        );
        assert_eq!(p.etag.as_deref(), Some("\"a\""));
        p.handle(ok("{}", "\"b\""));
        assert_eq!(rate(t), 5000);
        assert_eq!(
            t.effective().source("transaction_sample_rate"),
            Some(Source::Code)
        );
        assert_eq!(p.etag.as_deref(), Some("\"b\""));
    }

    #[test]
    fn invalid_and_unsupported_settings_are_ignored_and_reported_once() {
        let t = Tracer::leaked_for_tests(Config::default());
        let mut p = Poller::new(t);
        let body = r#"{
            "transaction_sample_rate": "abc",
            "transaction_max_spans": "7",
            "recording": false,
            "no_such_option": "1",
            "service_name": "other",
            "log_level": ["debug"]
        }"#;
        p.handle(ok(body, "\"a\""));
        assert_eq!(rate(t), 10_000, "invalid value: the local one stays");
        assert_eq!(t.live.max_spans.load(Relaxed), 7);
        assert!(
            !t.live.recording.load(Relaxed),
            "a JSON boolean is read too"
        );
        assert_eq!(t.effective().service_name, t.config.service_name);
        let reported = p.reported.clone();
        for pair in [
            ("transaction_sample_rate", "abc"),
            ("no_such_option", "1"),
            ("service_name", "other"),
            ("log_level", "[\"debug\"]"),
        ] {
            assert!(
                reported.contains(&(pair.0.to_owned(), pair.1.to_owned())),
                "{pair:?} in {reported:?}"
            );
        }
        assert_eq!(reported.len(), 4);
        // The same answer again reports nothing new; a new value is reported.
        p.handle(ok(body, "\"b\""));
        assert_eq!(p.reported, reported);
        assert!(!p.first_report("no_such_option", "1"));
        assert!(p.first_report("no_such_option", "2"));
    }

    #[test]
    fn not_modified_errors_and_bad_bodies_keep_the_values_in_force() {
        let t = Tracer::leaked_for_tests(Config::default());
        let mut p = Poller::new(t);
        p.handle(ok(r#"{"transaction_sample_rate": "0"}"#, "\"a\""));
        assert_eq!(rate(t), 0);
        let answers = [
            (304, "", Some("max-age=20")),
            (503, r#"{"error":"kibana unavailable"}"#, Some("max-age=20")),
            (403, "forbidden", None),
            (404, "", Some("max-age=x")),
            (302, "", None),
            (200, "not json", Some("max-age=20")),
            (200, "", None),
            (200, r#""a string""#, None),
            (200, "[1, 2]", Some("max-age=20")),
        ];
        for (status, body, cache_control) in answers {
            let next = p.handle(Answer {
                status,
                etag: Some("\"other\""),
                cache_control,
                body: body.as_bytes(),
            });
            assert_eq!(rate(t), 0, "{status} {body:?}");
            assert_eq!(p.etag.as_deref(), Some("\"a\""), "{status} {body:?}");
            let expected = if cache_control == Some("max-age=20") {
                Duration::from_secs(20)
            } else {
                DEFAULT_INTERVAL
            };
            assert_eq!(next, expected, "{status} {body:?}");
        }
    }

    #[test]
    fn changes_name_the_option_and_both_values() {
        let local = Config::default();
        let mut central = local.clone();
        assert!(changes(&local, &central).is_empty());
        central
            .set_option("transaction_sample_rate", "0", Source::Central)
            .unwrap();
        assert_eq!(
            changes(&local, &central),
            ["transaction_sample_rate = 0 (was 1)"]
        );
        assert_eq!(
            changes(&central, &local),
            ["transaction_sample_rate = 1 (was 0; the default value is back)"]
        );
    }

    #[test]
    fn an_unreachable_server_waits_the_default_interval() {
        // Nothing listens on port 9 of the loopback (discard): connection refused at once.
        let t = Tracer::leaked_for_tests(
            Config::builder()
                .server_url("http://127.0.0.1:9")
                .server_timeout(Duration::from_secs(1))
                .build(),
        );
        let mut p = Poller::new(t);
        assert_eq!(p.poll(&Stop::default()), Duration::from_secs(5 * 60));
        assert_eq!(p.etag, None);
    }

    #[test]
    fn nothing_starts_when_central_config_is_off() {
        let t = Tracer::leaked_for_tests(Config::builder().central_config(false).build());
        assert!(start(t, Arc::new(Stop::default())).is_none());
    }
}
