//! Small utilities with no state of their own: wildcard matching as the spec defines it, SQL
//! signatures, text truncation, the agent's own log messages and threads, a spin lock, maps
//! keyed by random ids, a bounded memory of recent ids, software prefetch, values pushed where
//! they stay, and the spec fixtures tests read.

#[cfg(test)]
pub(crate) mod spec_fixture;
// Outside `cfg_enable!`: the log and tracing bridges use them with the agent compiled out too.
#[cfg(any(feature = "enable", feature = "tracing"))]
pub(crate) mod id_hash;
#[cfg(any(feature = "enable", feature = "tracing"))]
pub(crate) mod in_place;
#[cfg(any(feature = "enable", feature = "log", feature = "tracing"))]
pub(crate) mod own_thread;
#[cfg(any(feature = "enable", feature = "tracing"))]
pub(crate) mod spin_lock;
pub mod sql;

cfg_enable! {
    pub(crate) mod prefetch;
    pub(crate) mod recent_ids;
    #[cfg(unix)]
    pub(crate) mod after_fork;
    pub(crate) mod diag;
    pub(crate) mod text;
    pub(crate) mod url;
    pub(crate) mod wildcard;
}
