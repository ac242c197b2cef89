//! Tests of the option table, precedence, warnings and redaction. The environment is a map
//! passed to `build_with`; the process environment is never touched.

use std::collections::HashMap;
use std::time::Duration;

use super::options::{Id, COUNT, OPTIONS};
use super::*;

/// Builds with `vars` as the whole environment.
fn build_env(builder: ConfigBuilder, vars: &[(&str, &str)]) -> Config {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let names: Vec<String> = map.keys().cloned().collect();
    builder
        .with_env()
        .build_with(|k| map.get(k).cloned(), names)
}

fn env(vars: &[(&str, &str)]) -> Config {
    build_env(Config::builder(), vars)
}

fn value(c: &Config, name: &str) -> String {
    c.describe()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| v)
        .expect("known option")
}

#[test]
fn table_is_consistent() {
    assert_eq!(OPTIONS.len(), COUNT);
    for (i, o) in OPTIONS.iter().enumerate() {
        assert_eq!(o.id as usize, i, "{} is out of Id order", o.name());
        assert_eq!(
            o.env_var(),
            format!("ELASTIC_APM_{}", o.name().to_ascii_uppercase())
        );
        assert!(!o.doc().is_empty());
        assert_eq!(options::find(o.name()).map(|f| f.id), Some(o.id));
    }
    let markdown = markdown_table();
    assert_eq!(markdown.lines().count(), COUNT + 2);
    assert!(markdown.contains(
        "| `api_request_time` | `ELASTIC_APM_API_REQUEST_TIME` | duration | `10s` | yes |"
    ));
}

/// The table's default text is what `Config::default()` holds (checked through the same
/// formatter `describe` uses), so the README cannot drift from the code.
#[test]
fn every_default_matches_the_table() {
    let c = Config::default();
    for o in &OPTIONS {
        assert_eq!(c.sources[o.id as usize], Source::Default);
        if o.id == Id::ServiceName {
            continue; // derived from the executable, checked below
        }
        assert_eq!((o.get)(&c), o.default_text(), "default of {}", o.name());
        // And the default text parses back to the same value.
        let mut parsed = Config::default();
        if !o.default_text().is_empty() {
            (o.set)(&mut parsed, o.default_text()).expect("default parses");
            assert_eq!((o.get)(&parsed), (o.get)(&c), "{}", o.name());
        }
    }
    assert!(c.warnings.is_empty());
    // Typed spot checks of what the runtime reads.
    assert_eq!(c.server_url, "http://localhost:8200");
    assert_eq!(c.api_request_size, 768 * 1024);
    assert_eq!(c.api_request_time, Duration::from_secs(10));
    assert_eq!(c.server_timeout, Duration::from_secs(5));
    assert_eq!(c.transaction_sample_rate, 1.0);
    assert_eq!(c.transaction_max_spans, 500);
    assert_eq!(c.max_queue_size, 65_536);
    assert_eq!(c.log_level, LogLevel::Info);
    assert_eq!(c.metrics_interval, Duration::from_secs(30));
    assert_eq!(
        c.span_stack_trace_min_duration,
        Some(Duration::from_millis(5))
    );
    assert_eq!(c.stack_trace_limit, Some(50));
    assert_eq!(
        c.trace_continuation_strategy,
        TraceContinuationStrategy::Continue
    );
    assert_eq!(
        c.sanitize_field_names,
        [
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
        ]
    );
}

#[cfg(feature = "enable")]
#[test]
fn default_sanitize_field_names_redact_auth_and_principal_fields() {
    let list = crate::util::wildcard::WildcardList::parse(&Config::default().sanitize_field_names);
    for name in [
        "Authorization",
        "X-Auth-User",
        "proxy-authenticate",
        "userPrincipal",
        "principal",
        "Set-Cookie",
        "api_key",
    ] {
        assert!(list.any_match(name), "{name} is redacted by default");
    }
    for name in ["content-type", "accept", "user-agent"] {
        assert!(!list.any_match(name), "{name} is kept by default");
    }
}

#[test]
fn default_service_name_comes_from_the_executable() {
    let exe = std::env::current_exe().expect("test binary path");
    let stem = exe
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    assert_eq!(Config::default().service_name, replace_invalid_chars(stem));
    let p = Path::new;
    assert_eq!(service_name_from_exe(Some(p("/usr/bin/my-app"))), "my-app");
    assert_eq!(
        service_name_from_exe(Some(p("/opt/my.app+v2"))),
        "my_app_v2"
    );
    assert_eq!(service_name_from_exe(Some(p("/"))), UNKNOWN_SERVICE_NAME);
    assert_eq!(service_name_from_exe(None), UNKNOWN_SERVICE_NAME);
}

#[test]
fn configured_service_name_is_sanitized_with_one_warning() {
    let c = Config::builder().service_name(" shop.api/v2 ").build();
    assert_eq!(c.service_name, "shop_api_v2");
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert!(c.warnings[0].starts_with("service_name (set in code): service name \"shop.api/v2\""));

    let c = env(&[("ELASTIC_APM_SERVICE_NAME", "  ")]); // blank counts as unset
    assert_eq!(c.source("service_name"), Some(Source::Default));
    let c = Config::builder().service_name("").build();
    assert_eq!(c.source("service_name"), Some(Source::Default));
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].contains("the service name is empty; using the default"));
}

#[test]
fn environment_overrides_code_overrides_default() {
    let builder = Config::builder()
        .service_name("from-code")
        .environment("staging")
        .api_request_time(Duration::from_secs(20));
    let c = build_env(
        builder.clone(),
        &[
            ("ELASTIC_APM_SERVICE_NAME", "from-env"),
            ("ELASTIC_APM_TRANSACTION_SAMPLE_RATE", "0.25"),
        ],
    );
    assert_eq!(c.service_name, "from-env");
    assert_eq!(c.source("service_name"), Some(Source::Environment));
    assert_eq!(c.environment.as_deref(), Some("staging"));
    assert_eq!(c.source("environment"), Some(Source::Code));
    assert_eq!(c.api_request_time, Duration::from_secs(20));
    assert_eq!(c.transaction_sample_rate, 0.25);
    assert_eq!(
        c.source("transaction_sample_rate"),
        Some(Source::Environment)
    );
    assert_eq!(c.source("server_url"), Some(Source::Default));
    assert_eq!(c.source("no_such_option"), None);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Without `with_env`, the environment is not read.
    let c = builder.build();
    assert_eq!(c.service_name, "from-code");
}

#[test]
fn every_option_reads_its_environment_variable() {
    let vars: Vec<(&str, &str)> = vec![
        ("ELASTIC_APM_SERVICE_NAME", "svc"),
        ("ELASTIC_APM_SERVICE_VERSION", "1.2.3"),
        ("ELASTIC_APM_ENVIRONMENT", "prod"),
        ("ELASTIC_APM_SERVICE_NODE_NAME", "node-1"),
        ("ELASTIC_APM_HOSTNAME", "host-1"),
        ("ELASTIC_APM_SERVER_URL", "https://apm.example.com:443/"),
        ("ELASTIC_APM_SECRET_TOKEN", "s3cr3t"),
        ("ELASTIC_APM_API_KEY", "k3y"),
        ("ELASTIC_APM_VERIFY_SERVER_CERT", "false"),
        ("ELASTIC_APM_SERVER_CA_CERT_FILE", "/etc/apm/ca.pem"),
        ("ELASTIC_APM_SERVER_CERT", "/etc/apm/server.pem"),
        ("ELASTIC_APM_ENABLED", "FALSE"),
        ("ELASTIC_APM_RECORDING", "false"),
        ("ELASTIC_APM_TRANSACTION_SAMPLE_RATE", "0.12345"),
        ("ELASTIC_APM_TRANSACTION_MAX_SPANS", "100"),
        ("ELASTIC_APM_API_REQUEST_SIZE", "1mb"),
        ("ELASTIC_APM_API_REQUEST_TIME", "500ms"),
        ("ELASTIC_APM_SERVER_TIMEOUT", "0s"),
        ("ELASTIC_APM_MAX_QUEUE_SIZE", "42"),
        ("ELASTIC_APM_GLOBAL_LABELS", "team=core, tier = web"),
        ("ELASTIC_APM_LOG_LEVEL", "Debug"),
        ("ELASTIC_APM_METRICS_INTERVAL", "0s"),
        ("ELASTIC_APM_BREAKDOWN_METRICS", "false"),
        ("ELASTIC_APM_CENTRAL_CONFIG", "false"),
        ("ELASTIC_APM_DISABLE_METRICS", "system.*, *cpu*"),
        ("ELASTIC_APM_SANITIZE_FIELD_NAMES", "password,,x-*"),
        ("ELASTIC_APM_CAPTURE_HEADERS", "false"),
        ("ELASTIC_APM_CAPTURE_BODY", "ALL"),
        ("ELASTIC_APM_CLOUD_PROVIDER", "Azure"),
        ("ELASTIC_APM_TRANSACTION_IGNORE_URLS", "/health*, /metrics"),
        ("ELASTIC_APM_TRANSACTION_IGNORE_USER_AGENTS", "kube-probe/*"),
        ("ELASTIC_APM_TRANSACTION_NAME_GROUPS", "GET /users/*"),
        ("ELASTIC_APM_IGNORE_MESSAGE_QUEUES", "amq.gen-*, health"),
        ("ELASTIC_APM_EXIT_SPAN_MIN_DURATION", "100us"),
        ("ELASTIC_APM_SPAN_COMPRESSION_ENABLED", "false"),
        (
            "ELASTIC_APM_SPAN_COMPRESSION_EXACT_MATCH_MAX_DURATION",
            "10ms",
        ),
        ("ELASTIC_APM_SPAN_COMPRESSION_SAME_KIND_MAX_DURATION", "5ms"),
        ("ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION", "-1ms"),
        ("ELASTIC_APM_STACK_TRACE_LIMIT", "-1"),
        ("ELASTIC_APM_IGNORE_EXCEPTIONS", "*::ParseIntError, panic"),
        (
            "ELASTIC_APM_TRACE_CONTINUATION_STRATEGY",
            "restart_external",
        ),
        ("ELASTIC_APM_LONG_FIELD_MAX_LENGTH", "500"),
        ("ELASTIC_APM_USE_ELASTIC_TRACEPARENT_HEADER", "false"),
    ];
    assert_eq!(vars.len(), COUNT, "one variable per option");
    let c = env(&vars);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    for (name, _, source) in c.describe() {
        assert_eq!(source, Source::Environment, "{name}");
    }
    assert_eq!(c.service_name, "svc");
    assert_eq!(c.service_version.as_deref(), Some("1.2.3"));
    assert_eq!(c.environment.as_deref(), Some("prod"));
    assert_eq!(c.service_node_name.as_deref(), Some("node-1"));
    assert_eq!(c.hostname.as_deref(), Some("host-1"));
    assert_eq!(c.server_url, "https://apm.example.com:443");
    assert_eq!(c.secret_token.as_deref(), Some("s3cr3t"));
    assert_eq!(c.api_key.as_deref(), Some("k3y"));
    assert!(!c.verify_server_cert && !c.enabled && !c.recording);
    assert_eq!(c.server_ca_cert_file.as_deref(), Some("/etc/apm/ca.pem"));
    assert_eq!(c.server_cert.as_deref(), Some("/etc/apm/server.pem"));
    assert_eq!(c.cloud_provider, crate::config::CloudProvider::Azure);
    assert_eq!(c.transaction_sample_rate, 0.1235);
    assert_eq!(c.transaction_max_spans, 100);
    assert_eq!(c.api_request_size, 1 << 20);
    assert_eq!(c.api_request_time, Duration::from_millis(500));
    assert_eq!(c.server_timeout, Duration::ZERO);
    assert_eq!(c.max_queue_size, 42);
    assert_eq!(
        c.global_labels,
        [
            ("team".to_owned(), "core".to_owned()),
            ("tier".to_owned(), "web".to_owned())
        ]
    );
    assert_eq!(c.log_level, LogLevel::Debug);
    assert_eq!(c.metrics_interval, Duration::ZERO);
    assert!(!c.breakdown_metrics && !c.central_config && !c.capture_headers);
    assert_eq!(c.disable_metrics, ["system.*", "*cpu*"]);
    assert_eq!(c.sanitize_field_names, ["password", "x-*"]);
    assert_eq!(c.capture_body, CaptureBody::All);
    assert_eq!(c.transaction_ignore_urls, ["/health*", "/metrics"]);
    assert_eq!(c.ignore_exceptions, ["*::ParseIntError", "panic"]);
    assert_eq!(c.transaction_ignore_user_agents, ["kube-probe/*"]);
    assert_eq!(c.transaction_name_groups, ["GET /users/*"]);
    assert_eq!(c.ignore_message_queues, ["amq.gen-*", "health"]);
    assert_eq!(c.exit_span_min_duration, Duration::from_micros(100));
    assert!(!c.span_compression_enabled);
    assert_eq!(
        c.span_compression_exact_match_max_duration,
        Duration::from_millis(10)
    );
    assert_eq!(
        c.span_compression_same_kind_max_duration,
        Duration::from_millis(5)
    );
    assert_eq!(c.span_stack_trace_min_duration, None);
    assert_eq!(c.stack_trace_limit, None);
    assert_eq!(
        c.trace_continuation_strategy,
        TraceContinuationStrategy::RestartExternal
    );
    assert_eq!(c.long_field_max_length, 500);
    assert!(!c.use_elastic_traceparent_header);
}

#[test]
fn invalid_environment_values_keep_the_default_with_one_warning_each() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ELASTIC_APM_API_REQUEST_TIME",
            "ten seconds",
            r#"ELASTIC_APM_API_REQUEST_TIME: invalid duration "ten seconds" (expected e.g. "10s", "500ms"); using the default 10s"#,
        ),
        (
            "ELASTIC_APM_TRANSACTION_SAMPLE_RATE",
            "1.5",
            "ELASTIC_APM_TRANSACTION_SAMPLE_RATE: sample rate 1.5 out of range [0, 1]; using the default 1",
        ),
        ("ELASTIC_APM_TRANSACTION_SAMPLE_RATE", "NaN", "out of range"),
        ("ELASTIC_APM_API_REQUEST_SIZE", "1tb", "invalid size"),
        ("ELASTIC_APM_API_REQUEST_SIZE", "0kb", "must be greater than 0"),
        ("ELASTIC_APM_API_REQUEST_TIME", "0ms", "below the minimum 1ms"),
        ("ELASTIC_APM_VERIFY_SERVER_CERT", "yes", "invalid boolean"),
        ("ELASTIC_APM_SERVER_URL", "localhost:8200", "invalid URL"),
        ("ELASTIC_APM_MAX_QUEUE_SIZE", "-5", "invalid integer"),
        ("ELASTIC_APM_MAX_QUEUE_SIZE", "0", "must be greater than 0"),
        ("ELASTIC_APM_TRANSACTION_MAX_SPANS", "lots", "invalid integer"),
        ("ELASTIC_APM_GLOBAL_LABELS", "a=1,b", "invalid mapping item"),
        ("ELASTIC_APM_LOG_LEVEL", "verbose", "expected one of: trace, debug"),
        ("ELASTIC_APM_CAPTURE_BODY", "some", "invalid capture_body value"),
        ("ELASTIC_APM_TRACE_CONTINUATION_STRATEGY", "fork", "invalid trace continuation"),
        ("ELASTIC_APM_METRICS_INTERVAL", "-1s", "negative duration"),
        ("ELASTIC_APM_SPAN_COMPRESSION_EXACT_MATCH_MAX_DURATION", "5us", "invalid duration"),
        ("ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION", "fast", "invalid duration"),
    ];
    for (var, bad, expected) in cases {
        let c = env(&[(var, bad)]);
        assert_eq!(c.warnings.len(), 1, "{var}={bad}: {:?}", c.warnings);
        assert!(
            c.warnings[0].contains(expected),
            "{var}={bad}: {}",
            c.warnings[0]
        );
        assert!(c.warnings[0].starts_with(&format!("{var}: ")));
        let option = options::find_env(var).expect("known");
        assert_eq!(c.sources[option.id as usize], Source::Default, "{var}");
        assert_eq!((option.get)(&c), (option.get)(&Config::default()), "{var}");
    }
}

#[test]
fn invalid_environment_value_keeps_the_code_value() {
    let c = build_env(
        Config::builder().api_request_time(Duration::from_secs(20)),
        &[("ELASTIC_APM_API_REQUEST_TIME", "soon")],
    );
    assert_eq!(c.api_request_time, Duration::from_secs(20));
    assert_eq!(c.source("api_request_time"), Some(Source::Code));
    assert_eq!(c.warnings.len(), 1);
    assert!(
        c.warnings[0].ends_with("; using the value set in code, 20s"),
        "{}",
        c.warnings[0]
    );
}

#[test]
fn invalid_builder_values_are_reported_not_applied() {
    let c = Config::builder()
        .transaction_sample_rate(1.5)
        .transaction_sample_rate(f64::NAN)
        .api_request_size(0)
        .api_request_time(Duration::ZERO)
        .max_queue_size(0)
        .server_url("ftp://example.com")
        .global_label(" ", "v")
        .build();
    assert_eq!(c.warnings.len(), 7, "{:#?}", c.warnings);
    assert_eq!(
        c.warnings[0],
        "transaction_sample_rate (set in code): sample rate 1.5 out of range [0, 1]; using the default 1"
    );
    let d = Config::default();
    assert_eq!(c.transaction_sample_rate, d.transaction_sample_rate);
    assert_eq!(c.api_request_size, d.api_request_size);
    assert_eq!(c.api_request_time, d.api_request_time);
    assert_eq!(c.max_queue_size, d.max_queue_size);
    assert_eq!(c.server_url, d.server_url);
    assert!(c.global_labels.is_empty());
    assert!(c.describe().iter().all(|(_, _, s)| *s == Source::Default));

    // A refused value keeps an earlier valid one.
    let c = Config::builder()
        .transaction_sample_rate(0.5)
        .transaction_sample_rate(-1.0)
        .build();
    assert_eq!(c.transaction_sample_rate, 0.5);
    assert!(c.warnings[0].ends_with("using the value set in code, 0.5"));
}

#[test]
fn builder_setters_apply_and_mark_code() {
    let c = Config::builder()
        .service_version("1.0")
        .server_url("http://apm:8200/")
        .secret_token("t")
        .transaction_sample_rate(0.000_01)
        .api_request_size(1024)
        .api_request_time(Duration::from_secs(1))
        .global_label("a", "1")
        .global_label("b", "2")
        .global_label("a", "3")
        .sanitize_field_names([" x ", "", "y"])
        .span_stack_trace_min_duration(None)
        .stack_trace_limit(Some(0))
        .log_level(LogLevel::Error)
        .build();
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(c.server_url, "http://apm:8200");
    assert_eq!(c.transaction_sample_rate, 0.0001);
    assert_eq!(
        c.global_labels,
        [
            ("b".to_owned(), "2".to_owned()),
            ("a".to_owned(), "3".to_owned())
        ]
    );
    assert_eq!(c.sanitize_field_names, ["x", "y"]);
    assert_eq!(value(&c, "span_stack_trace_min_duration"), "-1ms");
    assert_eq!(value(&c, "stack_trace_limit"), "0");
    assert_eq!(value(&c, "api_request_size"), "1kb");
    for name in [
        "service_version",
        "server_url",
        "secret_token",
        "global_labels",
        "log_level",
    ] {
        assert_eq!(c.source(name), Some(Source::Code), "{name}");
    }
}

#[test]
fn sample_rate_is_rounded_from_every_source() {
    assert_eq!(
        Config::builder()
            .transaction_sample_rate(0.55555)
            .build()
            .transaction_sample_rate,
        0.5556
    );
    assert_eq!(
        Config::builder()
            .transaction_sample_rate(0.00001)
            .build()
            .transaction_sample_rate,
        0.0001
    );
    assert_eq!(
        env(&[("ELASTIC_APM_TRANSACTION_SAMPLE_RATE", "0.55554")]).transaction_sample_rate,
        0.5555
    );
    assert_eq!(
        env(&[("ELASTIC_APM_TRANSACTION_SAMPLE_RATE", "0")]).transaction_sample_rate,
        0.0
    );
}

#[test]
fn bare_numbers_are_accepted_with_a_deprecation_warning() {
    let c = env(&[
        ("ELASTIC_APM_API_REQUEST_TIME", "15"),
        ("ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION", "20"),
        ("ELASTIC_APM_API_REQUEST_SIZE", "2048"),
    ]);
    assert_eq!(c.api_request_time, Duration::from_secs(15));
    assert_eq!(
        c.span_stack_trace_min_duration,
        Some(Duration::from_millis(20))
    );
    assert_eq!(c.api_request_size, 2048);
    assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
    assert!(c.warnings.iter().any(|w| w
        == r#"ELASTIC_APM_API_REQUEST_TIME: "15" has no unit, read as 15s; values without a unit are deprecated"#));
}

#[test]
fn unknown_variables_get_one_warning_with_suggestions() {
    let c = env(&[
        ("ELASTIC_APM_SERVICE_NAM", "x"),
        ("ELASTIC_APM_TRANSACTION_SAMPLING_RATE", "0.5"),
        ("ELASTIC_APM_SOMETHING_ELSE_ENTIRELY", "1"),
        ("PATH", "/bin"),
    ]);
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(
        c.warnings[0],
        "unknown environment variables ignored: \
         ELASTIC_APM_SERVICE_NAM (did you mean ELASTIC_APM_SERVICE_NAME?), \
         ELASTIC_APM_SOMETHING_ELSE_ENTIRELY, \
         ELASTIC_APM_TRANSACTION_SAMPLING_RATE (did you mean ELASTIC_APM_TRANSACTION_SAMPLE_RATE?)"
    );
}

#[test]
fn secrets_are_redacted() {
    let c = build_env(
        Config::builder().secret_token("code-token"),
        &[("ELASTIC_APM_API_KEY", "env-key")],
    );
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("code-token") && !debug.contains("env-key"),
        "{debug}"
    );
    assert!(debug.contains(r#"secret_token: "[REDACTED]""#), "{debug}");
    assert!(debug.contains(r#"api_key: "[REDACTED]""#), "{debug}");
    let builder_debug = format!("{:?}", Config::builder().secret_token("code-token"));
    assert!(!builder_debug.contains("code-token"));
    let described = c.describe();
    assert!(described
        .iter()
        .all(|(_, v, _)| !v.contains("code-token") && !v.contains("env-key")));
    assert_eq!(value(&c, "api_key"), "[REDACTED]");
    assert_eq!(c.secret_token.as_deref(), Some("code-token"));
    // Unset secrets show as unset, not as redacted.
    assert_eq!(value(&Config::default(), "secret_token"), "");
}

#[test]
fn set_option_is_the_central_config_entry_point() {
    let mut c = Config::default();
    assert_eq!(
        c.set_option("transaction_sample_rate", "0.3", Source::Central),
        Ok(None)
    );
    assert_eq!(c.transaction_sample_rate, 0.3);
    assert_eq!(c.source("transaction_sample_rate"), Some(Source::Central));
    assert_eq!(
        c.set_option("transaction_sample_rate", "1.2", Source::Central),
        Err("sample rate 1.2 out of range [0, 1]".to_owned())
    );
    assert_eq!(c.transaction_sample_rate, 0.3);
    assert!(c
        .set_option("unknown_option", "x", Source::Central)
        .is_err());
    assert!(c.warnings.is_empty());
    let dynamic: Vec<&str> = options()
        .iter()
        .filter(|o| o.is_dynamic())
        .map(|o| o.name())
        .collect();
    assert!(dynamic.contains(&"transaction_sample_rate") && !dynamic.contains(&"server_url"));
}

#[test]
fn a_long_field_max_length_of_zero_is_reported_and_the_default_kept() {
    let zero = env(&[("ELASTIC_APM_LONG_FIELD_MAX_LENGTH", "0")]);
    assert_eq!(zero.long_field_max_length, 10_000);
    assert_eq!(zero.warnings.len(), 1, "{:?}", zero.warnings);
}

#[test]
fn log_level_accepts_the_log_crate_spelling() {
    assert_eq!(
        env(&[("ELASTIC_APM_LOG_LEVEL", "WARN")]).log_level,
        LogLevel::Warning
    );
    assert_eq!(
        env(&[("ELASTIC_APM_LOG_LEVEL", "off")]).log_level,
        LogLevel::Off
    );
}

#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}
