//! Stack traces on the transport thread: the instruction pointers captured on the application
//! thread (`capture/raw_stack.rs`) become frames with function, file, line and module, and the
//! agent's own frames are removed.
//!
//! Symbols are looked up here only, through a cache of resolved addresses bounded in size:
//! errors come back from the same places, so after the first the lookups are hash probes.
//!
//! `library_frame` is decided by crate, from the demangled function name:
//! - a crate in which `capture_error!` or `capture_message!` was written (learnt from the
//!   sites' `module_path!()`) is the application's;
//! - `std`, `core`, `alloc` and the other crates shipped with Rust are libraries;
//! - otherwise the source path decides: files of the standard library (`/rustc/…`), of
//!   crates.io (`…/.cargo/registry/…`) and of git dependencies (`…/.cargo/git/…`) are
//!   libraries, any other file (the workspace's own crates) the application's;
//! - a function outside any crate (C code such as libc's) is a library's;
//! - without a path (no debug info), a crate not seen at a site is a library, unless no site
//!   was seen at all, in which case it counts as the application's.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use crate::types::raw_stack::RawStack;

/// Addresses whose symbols are kept; the cache starts afresh beyond this.
const CACHE_ENTRIES: usize = 4096;
/// Application crates remembered (one per crate writing `capture_error!`).
const MAX_APP_CRATES: usize = 64;
/// Frames below the capture searched for the panic machinery.
const PANIC_SEARCH: usize = 48;

/// The crates shipped with the toolchain.
const TOOLCHAIN_CRATES: &[&str] = &["std", "core", "alloc", "proc_macro", "test", "backtrace"];

/// One symbol at an address (several when calls were inlined there, innermost first).
#[derive(Debug)]
struct Symbol {
    /// Demangled, without the build-specific hash.
    function: String,
    abs_path: Option<String>,
    lineno: Option<u32>,
    colno: Option<u32>,
}

/// A frame as it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    pub(crate) function: String,
    pub(crate) module: Option<String>,
    /// The path shortened (`library/std/src/…`, `crate-1.0.0/src/…`, relative to the working
    /// directory), `""` when unknown.
    pub(crate) filename: String,
    pub(crate) abs_path: Option<String>,
    pub(crate) lineno: Option<u32>,
    pub(crate) colno: Option<u32>,
    pub(crate) library_frame: bool,
}

thread_local! {
    static CACHE: RefCell<HashMap<usize, Rc<[Symbol]>>> = RefCell::new(HashMap::new());
    static APP_CRATES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static WORKING_DIR: Option<String> = std::env::current_dir()
        .ok()
        .and_then(|d| d.to_str().map(|s| format!("{}/", s.trim_end_matches('/'))));
}

/// The symbol tables. The first resolution reads the executable's debug information: up to
/// a second, once, for a large binary, while `backtrace`'s lock is held. Done on the transport
/// thread, that stops the queue's draining; so the transport thread asks for them
/// ([`ask_for_tables`]) and holds its stack traces meanwhile, and a thread with nothing urgent
/// to do (the metrics thread, woken by the loader it registered) loads them.
static TABLES: AtomicU8 = AtomicU8::new(COLD);
const COLD: u8 = 0;
const WANTED: u8 = 1;
const LOADED: u8 = 2;

/// What wakes the thread that loads the tables.
type Loader = Arc<dyn Fn() + Send + Sync>;
static LOADER: Mutex<Option<Loader>> = Mutex::new(None);

/// Registers (or, with `None`, removes) what wakes the thread that loads the tables.
pub(crate) fn set_loader(loader: Option<Loader>) {
    *LOADER.lock() = loader;
}

/// In a forked child (its `pthread_atfork` handler): no loader, under a lock no thread of the
/// parent holds.
#[cfg(unix)]
pub(crate) fn after_fork_in_child() {
    // SAFETY: called from the child's fork handler only (see `agent/fork.rs`).
    unsafe { crate::util::after_fork::reset_mutex(&LOADER, None) };
}

/// Whether the tables are loaded: a resolution now is a lookup.
pub(crate) fn tables_loaded() -> bool {
    TABLES.load(Ordering::Acquire) == LOADED
}

/// Asks the loader for the tables; `false` when there is none (the caller resolves, and so
/// loads them, itself).
pub(crate) fn ask_for_tables() -> bool {
    let Some(loader) = LOADER.lock().clone() else {
        return false;
    };
    let _ = TABLES.compare_exchange(COLD, WANTED, Ordering::AcqRel, Ordering::Acquire);
    loader();
    true
}

/// Loads the tables if they were asked for (the loader's thread).
pub(crate) fn load_tables_if_wanted() {
    if TABLES.load(Ordering::Acquire) != WANTED {
        return;
    }
    let started = Instant::now();
    // One address of this library's code: `backtrace` loads the tables of its object, and
    // keeps them.
    let _ = resolve(load_tables_if_wanted as fn() as usize);
    TABLES.store(LOADED, Ordering::Release);
    crate::util::diag::once(
        log::Level::Debug,
        format_args!(
            "symbol tables loaded on {} in {} ms",
            std::thread::current().name().unwrap_or("a thread"),
            started.elapsed().as_millis()
        ),
    );
}

/// Whether `stack` needs the symbol tables (an error's own backtrace comes resolved).
pub(crate) fn needs_tables(stack: &RawStack) -> bool {
    stack.resolved.is_none()
}

/// Remembers the crate of a `module_path!()` as the application's.
pub(crate) fn learn_app_crate(module_path: &str) {
    let name = module_path.split("::").next().unwrap_or(module_path);
    if name.is_empty() || name == "apm" {
        return;
    }
    APP_CRATES.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < MAX_APP_CRATES && !c.iter().any(|k| k == name) {
            c.push(name.to_owned());
        }
    });
}

/// The frames of `stack`, innermost first: the agent's own (and, for panics, the panic
/// machinery's) removed, then at most `stack.limit`.
pub(crate) fn frames(stack: &RawStack) -> Vec<Frame> {
    if let Some(text) = &stack.resolved {
        let symbols = parse_backtrace(text);
        let flat: Vec<&Symbol> = symbols.iter().collect();
        return to_frames(&strip_carrier(&flat), stack.limit);
    }
    let symbols: Vec<Rc<[Symbol]>> = stack.ips.iter().map(|&ip| resolve(ip)).collect();
    let flat: Vec<&Symbol> = symbols.iter().flat_map(|s| s.iter()).collect();
    to_frames(&strip(&flat, stack.from_panic), stack.limit)
}

/// At most `limit` frames of `kept`.
fn to_frames(kept: &[&Symbol], limit: Option<usize>) -> Vec<Frame> {
    let limit = limit.unwrap_or(usize::MAX);
    APP_CRATES.with(|apps| {
        let apps = apps.borrow();
        kept.iter()
            .take(limit)
            .map(|s| to_frame(s, &apps))
            .collect()
    })
}

/// The culprit: the function of the first frame of the application, else of the first frame.
pub(crate) fn culprit(frames: &[Frame]) -> Option<&str> {
    frames
        .iter()
        .find(|f| !f.library_frame)
        .or(frames.first())
        .map(|f| f.function.as_str())
}

fn resolve(ip: usize) -> Rc<[Symbol]> {
    if let Some(hit) = CACHE.with(|c| c.borrow().get(&ip).cloned()) {
        return hit;
    }
    let mut found = Vec::new();
    // Outside a fork: a child forked while `backtrace`'s lock is held here could never
    // resolve a symbol.
    let resolve = || {
        backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
            let Some(name) = sym.name() else {
                return;
            };
            found.push(Symbol {
                // `{:#}` leaves out the `::h…` hash, which changes with every build.
                function: format!("{name:#}"),
                abs_path: sym.filename().and_then(|p| p.to_str()).map(str::to_owned),
                lineno: sym.lineno(),
                colno: sym.colno(),
            });
        });
    };
    #[cfg(unix)]
    crate::util::after_fork::outside_fork(resolve);
    #[cfg(not(unix))]
    resolve();
    let found: Rc<[Symbol]> = found.into();
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= CACHE_ENTRIES {
            c.clear();
        }
        c.insert(ip, Rc::clone(&found));
    });
    found
}

fn is_agent(function: &str) -> bool {
    function.starts_with("apm::") || function.starts_with("<apm::")
}

/// A name without its path: an inlined function as line tables name it.
fn is_bare(function: &str) -> bool {
    let head = function.split('<').next().unwrap_or(function);
    !head.contains("::")
}

/// Frames that run the agent's code on its behalf: a guard's drop glue (a span ending in the
/// application's function) and the thread-local access around the context stack.
fn is_agent_glue(function: &str) -> bool {
    function.starts_with("core::ptr::drop_in_place<apm::")
        || function.starts_with("core::ptr::drop_in_place<core::option::Option<apm::")
        || function.starts_with("std::thread::local::LocalKey<")
}

/// The agent's own frame, by name or, where debug info names a function bare (inlined calls
/// with `line-tables-only`), by the source file: one of the agent's.
fn is_agents(s: &Symbol) -> bool {
    is_agent(&s.function)
        || s.abs_path
            .as_deref()
            .is_some_and(|p| p.starts_with(AGENT_SRC))
}

/// This crate's source directory.
const AGENT_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/");

/// The logging crates between a log call and the agent, by name or by source file.
const LOG_CRATES: &[&str] = &["log", "tracing", "tracing_core", "tracing_subscriber"];

fn is_log_machinery(s: &Symbol) -> bool {
    let f = s.function.strip_prefix('<').unwrap_or(&s.function);
    if crate_of(f).is_some_and(|c| LOG_CRATES.contains(&c)) {
        return true;
    }
    // `…/registry/src/<index>/tracing-core-0.1.36/src/…`: the crate's folder, its version
    // removed.
    s.abs_path
        .as_deref()
        .and_then(|p| p.split("/registry/src/").nth(1))
        .and_then(|rest| rest.split('/').nth(1))
        .and_then(|dir| dir.rsplit_once('-'))
        .is_some_and(|(name, _)| LOG_CRATES.contains(&name.replace('-', "_").as_str()))
}

fn is_panic_machinery(function: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "std::panicking::",
        "core::panicking::",
        "std::panic::",
        "std::rt::begin_panic",
        "rust_begin_unwind",
        "__rustc::rust_begin_unwind",
        "std::sys::backtrace::__rust_end_short_backtrace",
        "std::sys_common::backtrace::__rust_end_short_backtrace",
    ];
    PREFIXES.iter().any(|p| function.starts_with(p))
}

/// Removes the frames of the capture itself and below the program's start.
fn strip<'a>(symbols: &[&'a Symbol], from_panic: bool) -> Vec<&'a Symbol> {
    let mut start = symbols
        .iter()
        .position(|s| s.function.starts_with("apm::capture::raw_stack::capture"))
        .map_or(0, |i| i + 1);
    // The agent's frames, and frames inlined into them: with line tables only (`debug =
    // "line-tables-only"`, `debug = 1`), inlined functions have bare names (`{closure#0}`,
    // `try_with<…>`); the agent's own are known by their file, and any other bare name counts
    // as the agent's when an agent frame follows it.
    let mut next = start;
    while let Some(s) = symbols.get(next) {
        if is_agents(s) || is_agent_glue(&s.function) {
            next += 1;
            start = next;
        } else if is_bare(&s.function) {
            next += 1;
        } else {
            break;
        }
    }
    // A log record: the `log` crate's macros called the agent's logger; or a `tracing` event,
    // dispatched through the subscriber's layers (the agent's among them) to the agent.
    while symbols
        .get(start)
        .is_some_and(|s| is_agents(s) || is_log_machinery(s))
    {
        start += 1;
    }
    if from_panic {
        // The first run of the panic machinery's frames (further down, `std::panic::
        // catch_unwind` and the like belong to the thread's start, below the application).
        let window = &symbols[start..symbols.len().min(start + PANIC_SEARCH)];
        if let Some(first) = window.iter().position(|s| is_panic_machinery(&s.function)) {
            start += first;
            while symbols
                .get(start)
                .is_some_and(|s| is_panic_machinery(&s.function))
            {
                start += 1;
            }
        }
    }
    let rest = &symbols[start.min(symbols.len())..];
    let end = rest
        .iter()
        .position(|s| s.function.contains("__rust_begin_short_backtrace"))
        .unwrap_or(rest.len());
    rest[..end].to_vec()
}

/// The frames of a backtrace an error carried, from where the error arose: the first frames,
/// of the error library and of the standard library (capturing the backtrace, converting the
/// error), removed, and those below the program's start.
fn strip_carrier<'a>(symbols: &[&'a Symbol]) -> Vec<&'a Symbol> {
    let start = symbols
        .iter()
        .position(|s| {
            crate_of(&s.function).is_some_and(|c| c != "anyhow" && !TOOLCHAIN_CRATES.contains(&c))
        })
        .unwrap_or(symbols.len());
    let rest = &symbols[start..];
    let end = rest
        .iter()
        .position(|s| s.function.contains("__rust_begin_short_backtrace"))
        .unwrap_or(rest.len());
    rest[..end].to_vec()
}

/// The frames of `std::backtrace::Backtrace`'s `Debug` text: `Backtrace [{ fn: "f", file:
/// "src/main.rs", line: 3 }, …]`, `fn: <unknown>` for a frame without a name (left out).
fn parse_backtrace(text: &str) -> Vec<Symbol> {
    /// The quoted text at the start of `s` (`"…"` ended by `", "` or `" }`), and the rest.
    fn quoted(s: &str) -> Option<(&str, &str)> {
        let s = s.strip_prefix('"')?;
        let end = [s.find("\", "), s.find("\" }")]
            .into_iter()
            .flatten()
            .min()?;
        Some((&s[..end], &s[end + 1..]))
    }
    let mut symbols = Vec::new();
    for entry in text.split("{ fn: ").skip(1) {
        let Some((function, rest)) = quoted(entry) else {
            continue;
        };
        let (abs_path, rest) = match rest.strip_prefix(", file: ").and_then(quoted) {
            Some((file, rest)) => (Some(file.to_owned()), rest),
            None => (None, rest),
        };
        let lineno = rest.strip_prefix(", line: ").and_then(|r| {
            let digits = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
            r[..digits].parse().ok()
        });
        symbols.push(Symbol {
            function: function.to_owned(),
            abs_path,
            lineno,
            colno: None,
        });
    }
    symbols
}

fn to_frame(s: &Symbol, app_crates: &[String]) -> Frame {
    let krate = crate_of(&s.function);
    Frame {
        function: s.function.clone(),
        module: module_of(&s.function).map(str::to_owned),
        filename: s.abs_path.as_deref().map_or_else(String::new, short_path),
        abs_path: s.abs_path.clone(),
        lineno: s.lineno,
        colno: s.colno,
        library_frame: match krate {
            // Inlined, named without its path (line tables only): its file decides.
            None if is_bare(&s.function) && s.abs_path.is_some() => {
                s.abs_path.as_deref().is_none_or(is_library_path)
            }
            _ => is_library(krate, s.abs_path.as_deref(), app_crates),
        },
    }
}

fn is_library(krate: Option<&str>, path: Option<&str>, app_crates: &[String]) -> bool {
    // Not a Rust path (C functions of libc, `<&T as Trait>` glue): never the application's.
    let Some(k) = krate else {
        return true;
    };
    if app_crates.iter().any(|a| a == k) {
        return false;
    }
    if TOOLCHAIN_CRATES.contains(&k) {
        return true;
    }
    match path {
        Some(p) => is_library_path(p),
        None => !app_crates.is_empty(),
    }
}

fn is_library_path(path: &str) -> bool {
    path.starts_with("/rustc/")
        || path.contains("/.cargo/registry/")
        || path.contains("/.cargo/git/")
        || path.contains("/rustlib/src/rust/library/")
}

/// The crate a demangled function belongs to: `app::db::query` → `app`,
/// `<app::Foo as core::fmt::Display>::fmt` → `app`; `None` for `<&T as …>` and the like.
pub(crate) fn crate_of(function: &str) -> Option<&str> {
    let f = function
        .strip_prefix("_<")
        .or_else(|| function.strip_prefix('<'))
        .unwrap_or(function);
    let end = f
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(f.len());
    (end > 0 && f[end..].starts_with("::")).then(|| &f[..end])
}

/// The module of a demangled function: its path without the function's own name and the
/// closures in it; for a method of a trait impl, the module of the implementing type.
pub(crate) fn module_of(function: &str) -> Option<&str> {
    let path = match function.strip_prefix('<') {
        Some(inner) => {
            // `<Type as Trait>::method`: the type's path.
            let close = matching_close(inner)?;
            let impl_head = &inner[..close];
            let ty = top_level_split(impl_head, " as ").map_or(impl_head, |(t, _)| t);
            let ty = ty.trim_start_matches('&').trim_start_matches("mut ");
            return top_level_rfind(ty, "::").map(|i| &ty[..i]);
        }
        None => function,
    };
    let mut path = path;
    loop {
        let i = top_level_rfind(path, "::")?;
        let last = &path[i + 2..];
        path = &path[..i];
        if !last.starts_with('{') {
            return Some(path).filter(|p| !p.is_empty());
        }
    }
}

/// The index of the `>` closing a `<` already consumed.
fn matching_close(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' if depth == 0 => return Some(i),
            '>' => depth -= 1,
            _ => {}
        }
    }
    None
}

fn top_level_split<'a>(s: &'a str, sep: &str) -> Option<(&'a str, &'a str)> {
    let mut depth = 0i32;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 && s[i..].starts_with(sep) => {
                return Some((&s[..i], &s[i + sep.len()..]));
            }
            _ => {}
        }
    }
    None
}

fn top_level_rfind(s: &str, sep: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut found = None;
    for (i, c) in s.char_indices() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ if depth == 0 && s[i..].starts_with(sep) => found = Some(i),
            _ => {}
        }
    }
    found
}

/// A path as shown: the standard library's from `library/`, a dependency's from its
/// `name-version/` folder, the application's relative to the working directory.
fn short_path(abs: &str) -> String {
    if let Some(i) = abs.find("/library/").filter(|_| abs.starts_with("/rustc/")) {
        return abs[i + 1..].to_owned();
    }
    for marker in ["/.cargo/registry/src/", "/.cargo/git/checkouts/"] {
        if let Some(i) = abs.find(marker) {
            let rest = &abs[i + marker.len()..];
            // Skip the index (or repository) folder; git adds a revision folder too.
            let mut parts = rest.splitn(2, '/');
            let _ = parts.next();
            let mut rest = parts.next().unwrap_or(rest);
            if marker.contains("git") {
                rest = rest.split_once('/').map_or(rest, |(_, r)| r);
            }
            return rest.to_owned();
        }
    }
    WORKING_DIR
        .with(|wd| {
            wd.as_deref()
                .and_then(|wd| abs.strip_prefix(wd))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| abs.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `std`'s `Debug` text of a backtrace gives each frame's function, file and line.
    #[test]
    #[inline(never)]
    fn a_backtrace_is_read_from_its_debug_text() {
        let text = format!("{:?}", std::backtrace::Backtrace::force_capture());
        let symbols = parse_backtrace(&text);
        let here = symbols
            .iter()
            .find(|s| {
                s.function
                    .ends_with("a_backtrace_is_read_from_its_debug_text")
            })
            .unwrap_or_else(|| panic!("{text}"));
        assert!(here
            .abs_path
            .as_deref()
            .is_some_and(|p| p.ends_with("symbolize.rs")));
        assert!(here.lineno.is_some());
    }

    /// The error library's and the standard library's first frames are removed; a frame
    /// without a file is kept.
    #[test]
    fn a_carried_backtrace_starts_where_the_error_arose() {
        let text = "Backtrace [{ fn: \"std::backtrace::Backtrace::capture\", file: \"/rustc/x/library/std/src/backtrace.rs\", line: 296 }, \
            { fn: \"<anyhow::Error as core::convert::From<E>>::from\" }, \
            { fn: \"<T as core::convert::Into<U>>::into\", line: 7 }, \
            { fn: \"shop::load::{{closure}}\", file: \"src/load.rs\", line: 12 }, \
            { fn: <unknown> }, \
            { fn: \"shop::main\" }, \
            { fn: \"std::sys::backtrace::__rust_begin_short_backtrace\", line: 1 }, \
            { fn: \"std::rt::lang_start\" }]";
        let symbols = parse_backtrace(text);
        let flat: Vec<&Symbol> = symbols.iter().collect();
        let kept: Vec<(&str, Option<&str>, Option<u32>)> = strip_carrier(&flat)
            .iter()
            .map(|s| (s.function.as_str(), s.abs_path.as_deref(), s.lineno))
            .collect();
        assert_eq!(
            kept,
            [
                ("shop::load::{{closure}}", Some("src/load.rs"), Some(12)),
                ("shop::main", None, None),
            ]
        );
    }

    #[test]
    fn crates_come_from_the_function_path() {
        assert_eq!(crate_of("app::db::query"), Some("app"));
        assert_eq!(
            crate_of("<app::Foo as core::fmt::Display>::fmt"),
            Some("app")
        );
        assert_eq!(crate_of("_<app::Foo>::bar"), Some("app"));
        assert_eq!(crate_of("<&T as core::fmt::Debug>::fmt"), None);
        assert_eq!(crate_of("main"), None);
    }

    #[test]
    fn modules_leave_out_the_function_and_its_closures() {
        assert_eq!(module_of("app::db::query"), Some("app::db"));
        assert_eq!(module_of("app::db::query::{{closure}}"), Some("app::db"));
        assert_eq!(module_of("app::run::{closure#0}::{closure#1}"), Some("app"));
        assert_eq!(
            module_of("<alloc::boxed::Box<F,A> as core::ops::function::FnOnce<Args>>::call_once"),
            Some("alloc::boxed")
        );
        assert_eq!(
            module_of("<app::Foo as core::fmt::Display>::fmt"),
            Some("app")
        );
        assert_eq!(module_of("main"), None);
    }

    #[test]
    fn library_frames_are_told_by_crate_then_by_path() {
        let apps = vec!["shop".to_owned()];
        assert!(!is_library(
            Some("shop"),
            Some("/x/.cargo/registry/y"),
            &apps
        ));
        assert!(is_library(
            Some("std"),
            Some("/work/app/src/main.rs"),
            &apps
        ));
        assert!(is_library(
            Some("tokio"),
            Some("/h/.cargo/registry/src/i/tokio-1.0.0/src/a.rs"),
            &apps
        ));
        assert!(is_library(
            None,
            Some("/rustc/0123/library/core/src/ops.rs"),
            &apps
        ));
        assert!(is_library(None, Some("./nptl/pthread_create.c"), &[]));
        assert!(is_library(
            Some("other"),
            Some("/h/.cargo/git/checkouts/r/abc/src/a.rs"),
            &apps
        ));
        // A workspace crate without a capture site of its own: its path says application.
        assert!(!is_library(
            Some("shop_db"),
            Some("/work/app/db/src/lib.rs"),
            &apps
        ));
        // No debug info: a crate never seen at a site is a library...
        assert!(is_library(Some("serde"), None, &apps));
        // ... unless no site was seen at all.
        assert!(!is_library(Some("serde"), None, &[]));
    }

    #[test]
    fn paths_are_shortened_for_display() {
        assert_eq!(
            short_path("/rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/rt.rs"),
            "library/std/src/rt.rs"
        );
        assert_eq!(
            short_path("/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.48.0/src/lib.rs"),
            "tokio-1.48.0/src/lib.rs"
        );
        assert_eq!(
            short_path("/home/u/.cargo/git/checkouts/repo-abc/1a2b3c4/src/lib.rs"),
            "src/lib.rs"
        );
    }

    fn sym(f: &str) -> Symbol {
        Symbol {
            function: f.to_owned(),
            abs_path: None,
            lineno: None,
            colno: None,
        }
    }

    #[test]
    fn inlined_frames_named_without_their_path_go_with_the_agent_frames_around_them() {
        let captured = [
            sym("apm::capture::raw_stack::capture"),
            sym("{closure#0}"),
            sym("try_with<core::cell::RefCell<apm::queue::staging::Staged>, ()>"),
            sym("apm::capture::stack::exit_static_span"),
            sym("core::ptr::drop_in_place<apm::capture::macro_api::Guard>"),
            // Inlined into the application's function: it stays.
            sym("load_order"),
            sym("shop::checkout"),
        ];
        let refs: Vec<&Symbol> = captured.iter().collect();
        assert_eq!(names(strip(&refs, false)), ["load_order", "shop::checkout"]);
        let frame = to_frame(
            &Symbol {
                abs_path: Some("/work/shop/src/orders.rs".to_owned()),
                ..sym("load_order")
            },
            &[],
        );
        assert!(!frame.library_frame);
        let frame = to_frame(
            &Symbol {
                abs_path: Some("/rustc/0123/library/std/src/thread/local.rs".to_owned()),
                ..sym("try_with<T>")
            },
            &[],
        );
        assert!(frame.library_frame);
    }

    fn names(s: Vec<&Symbol>) -> Vec<&str> {
        s.into_iter().map(|s| s.function.as_str()).collect()
    }

    #[test]
    fn the_agents_frames_and_the_panic_machinery_are_removed() {
        let captured = [
            sym("backtrace::backtrace::libunwind::trace::trace_fn"),
            sym("_Unwind_Backtrace"),
            sym("apm::capture::raw_stack::capture"),
            sym("apm::capture::errors::capture"),
            sym("apm::capture::macro_api::capture_error"),
            sym("shop::checkout"),
            sym("<apm::WithContext<F> as core::future::future::Future>::poll"),
            sym("shop::main"),
            sym("std::sys::backtrace::__rust_begin_short_backtrace"),
            sym("std::rt::lang_start"),
        ];
        let refs: Vec<&Symbol> = captured.iter().collect();
        assert_eq!(
            names(strip(&refs, false)),
            [
                "shop::checkout",
                "<apm::WithContext<F> as core::future::future::Future>::poll",
                "shop::main"
            ]
        );
        // Bare names (inlined calls, `line-tables-only`): the agent's and the logging crates'
        // frames known by their files. A `tracing` event's dispatch is removed too.
        let at = |f: &str, path: String| Symbol {
            abs_path: Some(path),
            ..sym(f)
        };
        let registry = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let inlined = [
            sym("apm::capture::raw_stack::capture"),
            at("push_log_event", format!("{AGENT_SRC}capture/errors.rs")),
            sym("apm::capture::errors::capture_log"),
            sym("<tracing_subscriber::layer::layered::Layered<L,S> as tracing_core::subscriber::Subscriber>::event"),
            at("event", format!("{registry}/tracing-core-0.1.36/src/dispatcher.rs")),
            sym("tracing_core::event::Event::dispatch::{{closure}}"),
            at("{closure#6}", "/work/shop/src/main.rs".into()),
            sym("shop::checkout"),
        ];
        let refs: Vec<&Symbol> = inlined.iter().collect();
        assert_eq!(
            names(strip(&refs, false)),
            ["{closure#6}", "shop::checkout"]
        );
        let panicked = [
            sym("apm::capture::raw_stack::capture"),
            sym("apm::capture::errors::capture_panic"),
            sym("apm::capture::panic::record"),
            sym("<alloc::boxed::Box<F,A> as core::ops::function::Fn<Args>>::call"),
            sym("std::panicking::rust_panic_with_hook"),
            sym("std::panicking::begin_panic_handler::{{closure}}"),
            sym("std::sys::backtrace::__rust_end_short_backtrace"),
            sym("__rustc::rust_begin_unwind"),
            sym("core::panicking::panic_fmt"),
            sym("core::result::unwrap_failed"),
            sym("shop::checkout"),
            sym("std::panicking::catch_unwind"),
            sym("std::panic::catch_unwind"),
            sym("std::thread::lifecycle::spawn_unchecked::{{closure}}"),
        ];
        let refs: Vec<&Symbol> = panicked.iter().collect();
        assert_eq!(
            names(strip(&refs, true)),
            [
                "core::result::unwrap_failed",
                "shop::checkout",
                "std::panicking::catch_unwind",
                "std::panic::catch_unwind",
                "std::thread::lifecycle::spawn_unchecked::{{closure}}"
            ]
        );
    }
}
