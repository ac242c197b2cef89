//! What the threads recording one transaction share: its identity and sampling decision,
//! span counts, and the state only the manual API and the transaction's end touch.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use parking_lot::Mutex;

use super::child_timer::EndedElsewhere;
use super::sampling::Origin;
use crate::queue::tracer;
use crate::types::clock::{self, Tick};
#[cfg(apm_exit_stats)]
use crate::types::dropped_exits::{DroppedExits, ExitTarget};
use crate::types::ids;
use crate::types::outcome::{LabelValue, Outcome};
use crate::types::record::TransactionName;
use crate::types::span_context::Labels;
use crate::types::span_context::Link;
use crate::types::user::User;

/// Target and outcome pairs a transaction counts calls past its span limit for (the
/// spec's limit on `dropped_spans_stats` entries).
#[cfg(apm_exit_stats)]
const MAX_DROPPED_EXITS: usize = 128;
#[cfg(apm_server)]
use crate::queue::spare;
use crate::types::{messaging, web};

/// What the threads recording one transaction share. Never downgraded to a `Weak`: a
/// transaction's end reads it without its lock when its strong count says it is alone
/// (`transaction::only_reference`).
///
/// Laid out by hand: what every span reads of its transaction (ids, sampling, the span limit)
/// comes first, on one cache line of its own (`align(64)`: the `Arc`'s counts, which other
/// threads write, sit on the line before). Left to the compiler, those fields were spread
/// over three lines, the two ids three hundred bytes apart: three lines to bring back per
/// span where a request's work has evicted them between its spans.
#[derive(Debug)]
#[repr(C, align(64))]
pub(crate) struct TxnShared {
    pub(crate) trace_id: u128,
    pub(crate) id: u64,
    pub(crate) max_spans: u32,
    /// Spans recorded so far (counts towards `transaction_max_spans`).
    pub(crate) started: AtomicU32,
    pub(crate) sample_rate: u16,
    pub(crate) sampled: bool,
    // The fields above are what a span reads; the line's rest is what a transaction's end
    // reads with them.
    /// An error was captured where the transaction itself was current (its own entry, or a
    /// context bound to it on another thread or in another future): it fails, unless the
    /// application set an outcome (spec: `outcome.feature`).
    pub(crate) errored: AtomicBool,
    /// Spans not recorded because of the limit.
    pub(crate) dropped: AtomicU32,
    pub(crate) parent_id: Option<u64>,
    pub(crate) start: Tick,
    /// [`tracer::forks`] when it started: in a forked child, a transaction open at the fork
    /// is the parent's to end and send.
    pub(crate) forks: u32,
    /// The `tracestate` to send downstream (`None`: send none).
    pub(crate) tracestate: Option<Arc<str>>,
    /// Span links (a restarted trace points at the one it came from).
    pub(crate) links: Vec<Link>,
    /// Touched only by the manual API and once at the end: never on a span's path.
    pub(crate) state: Mutex<TxnState>,
    /// Children off the stack that ended where their parent was not current (another task or
    /// thread), until the parent hears of them (breakdown metrics).
    pub(crate) ended_elsewhere: EndedElsewhere,
}

impl TxnShared {
    /// A transaction's shared state, started now, continuing `origin`.
    pub(super) fn new(origin: Origin, name: TransactionName, max_spans: u32) -> TxnShared {
        TxnShared {
            trace_id: origin.trace_id,
            id: ids::next_u64(),
            parent_id: origin.parent_id,
            sampled: origin.sampled,
            sample_rate: origin.sample_rate,
            max_spans,
            started: Default::default(),
            dropped: Default::default(),
            tracestate: origin.tracestate,
            links: origin.links,
            start: clock::now(),
            forks: tracer::forks(),
            errored: Default::default(),
            ended_elsewhere: EndedElsewhere::default(),
            state: Mutex::new(TxnState::new(name)),
        }
    }
}

/// A transaction's state started now as a new root, named `t`, for tests.
#[cfg(test)]
impl TxnShared {
    pub(super) fn for_tests(sampled: bool) -> Arc<TxnShared> {
        let origin = Origin {
            trace_id: 1,
            parent_id: None,
            sampled,
            sample_rate: 10_000,
            tracestate: None,
            links: Vec::new(),
        };
        let name = TransactionName::Dynamic("t".into(), "custom".into());
        Arc::new(TxnShared::new(origin, name, 500))
    }
}

#[derive(Debug)]
pub(crate) struct TxnState {
    pub(crate) name: TransactionName,
    pub(crate) result: Option<Cow<'static, str>>,
    /// Set by the application: wins over everything else.
    pub(crate) outcome: Option<Outcome>,
    /// Set by an integration: gives way to the application's and to a captured error.
    pub(crate) integration_outcome: Option<Outcome>,
    pub(crate) labels: Labels,
    pub(crate) user: Option<Box<User>>,
    pub(crate) custom: Labels,
    pub(crate) request: Option<Box<web::Request>>,
    pub(crate) response: Option<Box<web::Response>>,
    pub(crate) message: Option<Box<messaging::Message>>,
    pub(crate) ended: bool,
    /// `otel.span_kind` and `otel.attributes` (OpenTelemetry bridge).
    #[cfg(feature = "opentelemetry")]
    pub(crate) otel: Option<Box<crate::types::span_context::Otel>>,
    /// Links added after the start (OpenTelemetry bridge).
    #[cfg(feature = "opentelemetry")]
    pub(crate) links: Vec<Link>,
    /// Statements run past `transaction_max_spans`, per endpoint and outcome.
    #[cfg(apm_exit_stats)]
    pub(crate) dropped_exits: Vec<DroppedExits>,
}

impl TxnState {
    /// The state of a transaction just started.
    pub(crate) fn new(name: TransactionName) -> TxnState {
        TxnState {
            name,
            result: None,
            outcome: None,
            integration_outcome: None,
            labels: Vec::new(),
            user: None,
            custom: Vec::new(),
            request: None,
            response: None,
            message: None,
            ended: false,
            #[cfg(feature = "opentelemetry")]
            otel: None,
            #[cfg(feature = "opentelemetry")]
            links: Vec::new(),
            #[cfg(apm_exit_stats)]
            dropped_exits: Vec::new(),
        }
    }
}

impl TxnState {
    /// Makes it the state of a transaction just started, in place: what a reused state still
    /// holds is dropped field by field (moving a new state in would copy it whole).
    pub(crate) fn restart(&mut self, name: TransactionName) {
        // Named in full, without `..`: a field added to the state must be reset here too.
        let TxnState {
            name: old_name,
            result,
            outcome,
            integration_outcome,
            labels,
            user,
            custom,
            request,
            response,
            message,
            ended,
            #[cfg(feature = "opentelemetry")]
            otel,
            #[cfg(feature = "opentelemetry")]
            links,
            #[cfg(apm_exit_stats)]
            dropped_exits,
        } = self;
        *old_name = name;
        *result = None;
        *outcome = None;
        *integration_outcome = None;
        labels.clear();
        *user = None;
        custom.clear();
        *request = None;
        *response = None;
        *message = None;
        *ended = false;
        #[cfg(feature = "opentelemetry")]
        {
            *otel = None;
            links.clear();
        }
        #[cfg(apm_exit_stats)]
        dropped_exits.clear();
    }
}

impl TxnShared {
    // Mutations of the running transaction (manual API and integrations): never on a span's path.
    pub(crate) fn set_name(&self, name: Cow<'static, str>) {
        let mut st = self.state.lock();
        let kind = match &st.name {
            TransactionName::Static(m) => Cow::Borrowed(m.kind),
            TransactionName::Dynamic(_, k) => k.clone(),
        };
        st.name = TransactionName::Dynamic(name, kind);
    }
    pub(crate) fn set_request(&self, request: web::Request) {
        self.state.lock().request = Some(Box::new(request));
    }
    pub(crate) fn set_response(&self, response: web::Response) {
        self.state.lock().response = Some(Box::new(response));
    }
    /// Writes `context.request` over a spent request's strings (`spare::contexts`).
    #[cfg(apm_server)]
    pub(crate) fn set_request_with(&self, write: impl FnOnce(&mut web::Request)) {
        let mut request = spare::contexts::request();
        write(&mut request);
        self.state.lock().request = Some(request);
    }
    /// Writes `context.response` over a spent response's strings.
    #[cfg(apm_server)]
    pub(crate) fn set_response_with(&self, write: impl FnOnce(&mut web::Response)) {
        let mut response = spare::contexts::response();
        write(&mut response);
        self.state.lock().response = Some(response);
    }
    pub(crate) fn set_message(&self, message: messaging::Message) {
        self.state.lock().message = Some(Box::new(message));
    }
    pub(crate) fn set_result(&self, result: Cow<'static, str>) {
        self.state.lock().result = Some(result);
    }
    /// An integration's result, unless the application set one (the application's wins).
    #[cfg(apm_server)]
    pub(crate) fn default_result(&self, result: Cow<'static, str>) {
        self.state.lock().result.get_or_insert(result);
    }
    /// An integration's outcome: the application's, or a captured error, win over it (specs:
    /// outcome.feature).
    #[cfg(apm_server)]
    pub(crate) fn default_outcome(&self, outcome: Outcome) {
        self.state.lock().integration_outcome.get_or_insert(outcome);
    }
    /// An integration saw the transaction fail (an error instead of a response, a panic): over
    /// any outcome integrations derived, under the application's.
    #[cfg(apm_server)]
    pub(crate) fn integration_failed(&self) {
        self.state.lock().integration_outcome = Some(Outcome::Failure);
    }
    pub(crate) fn set_outcome(&self, outcome: Outcome) {
        self.state.lock().outcome = Some(outcome);
    }
    pub(crate) fn set_label(&self, key: Cow<'static, str>, value: LabelValue) {
        set_entry(&mut self.state.lock().labels, key, value);
    }
    pub(crate) fn set_user(&self, user: User) {
        self.state.lock().user = Some(Box::new(user));
    }
    pub(crate) fn set_custom(&self, key: Cow<'static, str>, value: LabelValue) {
        set_entry(&mut self.state.lock().custom, key, value);
    }

    /// A call to `target` ran past `transaction_max_spans` for `ns`: counted for
    /// `dropped_spans_stats` (at most [`MAX_DROPPED_EXITS`] target and outcome pairs).
    #[cfg(apm_exit_stats)]
    pub(crate) fn add_dropped_exit(&self, target: &ExitTarget, outcome: Outcome, ns: u64) {
        let mut st = self.state.lock();
        if st.ended {
            return;
        }
        let exits = &mut st.dropped_exits;
        let known = exits
            .iter()
            .position(|d| d.outcome == outcome && d.target.same(target));
        match known {
            Some(i) => {
                exits[i].count = exits[i].count.saturating_add(1);
                exits[i].sum_ns = exits[i].sum_ns.saturating_add(ns);
            }
            None if exits.len() < MAX_DROPPED_EXITS => exits.push(DroppedExits {
                target: target.clone(),
                outcome,
                count: 1,
                sum_ns: ns,
            }),
            None => {}
        }
    }

    /// Reserves up to `n` places for spans at once; returns how many were granted (fewer near
    /// `transaction_max_spans`, none beyond it).
    pub(crate) fn reserve_spans(&self, n: u32) -> u32 {
        let before = self.started.fetch_add(n, Relaxed);
        let granted = self.max_spans.saturating_sub(before).min(n);
        if granted < n {
            self.started.fetch_sub(n - granted, Relaxed);
        }
        granted
    }
}

/// Sets `key` in a list of labels or custom context entries: replaced if present, else added.
fn set_entry(entries: &mut Labels, key: Cow<'static, str>, value: LabelValue) {
    if let Some(slot) = entries.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        entries.push((key, value));
    }
}

#[cfg(test)]
mod layout_tests {
    use std::mem::{align_of, offset_of, size_of};

    use super::TxnShared;

    #[test]
    fn what_a_span_reads_of_its_transaction_is_on_one_line_of_its_own() {
        assert_eq!(align_of::<TxnShared>(), 64);
        let ends = [
            offset_of!(TxnShared, trace_id) + size_of::<u128>(),
            offset_of!(TxnShared, id) + size_of::<u64>(),
            offset_of!(TxnShared, max_spans) + size_of::<u32>(),
            offset_of!(TxnShared, started) + size_of::<u32>(),
            offset_of!(TxnShared, sample_rate) + size_of::<u16>(),
            offset_of!(TxnShared, sampled) + size_of::<bool>(),
        ];
        assert!(ends.iter().all(|&end| end <= 64), "{ends:?}");
    }
}
