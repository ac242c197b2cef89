//! Starting and stopping the agent: the tracer, the transport thread, and the handle the
//! application holds.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::diag::warn_once;
use crate::tracer::{self, Tracer};
use crate::transport::{Command, Message, Transport};
use crate::{buffer, clock, metadata, Config, Stats};

/// How long dropping the agent may take: flush, then stop the threads.
const SHUTDOWN_BUDGET: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Agent {
    tracer: Option<&'static Tracer>,
    /// Present on the handle that started the agent: it stops it.
    owner: Option<Owner>,
}

#[derive(Debug)]
struct Owner {
    transport: Option<JoinHandle<()>>,
    transport_done: Receiver<()>,
}

impl Agent {
    pub(crate) fn start(config: Config) -> Agent {
        for w in &config.warnings {
            warn_once!("configuration: {w}");
        }
        if !config.enabled {
            log::info!(target: "apm", "agent disabled by configuration (enabled=false)");
            return Agent {
                tracer: None,
                owner: None,
            };
        }
        if let Some(t) = tracer::get() {
            warn_once!("the agent is already running; this init() returns a handle to it");
            return Agent {
                tracer: Some(t),
                owner: None,
            };
        }
        clock::init();
        let metadata = metadata::collect(&config);
        let capacity = config.max_queue_size.div_ceil(buffer::BATCH).max(2);
        let (events_tx, events_rx) = mpsc::sync_channel(capacity);
        // One spare buffer per queue slot and a few for the threads handing over.
        buffer::prefill(capacity + 8);
        let (commands_tx, commands_rx) = mpsc::channel();
        let Some(tracer) = tracer::install(Tracer::new(config, events_tx, commands_tx)) else {
            // Another thread won the race to start: share its agent.
            return Agent {
                tracer: tracer::get(),
                owner: None,
            };
        };
        let (done_tx, done_rx) = mpsc::channel();
        let (started_tx, started_rx) = mpsc::channel();
        let transport = Transport::new(tracer, events_rx, commands_rx, &metadata);
        let spawned = std::thread::Builder::new()
            .name("apm-transport".into())
            .spawn(move || {
                let _ = started_tx.send(());
                transport.run();
                let _ = done_tx.send(());
            });
        match spawned {
            Ok(handle) => {
                // Once `init` returns the thread runs (bounded: a starved machine only delays).
                let _ = started_rx.recv_timeout(Duration::from_secs(1));
                log::info!(
                    target: "apm",
                    "agent {} started: service {:?}, server {}",
                    metadata::AGENT_VERSION,
                    tracer.config.service_name,
                    tracer.config.server_url
                );
                Agent {
                    tracer: Some(tracer),
                    owner: Some(Owner {
                        transport: Some(handle),
                        transport_done: done_rx,
                    }),
                }
            }
            Err(e) => {
                tracer::uninstall(tracer);
                warn_once!("could not start the transport thread ({e}); the agent is off");
                Agent {
                    tracer: None,
                    owner: None,
                }
            }
        }
    }

    fn command(&self, make: impl FnOnce(Sender<bool>) -> Command, timeout: Duration) -> bool {
        let Some(t) = self.tracer else {
            return false;
        };
        let (ack_tx, ack_rx) = mpsc::channel();
        if t.commands.send(make(ack_tx)).is_err() {
            return false;
        }
        // A full queue means the transport is awake anyway.
        let _ = t.queue.try_send(Message::Wake);
        ack_rx.recv_timeout(timeout).unwrap_or(false)
    }

    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        self.command(Command::Flush, timeout)
    }

    pub(crate) fn is_running(&self) -> bool {
        self.tracer
            .is_some_and(|t| tracer::get().is_some_and(|c| std::ptr::eq(c, t)))
    }

    pub(crate) fn stats(&self) -> Stats {
        let Some(t) = self.tracer else {
            return Stats::default();
        };
        let c = &t.counters;
        Stats {
            events_sent: c.events_sent.load(Relaxed),
            events_dropped_queue_full: c.dropped_queue_full.load(Relaxed),
            events_dropped_send_failed: c.dropped_send_failed.load(Relaxed),
            requests_failed: c.requests_failed.load(Relaxed),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let Some(t) = self.tracer else {
            return;
        };
        if self.owner.is_none() {
            return;
        }
        let deadline = Instant::now() + SHUTDOWN_BUDGET;
        tracer::stop_recording();
        let _ = self.command(Command::Shutdown, SHUTDOWN_BUDGET);
        if let Some(owner) = self.owner.as_mut() {
            let left = deadline.saturating_duration_since(Instant::now());
            // Join only a thread known to have finished: never hang the application.
            if owner.transport_done.recv_timeout(left).is_ok() {
                if let Some(h) = owner.transport.take() {
                    let _ = h.join();
                }
            }
        }
        tracer::uninstall(t);
    }
}
