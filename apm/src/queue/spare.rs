//! Spare boxes for transactions' end records and spans' optional parts, and spare strings.
//!
//! A transaction's end record is boxed on the application thread and emptied on the transport
//! thread. Freed there, each box would go back to the application thread's malloc arena from
//! another thread, under that arena's lock, and the arena's memory would be trimmed and faulted
//! in again: in a profile, page faults and `malloc`'s slow path were most of what a transaction
//! cost its thread. So the transport thread gives the boxes back here, and application threads
//! take them a few at a time: one lock (a `try_lock`, never a wait) per [`TAKE`] boxes.
//!
//! A span's name made at run time (`DynamicSpanName`: the manual API's `apm::start_span`, an
//! integration's span) is boxed, and its box travels the same way: with static texts, such a
//! span allocates nothing once warm.
//!
//! A span's optional parts (`SpanExtra`: labels, exit-span context) travel the same way, for
//! the same reason: a bridged `tracing` span with fields allocated them, and its labels' vector
//! and texts, on its thread, to be freed on the transport thread; the arena's lock then took
//! more of the span's time than the span's own work. A spare part keeps its labels' vector's
//! room, and brings a few of its labels' strings back to the thread that takes it, for the next
//! texts recorded there ([`text`]).
//!
//! What a reused box still holds of its earlier record, its request's and response's context
//! and its name, is kept per thread (`contexts`) for server integrations to write the next
//! request's over, instead of being freed as the box is filled again.

// The boxes themselves are what is kept for reuse.
#![allow(clippy::vec_box)]

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::thread::LocalKey;

use parking_lot::Mutex;

use crate::types::record::{DynamicSpanName, TransactionName, TransactionRecord};
use crate::types::span_context::SpanExtra;
use crate::types::web::{Request, Response};

/// Boxes of one kind kept for reuse at most (768 KiB of transaction records, and the boxes of
/// the rarer parts of those that had any, with their vectors' room): beyond, the transport
/// thread frees them. The transport drains the queue every 10 ms (sooner when it is half
/// full), and gives the boxes back then: at 400 000 transactions per second a thread runs
/// through about 4 000 of them in between. With room for 1 024, half of them were freed on
/// the transport thread and allocated again on the application's
/// (`span/transaction_thread_cpu`).
const STASH_MAX: usize = 4096;
/// Boxes a thread takes at once.
const TAKE: usize = 16;
/// Spare strings a thread keeps at most, for the texts it records.
#[cfg(feature = "tracing")]
const TEXTS_MAX: usize = 32;

static RECORDS: Stash<TransactionRecord> = Stash::new();
static EXTRAS: Stash<SpanExtra> = Stash::new();
static NAMES: Stash<DynamicSpanName> = Stash::new();

type Taken<T> = RefCell<Vec<Box<T>>>;

thread_local! {
    /// Boxes this thread took from the stash and has not used yet.
    static TAKEN_RECORDS: Taken<TransactionRecord> = const { RefCell::new(Vec::new()) };
    static TAKEN_EXTRAS: Taken<SpanExtra> = const { RefCell::new(Vec::new()) };
    static TAKEN_NAMES: Taken<DynamicSpanName> = const { RefCell::new(Vec::new()) };
    /// Empty strings with room, brought back by spare span parts.
    #[cfg(feature = "tracing")]
    static TEXTS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// A record written by `fill` into a box: a spare one when there is one (what it held before
/// is dropped here, field by field as `fill` replaces it, on the thread that most likely
/// allocated it), else a new one. Written where it lies: a record built first and moved into
/// its box would be copied whole.
#[inline]
pub(crate) fn filled(fill: impl FnOnce(&mut TransactionRecord)) -> Box<TransactionRecord> {
    let mut rec = take(&TAKEN_RECORDS, &RECORDS).unwrap_or_else(new_box);
    fill(&mut rec);
    rec
}

#[cold]
fn new_box() -> Box<TransactionRecord> {
    Box::new(TransactionRecord::empty())
}

/// Asks for the lines of the box this thread's next record will be written into, when it has
/// one: a transaction's start calls it, so that they arrive while the transaction runs. They
/// were last written on the transport thread's core, and `fill` reads what each field held
/// before writing it (to drop it): fetched only then, each line kept the thread waiting.
#[inline]
pub(crate) fn prefetch_next() {
    let _ = TAKEN_RECORDS.try_with(|taken| {
        if let Some(next) = taken
            .try_borrow_mut()
            .ok()
            .as_deref_mut()
            .and_then(|t| t.last_mut())
        {
            crate::util::prefetch::lines_to_write::<TransactionRecord>(next);
        }
    });
}

/// Empty optional parts for a span: spare ones when there are (the strings they bring are
/// kept for [`text`]), else new ones.
pub(crate) fn span_extra() -> Box<SpanExtra> {
    let mut extra = take(&TAKEN_EXTRAS, &EXTRAS).unwrap_or_default();
    keep_texts(&mut extra.spent_texts);
    extra
}

/// A span's name and kind made at run time, in a spare box when this thread has one.
#[inline]
pub(crate) fn span_name(name: Cow<'static, str>, kind: Cow<'static, str>) -> Box<DynamicSpanName> {
    let named = DynamicSpanName {
        name,
        kind,
        subtype: None,
        action: None,
    };
    match take(&TAKEN_NAMES, &NAMES) {
        Some(mut spare) => {
            // Emptied on the transport thread: nothing to drop here.
            *spare = named;
            spare
        }
        None => Box::new(named),
    }
}

/// Moves spare strings into this thread's, as many as it has room for.
#[cfg(feature = "tracing")]
fn keep_texts(spent: &mut Vec<String>) {
    if spent.is_empty() {
        return;
    }
    let _ = TEXTS.try_with(|texts| {
        if let Ok(mut texts) = texts.try_borrow_mut() {
            let room = TEXTS_MAX.saturating_sub(texts.len());
            let from = spent.len().saturating_sub(room);
            texts.extend(spent.drain(from..));
        }
    });
}

/// Without the `tracing` bridge, nothing records texts into spare strings: none are kept.
#[cfg(not(feature = "tracing"))]
fn keep_texts(_: &mut Vec<String>) {}

/// An empty string for a text a span records: a spare one, with room, when this thread has
/// one.
#[cfg(feature = "tracing")]
#[inline]
pub(crate) fn text() -> String {
    TEXTS
        .try_with(|texts| texts.try_borrow_mut().ok()?.pop())
        .ok()
        .flatten()
        .unwrap_or_default()
}

fn take<T: 'static>(taken: &'static LocalKey<Taken<T>>, stash: &Stash<T>) -> Option<Box<T>> {
    taken
        .try_with(|taken| {
            let mut taken = taken.try_borrow_mut().ok()?;
            if taken.is_empty() {
                stash.take_some(&mut taken);
            }
            taken.pop()
        })
        .ok()
        .flatten()
}

/// Readies a record just written for its box's reuse (the transport thread, which has just
/// read its context): a captured body, and a request or response context too large to keep
/// (see `contexts`), are dropped here. The application thread that reuses the box then takes
/// the context back without reading it: it was last read on this thread's core, and that
/// reading waited for each of its lines (the largest cost of a server's transaction end).
#[inline]
pub(crate) fn trim_for_reuse(rec: &mut TransactionRecord) {
    #[cfg(apm_server)]
    contexts::trim(&mut rec.request, &mut rec.response);
    if rec.extras_used {
        if let Some(ex) = &mut rec.extras {
            ex.empty_for_reuse();
        }
        rec.extras_used = false;
    }
}

/// Gives emptied boxes back for reuse (the transport thread, once per batch written); those
/// the stash has no room for are freed.
pub(crate) fn give_back(boxes: &mut Vec<Box<TransactionRecord>>) {
    RECORDS.put(boxes);
}

/// Gives spans' optional parts back for reuse, emptied here (the transport thread, once per
/// batch written); those the stash has no room for are freed.
pub(crate) fn give_back_extras(extras: &mut Vec<Box<SpanExtra>>) {
    for extra in extras.iter_mut() {
        extra.empty_for_reuse();
    }
    EXTRAS.put(extras);
}

/// Gives spans' names' boxes back for reuse, emptied here (the transport thread, once per
/// batch written: texts made at run time are freed here, as before); those the stash has no
/// room for are freed.
pub(crate) fn give_back_names(names: &mut Vec<Box<DynamicSpanName>>) {
    for name in names.iter_mut() {
        **name = DynamicSpanName::EMPTY;
    }
    NAMES.put(names);
}

/// Boxes given back and not taken yet, and how many (read without the lock: a thread finding
/// the stash empty, as when the transport falls behind, does not try its lock for each box).
struct Stash<T>(Mutex<Vec<Box<T>>>, AtomicUsize);

impl<T> Stash<T> {
    const fn new() -> Stash<T> {
        Stash(Mutex::new(Vec::new()), AtomicUsize::new(0))
    }

    /// Moves up to [`TAKE`] boxes into `into`; none if the stash is empty or another thread
    /// holds it.
    fn take_some(&self, into: &mut Vec<Box<T>>) {
        if self.1.load(Relaxed) == 0 {
            return;
        }
        if let Some(mut stash) = self.0.try_lock() {
            let from = stash.len().saturating_sub(TAKE);
            into.extend(stash.drain(from..));
            self.1.store(stash.len(), Relaxed);
        }
    }

    /// Keeps what it has room for out of `boxes` and frees the rest. The transport thread
    /// waits for the lock (an application thread holds it only to move a few boxes out):
    /// without it, a whole batch of boxes was freed, to be allocated again.
    fn put(&self, boxes: &mut Vec<Box<T>>) {
        if boxes.is_empty() {
            return;
        }
        {
            let mut stash = self.0.lock();
            let room = STASH_MAX.saturating_sub(stash.len());
            let from = boxes.len().saturating_sub(room);
            stash.extend(boxes.drain(from..));
            self.1.store(stash.len(), Relaxed);
        }
        boxes.clear();
    }
}

/// What a reused record held as its request's and response's context, given up as `fill`
/// replaces it: kept for this thread's next request when a server integration writes its
/// context in place, freed otherwise.
#[inline]
pub(crate) fn spent_context(request: Option<Box<Request>>, response: Option<Box<Response>>) {
    #[cfg(apm_server)]
    contexts::keep(request, response);
    #[cfg(not(apm_server))]
    drop((request, response));
}

/// The name a reused record held, given up as `fill` replaces it: its string kept for this
/// thread's next name made by a server integration, freed otherwise.
#[inline]
pub(crate) fn spent_name(name: TransactionName) {
    #[cfg(apm_server)]
    if let TransactionName::Dynamic(std::borrow::Cow::Owned(name), _) = name {
        contexts::keep_name(name);
    }
    #[cfg(not(apm_server))]
    drop(name);
}

/// A spent request's and response's context, one of each per thread, for a server
/// integration to write the next request's into: their strings keep their room, so that once
/// warm a request's context (method, URL, each header's name and value) allocates nothing.
#[cfg(apm_server)]
pub(crate) mod contexts {
    use std::cell::RefCell;

    use crate::types::web::{Request, Response};

    /// Headers a kept context may hold; one with more is freed.
    pub(super) const MAX_HEADERS: usize = 64;
    /// Bytes a kept context's strings may hold; one holding more is freed.
    const MAX_BYTES: usize = 16 * 1024;

    /// Bytes a kept name may hold; a longer one is freed.
    const MAX_NAME_BYTES: usize = 256;

    type Kept = (Option<Box<Request>>, Option<Box<Response>>, String);

    thread_local! {
        static KEPT: RefCell<Kept> = const { RefCell::new((None, None, String::new())) };
    }

    pub(super) fn keep_name(mut name: String) {
        if name.capacity() > MAX_NAME_BYTES {
            return;
        }
        let _ = KEPT.try_with(|kept| {
            if let Ok(mut kept) = kept.try_borrow_mut() {
                if kept.2.capacity() == 0 {
                    name.clear();
                    kept.2 = name;
                }
            }
        });
    }

    /// An empty string with room, a spent name's (else a new one), for a transaction's name.
    pub(crate) fn name() -> String {
        KEPT.try_with(|kept| {
            kept.try_borrow_mut()
                .map(|mut k| std::mem::take(&mut k.2))
                .unwrap_or_default()
        })
        .unwrap_or_default()
    }

    /// Keeps a reused record's context, as [`trim`] left it on the transport thread (nothing
    /// here reads it: its lines were last read on another core).
    pub(super) fn keep(request: Option<Box<Request>>, response: Option<Box<Response>>) {
        if request.is_none() && response.is_none() {
            return;
        }
        let _ = KEPT.try_with(|kept| {
            if let Ok(mut kept) = kept.try_borrow_mut() {
                if let Some(request) = request {
                    kept.0.get_or_insert(request);
                }
                if let Some(response) = response {
                    kept.1.get_or_insert(response);
                }
            }
        });
    }

    /// Drops what is not kept of a written record's context: a captured body (it may be
    /// large, and is rarely there), and a context holding too many headers or bytes.
    pub(super) fn trim(request: &mut Option<Box<Request>>, response: &mut Option<Box<Response>>) {
        if let Some(r) = request {
            if small(&r.headers, request_bytes(r)) {
                r.body = None;
            } else {
                *request = None;
            }
        }
        if response.as_ref().is_some_and(|r| !small(&r.headers, 0)) {
            *response = None;
        }
    }

    /// A spent request to write over (what it holds is the earlier request's), else a new one.
    pub(crate) fn request() -> Box<Request> {
        KEPT.try_with(|kept| kept.try_borrow_mut().ok()?.0.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// A spent response to write over, else a new one.
    pub(crate) fn response() -> Box<Response> {
        KEPT.try_with(|kept| kept.try_borrow_mut().ok()?.1.take())
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    fn request_bytes(r: &Request) -> usize {
        let optional = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        r.method.capacity()
            + r.url.capacity()
            + optional(&r.http_version)
            + optional(&r.remote_address)
    }

    fn small(headers: &[(String, String)], other_bytes: usize) -> bool {
        headers.len() <= MAX_HEADERS
            && headers
                .iter()
                .map(|(n, v)| n.capacity() + v.capacity())
                .sum::<usize>()
                + other_bytes
                <= MAX_BYTES
    }
}

/// In a forked child (its `pthread_atfork` handler): the stashes start empty, under a lock no
/// thread of the parent holds.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe {
        crate::util::after_fork::reset_mutex(&RECORDS.0, Vec::new());
        crate::util::after_fork::reset_mutex(&EXTRAS.0, Vec::new());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::record::TransactionName;

    fn transaction_record(id: u64) -> TransactionRecord {
        TransactionRecord::for_tests(id, TransactionName::Dynamic("t".into(), "custom".into()))
    }

    #[test]
    fn boxes_given_back_are_taken_again_a_few_at_a_time_and_the_stash_is_bounded() {
        let stash = Stash::new();
        let mut boxes: Vec<_> = (0..STASH_MAX as u64 + 10)
            .map(|i| Box::new(transaction_record(i)))
            .collect();
        let given: Vec<*const TransactionRecord> = boxes.iter().map(|b| &**b as *const _).collect();
        stash.put(&mut boxes);
        assert!(boxes.is_empty(), "what found no room was freed");
        assert_eq!(stash.0.lock().len(), STASH_MAX);
        let mut taken = Vec::new();
        stash.take_some(&mut taken);
        assert_eq!(taken.len(), TAKE);
        assert!(taken.iter().all(|b| given.contains(&(&**b as *const _))));
        assert_eq!(stash.0.lock().len(), STASH_MAX - TAKE);
        assert_eq!(
            stash.1.load(Relaxed),
            STASH_MAX - TAKE,
            "the count read without the lock"
        );
    }

    #[test]
    fn a_record_keeps_its_own_content_in_a_spare_box() {
        let mut boxes = vec![Box::new(transaction_record(1))];
        give_back(&mut boxes);
        let b = filled(|r| *r = transaction_record(7));
        assert_eq!(b.id, 7);
    }

    #[cfg(apm_server)]
    #[test]
    fn a_written_context_is_trimmed_on_the_transport_and_kept_as_it_is() {
        use crate::types::web::{Request, Response};

        std::thread::spawn(|| {
            let header = |i: usize| (format!("x-header-{i}"), "value".to_owned());
            let mut rec = transaction_record(1);
            let mut request = Request::new("GET", "http://localhost/");
            request.headers = (0..3).map(header).collect();
            request.body = Some("a body".to_owned());
            rec.request = Some(Box::new(request));
            let mut response = Response::new(200);
            response.headers = (0..contexts::MAX_HEADERS + 1).map(header).collect();
            rec.response = Some(Box::new(response));
            trim_for_reuse(&mut rec);
            // The body goes, the small request stays; the response with too many headers goes.
            let request = rec.request.as_deref().expect("a small request is kept");
            assert_eq!(request.body, None);
            assert_eq!(request.headers.len(), 3);
            assert!(rec.response.is_none());
            let kept: *const Request = request;
            spent_context(rec.request.take(), rec.response.take());
            let again = contexts::request();
            assert_eq!(
                &*again as *const Request, kept,
                "the same box, to write over"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_span_s_parts_come_back_empty_with_their_room_and_a_few_strings() {
        use std::borrow::Cow;

        use crate::types::outcome::LabelValue;
        use crate::types::span_context::Db;

        let mut extra = Box::<SpanExtra>::default();
        extra.exit = true;
        extra.db = Some(Db::default());
        extra.labels = (0..8)
            .map(|i| {
                let value = LabelValue::Str(Cow::Owned(format!("value {i}")));
                (Cow::Borrowed("key"), value)
            })
            .collect();
        let room = extra.labels.capacity();
        extra.empty_for_reuse();
        assert!(extra.labels.is_empty());
        assert_eq!(extra.labels.capacity(), room);
        assert!(!extra.exit && extra.db.is_none());
        #[cfg(feature = "tracing")]
        {
            use crate::types::span_context::SPENT_TEXTS_MAX;

            assert_eq!(extra.spent_texts.len(), SPENT_TEXTS_MAX);
            assert!(extra
                .spent_texts
                .iter()
                .all(|t| t.is_empty() && t.capacity() > 0));
            // Taken on this thread, they leave their strings to it.
            keep_texts(&mut extra.spent_texts);
            assert!(extra.spent_texts.is_empty());
            assert!(text().capacity() > 0);
        }
    }
}
