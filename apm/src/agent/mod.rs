//! The agent: starting and stopping it (`lifecycle`), and the three background threads it
//! runs besides the transport's: metrics collection (`metrics`) and central configuration
//! polling (`central_config`), both on `worker`s; and the metadata every intake request
//! opens with (`metadata`); what a forked child does with the agent it inherits (`fork`).
//!
//! With the `enable` feature off, `off.rs` stands in: an agent that never starts.

cfg_enable! {
    mod central_config;
    #[cfg(unix)]
    mod fork;
    mod lifecycle;
    mod metadata;
    mod metrics;
    mod worker;

    pub(crate) use lifecycle::Agent;
    #[cfg(any(test, fuzzing))]
    pub(crate) use central_config::read_any_central_config;
}

#[cfg(not(feature = "enable"))]
mod off;
#[cfg(not(feature = "enable"))]
pub(crate) use off::Agent;
