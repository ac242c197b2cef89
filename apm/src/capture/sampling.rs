//! Where a new transaction's trace comes from: a new root sampled at the live rate, or the
//! trace of incoming headers, continued or restarted as `trace_continuation_strategy` says.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use super::propagation;
use crate::queue::tracer::Tracer;
use crate::types::headers::HeaderSource;
use crate::types::ids;
use crate::types::sample_rate::{self, UNKNOWN_RATE};
use crate::types::span_context::Link;

/// Where a new transaction's trace comes from.
pub(super) struct Origin {
    pub(super) trace_id: u128,
    pub(super) parent_id: Option<u64>,
    pub(super) sampled: bool,
    pub(super) sample_rate: u16,
    pub(super) tracestate: Option<Arc<str>>,
    pub(super) links: Vec<Link>,
}

/// A new root: our sampling decision, our rate in the `es` tracestate entry (other vendors'
/// entries of a restarted trace kept).
pub(super) fn root(t: &Tracer, others: &str, links: Vec<Link>) -> Origin {
    let mut origin = own_root(t, None);
    if !others.is_empty() {
        let rate = f64::from(origin.sample_rate) / 10_000.0;
        origin.tracestate = propagation::format_tracestate(Some(rate), others).map(Into::into);
    }
    origin.links = links;
    origin
}

/// A new root with no other vendors' `tracestate` entries and no links, keeping `previous`
/// (the `tracestate` of this thread's previous transaction) when it is the entry wanted, so
/// that no reference count is touched. Inlined: its origin is written where it is used.
#[inline(always)]
pub(super) fn own_root(t: &Tracer, previous: Option<Arc<str>>) -> Origin {
    let (sampled, rate) = sample(t);
    Origin {
        trace_id: ids::next_u128(),
        parent_id: None,
        sampled,
        sample_rate: rate,
        tracestate: es_entry(rate, previous),
        links: Vec::new(),
    }
}

/// `es=s:<rate>`, formatted once per thread and rate (formatting it per transaction cost more
/// than the rest of starting one); `previous` when it is that very entry.
fn es_entry(rate: u16, previous: Option<Arc<str>>) -> Option<Arc<str>> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(u16, Arc<str>)>> = const { std::cell::RefCell::new(None) };
    }
    let make = || propagation::format_tracestate(Some(f64::from(rate) / 10_000.0), "");
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        match &*last {
            Some((r, s)) if *r == rate => match previous {
                Some(p) if Arc::ptr_eq(&p, s) => Some(p),
                _ => Some(Arc::clone(s)),
            },
            _ => {
                let s: Arc<str> = make()?.into();
                *last = Some((rate, Arc::clone(&s)));
                Some(s)
            }
        }
    })
    .ok()
    .flatten()
    .or_else(|| make().map(Into::into))
}

/// The trace context of incoming `headers`, per `trace_continuation_strategy`
/// (specs/agents/trace-continuation.md): continue it, or restart with a span link to it
/// (`restart`; `restart_external` only when the caller is not an Elastic agent, i.e. sent no
/// `es` tracestate entry).
///
/// `previous` is the `tracestate` of this thread's previous transaction, kept by a new root
/// that takes the same entry (see [`own_root`]): a server's requests mostly come without a
/// trace context.
pub(super) fn from_headers(
    t: &Tracer,
    headers: &dyn HeaderSource,
    previous: Option<Arc<str>>,
) -> Origin {
    let Some(parent) = propagation::find_traceparent(headers) else {
        return own_root(t, previous);
    };
    let state = propagation::find_tracestate(headers).unwrap_or_default();
    let restart = match t.live.continuation.load(Relaxed) {
        1 => true,
        2 => !state.has_es,
        _ => false,
    };
    if restart {
        return root(
            t,
            &state.others,
            vec![Link {
                trace_id: parent.trace_id,
                span_id: parent.parent_id,
            }],
        );
    }
    let sample_rate = match (parent.sampled, state.sample_rate) {
        (false, _) => 0,
        (true, Some(r)) => sample_rate::to_fixed(r),
        (true, None) => UNKNOWN_RATE,
    };
    Origin {
        trace_id: parent.trace_id,
        parent_id: Some(parent.parent_id),
        sampled: parent.sampled,
        sample_rate,
        // Downstream the upstream's entries travel on as received; we never write `es` here.
        tracestate: propagation::format_tracestate_raw(&state).map(Into::into),
        links: Vec::new(),
    }
}

/// The sampling decision for a new root transaction, and the rate (× 10 000) it was taken at.
#[inline]
fn sample(t: &Tracer) -> (bool, u16) {
    let rate = t.live.sample_rate.load(Relaxed).min(10_000);
    let sampled = match rate {
        0 => false,
        10_000 => true,
        r => (ids::next_u64() % 10_000) < u64::from(r),
    };
    (sampled, rate as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_without_a_trace_context_is_a_new_root_carrying_the_previous_entry() {
        let t = Tracer::leaked_for_tests(crate::config::Config::default());
        let no_context: Vec<(String, String)> = vec![("host".into(), "a.example".into())];
        let first = from_headers(t, &no_context, None);
        let entry = first.tracestate.expect("an es entry");
        assert_eq!(&*entry, "es=s:1");
        assert!(first.parent_id.is_none());
        // The entry given back is the one the next root carries.
        let second = from_headers(t, &no_context, Some(Arc::clone(&entry)));
        let kept = second.tracestate.expect("an es entry");
        assert!(Arc::ptr_eq(&kept, &entry));
        assert_ne!(second.trace_id, first.trace_id, "a new root each time");
        // A request that carries a trace continues it, whatever the previous entry was.
        let traced: Vec<(String, String)> = vec![(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        )];
        let continued = from_headers(t, &traced, Some(kept));
        assert_eq!(
            continued.trace_id,
            0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c
        );
        assert_eq!(continued.parent_id, Some(0xb7ad_6b71_6920_3331));
        assert!(continued.tracestate.is_none(), "no tracestate came with it");
    }
}
