//! The shared leaf types every stage speaks: what a call site describes (`meta`), outcomes
//! and label values (`outcome`), header access (`headers`), the request and response of a
//! web transaction (`web`), the message of a messaging transaction (`messaging`), the user served (`user`), a database's endpoint and statement (`db`, with SQL client
//! integrations); and, with the agent compiled in, ids (`ids`), time
//! (`clock`), sample rates (`sample_rate`), stacks as instruction pointers (`raw_stack`), a
//! span's optional context (`span_context`)
//! and the finished records that travel to the transport thread (`record`).
//!
//! Nothing here imports from the stages above (queue, capture, export, agent).

#[cfg(apm_db_client)]
pub(crate) mod db;
pub(crate) mod headers;
pub mod messaging;
pub(crate) mod meta;
pub(crate) mod outcome;
pub(crate) mod stats;
pub(crate) mod user;
pub mod web;

cfg_enable! {
    pub(crate) mod clock;
    #[cfg(apm_exit_stats)]
    pub(crate) mod dropped_exits;
    pub(crate) mod ids;
    pub(crate) mod raw_stack;
    pub(crate) mod record;
    pub(crate) mod sample_rate;
    pub(crate) mod span_context;
}
