//! Records the compiler's version for the `language`/`runtime` metadata, and sets the cfgs
//! that group integrations by what they need of the runtime, so that code serving a group
//! exists exactly when one of its integrations is compiled:
//! - `apm_server`: server integrations (transactions that end with the response's body);
//! - `apm_client`: client integrations, HTTP, databases and messaging (exit spans);
//! - `apm_http_client`: HTTP client integrations (idle handles, which still propagate);
//! - `apm_messaging`: messaging integrations (`ignore_message_queues`);
//! - `apm_body_capture`: integrations that buffer request bodies for `capture_body`;
//! - `apm_http`: integrations built on the `http` crate's types;
//! - `apm_db`: the sqlx integration (any of its driver features);
//! - `apm_sql`: the SQL client integrations whose spans share `integrations/db.rs`;
//! - `apm_exit_stats`: database and cache clients (SQL and Redis), whose calls past
//!   `transaction_max_spans` are counted in `dropped_spans_stats`;
//! - `apm_bridge`: bridges of other tracing APIs (`tracing`, OpenTelemetry), whose spans are
//!   made current on apm's stack while entered.
use std::process::Command;

/// The SQL client features: `apm_sql`, and with Redis, `apm_exit_stats`.
const SQL_CLIENTS: &[&str] = &[
    "RUSQLITE",
    "POSTGRES",
    "DIESEL",
    "MYSQL",
    "SQLX_POSTGRES",
    "SQLX_MYSQL",
    "SQLX_SQLITE",
];

/// Each cfg and the cargo features (as `CARGO_FEATURE_*` names, in one or more lists) that turn
/// it on.
const GROUPS: &[(&str, &[&[&str]])] = &[
    ("apm_server", &[&["TOWER", "ACTIX_WEB"]]),
    (
        "apm_client",
        &[
            SQL_CLIENTS,
            &["REQWEST", "MINREQ_CLIENT", "REDIS", "LAPIN", "NATS"],
        ],
    ),
    ("apm_http_client", &[&["REQWEST", "MINREQ_CLIENT"]]),
    ("apm_messaging", &[&["LAPIN", "NATS"]]),
    ("apm_body_capture", &[&["AXUM", "ACTIX_WEB"]]),
    ("apm_http", &[&["TOWER", "REQWEST", "ACTIX_WEB"]]),
    ("apm_db", &[&["SQLX_POSTGRES", "SQLX_MYSQL", "SQLX_SQLITE"]]),
    ("apm_sql", &[SQL_CLIENTS]),
    ("apm_db_client", &[SQL_CLIENTS, &["REDIS"]]),
    (
        "apm_exit_stats",
        &[
            SQL_CLIENTS,
            &["REDIS", "REQWEST", "MINREQ_CLIENT", "LAPIN", "NATS"],
        ],
    ),
    ("apm_bridge", &[&["TRACING", "OPENTELEMETRY"]]),
];

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=APM_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
    // Set by cargo-fuzz for the fuzz targets (`fuzz/`).
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
    for (cfg, features) in GROUPS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if features
            .iter()
            .flat_map(|list| list.iter())
            .any(|f| std::env::var_os(format!("CARGO_FEATURE_{f}")).is_some())
        {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
