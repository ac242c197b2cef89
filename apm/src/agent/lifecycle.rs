//! Starting and stopping the agent: the tracer and its three named background threads
//! (`apm-transport`, `apm-metrics`, `apm-config`), and the handle the application holds.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::worker::{Stop, Worker};
use super::{central_config, metadata, metrics};
use crate::config::Config;
use crate::export::encode::breakdown::Breakdown;
use crate::export::transport::Transport;
use crate::queue::batch::{self, BATCH};
use crate::queue::channel::{self, Command};
use crate::queue::staging;
use crate::queue::tracer::{self, Tracer};
use crate::types::clock;
use crate::types::stats::Stats;
use crate::util::diag::warn_once;

/// How long dropping the agent may take: final metrics, flush, then stop the threads.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Agent {
    tracer: Option<&'static Tracer>,
    /// [`tracer::forks`] when the handle was made: a forked child's copy of a handle belongs
    /// to the parent's agent, whose threads are not in the child.
    forks: u32,
    /// Present on the handle that started the agent: it stops it.
    owner: Option<Owner>,
}

#[derive(Debug)]
struct Owner {
    stop: Arc<Stop>,
    transport: Worker,
    metrics: Option<Worker>,
    config: Option<Worker>,
}

impl Agent {
    fn off() -> Agent {
        Agent {
            tracer: None,
            forks: tracer::forks(),
            owner: None,
        }
    }

    /// The agent this handle speaks for, unless it was inherited through a fork (its threads
    /// are the parent's: nothing sent to them would be taken, no answer would come).
    fn tracer(&self) -> Option<&'static Tracer> {
        self.tracer.filter(|_| self.forks == tracer::forks())
    }

    pub(crate) fn start(config: Config) -> Agent {
        crate::util::diag::set_level(config.log_level);
        for w in &config.warnings {
            warn_once!("configuration: {w}");
        }
        if !config.enabled {
            log::info!(target: "apm", "agent disabled by configuration (enabled=false)");
            return Agent::off();
        }
        if let Some(t) = tracer::get() {
            if t.pid == std::process::id() {
                warn_once!("the agent is already running; this init() returns a handle to it");
                return Agent {
                    tracer: Some(t),
                    forks: tracer::forks(),
                    owner: None,
                };
            }
            // This process was forked from the one that started the agent without the fork
            // handler running (`fork.rs` forgets the agent in the child): the agent's threads
            // did not come along. Forget the inherited agent and start this process's own.
            tracer::uninstall(t);
            warn_once!("agent inherited through fork without its threads; starting a new one");
        }
        #[cfg(unix)]
        super::fork::register();
        clock::init();
        let metadata = metadata::collect(&config);
        let capacity = config.max_queue_size.div_ceil(BATCH).max(2);
        let (producer, consumer) = channel::bounded(capacity);
        // One spare buffer per queue slot and a few for the threads handing over.
        batch::prefill(capacity + 8);
        let Some(tracer) = tracer::install(Tracer::new(config, producer)) else {
            // Another thread won the race to start: share its agent.
            return Agent {
                tracer: tracer::get(),
                forks: tracer::forks(),
                owner: None,
            };
        };
        // Transport adds to the breakdown totals; the metrics thread drains them.
        let breakdown = Arc::new(Breakdown::default());
        // Cloud metadata may take a few requests to the metadata endpoints: the transport
        // thread asks, never the application's.
        let provider = tracer.config.cloud_provider;
        let make_metadata = Box::new(move || metadata::with_cloud(metadata, provider));
        let transport = Transport::new(tracer, consumer, Arc::clone(&breakdown), make_metadata);
        let transport = match Worker::spawn("apm-transport", move || {
            crate::capture::prime_stack_walk();
            transport.run()
        }) {
            Ok(w) => w,
            Err(e) => {
                tracer::uninstall(tracer);
                warn_once!("could not start the transport thread ({e}); the agent is off");
                return Agent::off();
            }
        };
        let stop = Arc::new(Stop::default());
        let owner = Owner {
            metrics: metrics::start(tracer, breakdown, Arc::clone(&stop)),
            config: central_config::start(tracer, Arc::clone(&stop)),
            stop,
            transport,
        };
        crate::util::diag::once(
            log::Level::Info,
            format_args!(
                "agent {} started; configuration: {}",
                crate::export::http::identity::AGENT_VERSION,
                describe(&tracer.config)
            ),
        );
        Agent {
            tracer: Some(tracer),
            forks: tracer::forks(),
            owner: Some(owner),
        }
    }

    fn command(&self, make: impl FnOnce(Sender<bool>) -> Command, timeout: Duration) -> bool {
        let Some(t) = self.tracer() else {
            return false;
        };
        let (ack_tx, ack_rx) = mpsc::channel();
        if !t.command(make(ack_tx)) {
            return false;
        }
        ack_rx.recv_timeout(timeout).unwrap_or(false)
    }

    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        if self.tracer().is_none() {
            return false;
        }
        // What this thread recorded so far goes too, even from inside a transaction.
        staging::publish_own();
        self.command(Command::Flush, timeout)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.tracer()
            .is_some_and(|t| tracer::get().is_some_and(|c| std::ptr::eq(c, t)))
    }

    pub(crate) fn stats(&self) -> Stats {
        let Some(t) = self.tracer else {
            return Stats::default();
        };
        let c = &t.counters;
        let dropped_queue_full = c.dropped_queue_full.load(Relaxed);
        Stats {
            events_recorded: c.events_queued.load(Relaxed) + dropped_queue_full,
            events_sent: c.events_sent.load(Relaxed),
            events_dropped_queue_full: dropped_queue_full,
            events_dropped_send_failed: c.dropped_send_failed.load(Relaxed),
            events_dropped_encode_failed: c.dropped_encode_failed.load(Relaxed),
            events_dropped_shutdown: c.dropped_shutdown.load(Relaxed),
            transactions_unsampled_not_sent: c.unsampled_not_sent.load(Relaxed),
            spans_compressed: c.spans_compressed.load(Relaxed),
            spans_dropped_fast: c.spans_dropped_fast.load(Relaxed),
            requests_failed: c.requests_failed.load(Relaxed),
        }
    }
}

/// `name=value (source)` for every option, secrets redacted: the start-up line.
fn describe(config: &Config) -> String {
    config
        .describe()
        .into_iter()
        .map(|(name, value, source)| format!("{name}={value} ({source})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drop for Agent {
    fn drop(&mut self) {
        let (Some(t), Some(owner)) = (self.tracer, self.owner.take()) else {
            return;
        };
        if self.tracer().is_none() {
            // A forked child's copy: the threads to stop and join are the parent's, and their
            // locks may be held there. Nothing of it is touched.
            std::mem::forget(owner);
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_BUDGET;
        // Stop the background threads first, so that a central configuration answer arriving
        // now cannot switch recording back on.
        owner.stop.stop();
        // Stack traces waiting for the symbol tables are resolved by the transport's last
        // flush from here on.
        crate::export::symbolize::set_loader(None);
        tracer::stop_recording();
        // The metrics thread sends its final metricset when stopped, before the last flush.
        let metrics_joined = owner.metrics.is_none_or(|w| w.join_by(deadline));
        let _ = self.command(
            Command::Shutdown,
            deadline.saturating_duration_since(Instant::now()),
        );
        let transport_joined = owner.transport.join_by(deadline);
        // The config thread has nothing to flush: it may be in a poll; never wait for it
        // before the flush.
        let config_joined = owner.config.is_none_or(|w| w.join_by(deadline));
        if !(metrics_joined && config_joined && transport_joined) {
            warn_once!(
                "the agent's threads did not all stop within {SHUTDOWN_BUDGET:?}; left behind"
            );
        }
        tracer::uninstall(t);
    }
}
