//! Integrations with other crates, each behind its cargo feature. They use the public API and
//! `facade`, never the runtime's internals; what server integrations share is in `server`.

#[cfg(apm_sql)]
mod db;
#[cfg(any(apm_server, apm_client, feature = "log", apm_bridge))]
mod facade;
#[cfg(apm_messaging)]
mod messaging;
#[cfg(apm_bridge)]
mod semconv;
#[cfg(apm_server)]
mod server;

#[cfg(feature = "actix-web")]
#[cfg_attr(docsrs, doc(cfg(feature = "actix-web")))]
pub mod actix;
#[cfg(feature = "apalis")]
#[cfg_attr(docsrs, doc(cfg(feature = "apalis")))]
pub mod apalis;
#[cfg(feature = "diesel")]
#[cfg_attr(docsrs, doc(cfg(feature = "diesel")))]
pub mod diesel;
#[cfg(feature = "lapin")]
#[cfg_attr(docsrs, doc(cfg(feature = "lapin")))]
pub mod lapin;
#[cfg(feature = "log")]
#[cfg_attr(docsrs, doc(cfg(feature = "log")))]
pub mod log;
#[cfg(feature = "minreq-client")]
#[cfg_attr(docsrs, doc(cfg(feature = "minreq-client")))]
pub mod minreq;
#[cfg(feature = "mysql")]
#[cfg_attr(docsrs, doc(cfg(feature = "mysql")))]
pub mod mysql;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod postgres;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "rusqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "rusqlite")))]
pub mod rusqlite;
#[cfg(apm_db)]
#[cfg_attr(
    docsrs,
    doc(cfg(any(
        feature = "sqlx-postgres",
        feature = "sqlx-mysql",
        feature = "sqlx-sqlite"
    )))
)]
pub mod sqlx;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;

/// Gives the runtime the readers of `exception.code` for the errors of the integrations
/// compiled in: the HTTP status of a reqwest error, or of an actix-web error's response.
pub(crate) fn install_error_codes() {
    #[cfg(all(feature = "enable", any(feature = "reqwest", feature = "actix-web")))]
    facade::read_codes_with(&[
        #[cfg(feature = "reqwest")]
        reqwest::error_code,
        #[cfg(feature = "actix-web")]
        actix::error_code,
    ]);
}
