//! `apm::log`: a [`log::Log`] wrapping the application's own logger (env_logger, ...).
//!
//! - Records at or above the capture level (default `Error`) are sent as error events: the
//!   message, `log.level`, the target as `log.logger_name`, the format string as
//!   `log.param_message` when the message has no arguments, and the stack trace of the call
//!   (or the record's file and line), linked to the current transaction and span.
//! - Every record the wrapped logger takes, inside a transaction, gets `trace.id`,
//!   `transaction.id` and `span.id` (the ECS names): as key-values (the default; env_logger
//!   prints them with its `kv` feature), or appended to the message. A key the record already
//!   has keeps the application's value.
//!
//! ```no_run
//! # struct EnvLogger;
//! # impl log::Log for EnvLogger {
//! #     fn enabled(&self, _: &log::Metadata<'_>) -> bool { true }
//! #     fn log(&self, _: &log::Record<'_>) {}
//! #     fn flush(&self) {}
//! # }
//! // In place of `env_logger::init()`:
//! // let inner = env_logger::Builder::from_default_env().build();
//! // let max = inner.filter();
//! # let (inner, max) = (EnvLogger, log::LevelFilter::Info);
//! apm::log::ApmLogger::new(inner, max).install().expect("no logger installed yet");
//! ```

use log::kv::{self, Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use super::facade;
use crate::util::own_thread::logged_by_agent;

/// How the current ids reach the wrapped logger's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correlation {
    /// As key-values `trace.id`, `transaction.id`, `span.id` (the default).
    KeyValues,
    /// Appended to the message: `… | trace.id=… transaction.id=… span.id=…`, for loggers that
    /// print no key-values.
    Suffix,
    /// Records pass unchanged.
    Off,
}

/// A logger that sends records as errors and adds the current ids, then hands every record
/// to the logger it wraps.
#[derive(Debug)]
pub struct ApmLogger<L> {
    inner: L,
    inner_max: LevelFilter,
    capture_level: Option<Level>,
    correlation: Correlation,
}

impl<L: Log + 'static> ApmLogger<L> {
    /// Wraps `inner`, whose own most verbose level is `inner_max` (env_logger:
    /// `logger.filter()`).
    pub fn new(inner: L, inner_max: LevelFilter) -> Self {
        ApmLogger {
            inner,
            inner_max,
            capture_level: Some(Level::Error),
            correlation: Correlation::KeyValues,
        }
    }

    /// Records at this level or above are sent as errors; `None` sends none (default
    /// `Some(Level::Error)`).
    pub fn capture_level(mut self, level: Option<Level>) -> Self {
        self.capture_level = level;
        self
    }

    /// How the ids reach the wrapped logger (default [`Correlation::KeyValues`]).
    pub fn correlation(mut self, correlation: Correlation) -> Self {
        self.correlation = correlation;
        self
    }

    /// Installs this logger for the process, with the most verbose level of the wrapped
    /// logger and of the capture level; fails when a logger is installed already.
    pub fn install(self) -> Result<(), log::SetLoggerError> {
        let max = self.inner_max.max(
            self.capture_level
                .map_or(LevelFilter::Off, |l| l.to_level_filter()),
        );
        log::set_boxed_logger(Box::new(self))?;
        log::set_max_level(max);
        Ok(())
    }
}

impl<L> ApmLogger<L> {
    fn captures(&self, level: Level) -> bool {
        self.capture_level.is_some_and(|l| level <= l)
    }
}

impl<L: Log> Log for ApmLogger<L> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.inner.enabled(metadata) || self.captures(metadata.level())
    }

    fn log(&self, record: &Record<'_>) {
        if self.captures(record.level()) && !logged_by_agent(record.target()) {
            facade::capture_log(
                level_name(record.level()),
                record.args().to_string(),
                record.target().to_owned(),
                record.args().as_str().map(str::to_owned),
                record.file().map(str::to_owned),
                record.line(),
            );
        }
        if !self.inner.enabled(record.metadata()) {
            return;
        }
        let ids = match self.correlation {
            Correlation::Off => None,
            _ => crate::current_ids(),
        };
        let Some(ids) = ids else {
            self.inner.log(record);
            return;
        };
        match self.correlation {
            Correlation::Suffix => self.inner.log(
                &record
                    .to_builder()
                    .args(format_args!("{} | {ids}", record.args()))
                    .build(),
            ),
            _ => {
                let trace_id = ids.trace_id();
                let transaction_id = ids.transaction_id();
                let span_id = ids.span_id();
                let with_ids = WithIds {
                    record: record.key_values(),
                    ids: [
                        ("trace.id", Some(trace_id.as_str())),
                        ("transaction.id", Some(transaction_id.as_str())),
                        ("span.id", span_id.as_deref()),
                    ],
                };
                self.inner
                    .log(&record.to_builder().key_values(&with_ids).build());
            }
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// A record's key-values followed by the ids it does not have already.
struct WithIds<'a> {
    record: &'a dyn kv::Source,
    ids: [(&'static str, Option<&'a str>); 3],
}

impl kv::Source for WithIds<'_> {
    fn visit<'kvs>(&'kvs self, visitor: &mut dyn VisitSource<'kvs>) -> Result<(), kv::Error> {
        self.record.visit(visitor)?;
        for (key, value) in self.ids {
            if let Some(value) = value {
                if self.record.get(Key::from_str(key)).is_none() {
                    visitor.visit_pair(Key::from_str(key), Value::from(value))?;
                }
            }
        }
        Ok(())
    }
}
