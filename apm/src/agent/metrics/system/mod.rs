//! System and process CPU/memory metrics and cgroup memory metrics read from Linux `/proc`, as
//! the Elastic agent spec defines them (`specs/agents/metrics.md`, "System/process CPU/Heap"
//! and "cgroup metrics"). The Python agent's `elasticapm/metrics/sets/cpu_linux.py` is the
//! reference design.
//!
//! Every parser takes a file's *contents* and returns `None` (or a field set to `None`) for
//! anything it does not understand, so it can be tested against fixtures. `Sampler` reads the
//! real files, keeps the previous CPU counters, never panics and never fails: a missing or
//! unreadable file omits the metrics that depend on it. Off Linux it reports nothing.

/// System CPU busy share since the previous sample, in `[0, 1]`.
pub(crate) const SYSTEM_CPU_TOTAL_NORM_PCT: &str = "system.cpu.total.norm.pct";
/// Total usable memory, bytes.
pub(crate) const SYSTEM_MEMORY_TOTAL: &str = "system.memory.total";
/// Memory available to new work, bytes.
pub(crate) const SYSTEM_MEMORY_ACTUAL_FREE: &str = "system.memory.actual.free";
/// This process's share of all CPUs' time since the previous sample, in `[0, 1]`.
pub(crate) const PROCESS_CPU_TOTAL_NORM_PCT: &str = "system.process.cpu.total.norm.pct";
/// Process virtual memory size, bytes.
pub(crate) const PROCESS_MEMORY_SIZE: &str = "system.process.memory.size";
/// Process resident set size, bytes.
pub(crate) const PROCESS_MEMORY_RSS_BYTES: &str = "system.process.memory.rss.bytes";
/// Memory limit of the process's cgroup, bytes; absent when the cgroup is unlimited.
pub(crate) const CGROUP_MEMORY_LIMIT_BYTES: &str = "system.process.cgroup.memory.mem.limit.bytes";
/// Memory usage of the process's cgroup, bytes.
pub(crate) const CGROUP_MEMORY_USAGE_BYTES: &str = "system.process.cgroup.memory.mem.usage.bytes";

mod cgroup;
mod cpu;
mod memory;
mod sampler;

pub(crate) use sampler::Sampler;

/// One sample; `None` for every value that could not be read or computed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct SystemMetrics {
    pub(crate) cpu_total_norm_pct: Option<f64>,
    pub(crate) memory_total: Option<u64>,
    pub(crate) memory_actual_free: Option<u64>,
    pub(crate) process_cpu_total_norm_pct: Option<f64>,
    pub(crate) process_memory_size: Option<u64>,
    pub(crate) process_memory_rss_bytes: Option<u64>,
    pub(crate) cgroup_memory_limit_bytes: Option<u64>,
    pub(crate) cgroup_memory_usage_bytes: Option<u64>,
}

impl SystemMetrics {
    /// The values present, under their spec names, in the spec's order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> {
        let bytes = |v: Option<u64>| v.map(|b| b as f64);
        [
            (SYSTEM_CPU_TOTAL_NORM_PCT, self.cpu_total_norm_pct),
            (PROCESS_CPU_TOTAL_NORM_PCT, self.process_cpu_total_norm_pct),
            (SYSTEM_MEMORY_TOTAL, bytes(self.memory_total)),
            (SYSTEM_MEMORY_ACTUAL_FREE, bytes(self.memory_actual_free)),
            (PROCESS_MEMORY_SIZE, bytes(self.process_memory_size)),
            (
                PROCESS_MEMORY_RSS_BYTES,
                bytes(self.process_memory_rss_bytes),
            ),
            (
                CGROUP_MEMORY_LIMIT_BYTES,
                bytes(self.cgroup_memory_limit_bytes),
            ),
            (
                CGROUP_MEMORY_USAGE_BYTES,
                bytes(self.cgroup_memory_usage_bytes),
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- SystemMetrics -----------------------------------------------------------------------

    #[test]
    fn iter_yields_present_values_under_spec_names() {
        let m = SystemMetrics {
            cpu_total_norm_pct: Some(0.5),
            memory_total: Some(2048),
            cgroup_memory_usage_bytes: Some(7),
            ..SystemMetrics::default()
        };
        let got: Vec<_> = m.iter().collect();
        assert_eq!(
            got,
            [
                ("system.cpu.total.norm.pct", 0.5),
                ("system.memory.total", 2048.0),
                ("system.process.cgroup.memory.mem.usage.bytes", 7.0),
            ]
        );
        assert_eq!(SystemMetrics::default().iter().count(), 0);
    }
}
