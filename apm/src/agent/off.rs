//! The agent compiled out (`enable` off): it never starts, and has nothing to flush.

use std::time::Duration;

use crate::config::Config;
use crate::types::stats::Stats;

#[derive(Debug)]
pub(crate) struct Agent;

impl Agent {
    pub(crate) fn start(_config: Config) -> Agent {
        Agent
    }
    pub(crate) fn flush(&self, _timeout: Duration) -> bool {
        false
    }
    pub(crate) fn is_running(&self) -> bool {
        false
    }
    pub(crate) fn stats(&self) -> Stats {
        Stats::default()
    }
}
