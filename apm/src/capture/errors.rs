//! `capture_error!`: an error event with its type, message, `source()` chain and capture site,
//! linked to the current trace when there is one.

use std::error::Error;

use crate::types::meta::Site;
use crate::types::record::{ErrorRecord, ErrorTrace, Event};
use super::stack;
use crate::queue::{staging, tracer};
use crate::types::{clock, ids};

/// Longest `source()` chain recorded (a cycle-safe bound).
const MAX_CAUSES: usize = 16;

pub(crate) fn capture(err: &dyn Error, type_name: &'static str, site: &'static Site) {
    if !tracer::is_active() {
        return;
    }
    let timestamp = clock::now();
    let mut request = None;
    let trace = stack::with_current(|txn, parent| {
        if parent == txn.id {
            txn.errored
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let st = txn.state.lock();
        if txn.sampled {
            request = st.request.clone();
        }
        ErrorTrace {
            trace_id: txn.trace_id,
            transaction_id: txn.id,
            parent_id: parent,
            transaction_name: st.name.name().to_owned(),
            transaction_type: st.name.kind().to_owned(),
            sampled: txn.sampled,
        }
    });
    // The span or transaction it was captured in fails (spec: `outcome.feature`).
    stack::error_captured_here();
    let mut causes = Vec::new();
    let mut source = err.source();
    while let Some(e) = source {
        if causes.len() == MAX_CAUSES {
            break;
        }
        causes.push(e.to_string());
        source = e.source();
    }
    staging::push(Event::Error(Box::new(ErrorRecord {
        id: ids::next_u128(),
        timestamp,
        trace,
        type_name,
        message: err.to_string(),
        causes,
        site,
        request,
    })));
}
