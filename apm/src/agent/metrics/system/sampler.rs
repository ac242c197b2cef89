//! Reading the real files: the previous CPU counters, the cgroup files found at start, and a
//! buffer reused for every read. Off Linux it reports nothing.

use super::SystemMetrics;

/// Reads the metrics; keeps the previous CPU counters so each [`Sampler::sample`] reports CPU
/// usage since the previous one (the first, since [`Sampler::new`]).
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    #[cfg(target_os = "linux")]
    linux: linux::State,
}

impl Sampler {
    /// Locates the cgroup files and takes the first CPU sample. Never fails.
    pub(crate) fn new() -> Self {
        Sampler {
            #[cfg(target_os = "linux")]
            linux: linux::State::new(),
        }
    }

    /// Reads the current values. Never panics or fails: what cannot be read is `None`.
    /// Off Linux std offers none of these values, so everything is `None`.
    pub(crate) fn sample(&mut self) -> SystemMetrics {
        #[cfg(target_os = "linux")]
        {
            self.linux.sample()
        }
        #[cfg(not(target_os = "linux"))]
        {
            SystemMetrics::default()
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::io::Read;
    use std::path::{Path, PathBuf};

    use super::super::cgroup::{
        memory_cgroup_dirs, parse_cgroup_limit, parse_cgroup_usage, CgroupVersion,
    };
    use super::super::cpu::{
        parse_proc_stat, parse_process_cpu_ticks, process_cpu_pct, system_cpu_pct, CpuTimes,
    };
    use super::super::memory::{parse_meminfo, parse_process_status};
    use super::SystemMetrics;

    const PROC_STAT: &str = "/proc/stat";
    const PROC_MEMINFO: &str = "/proc/meminfo";
    const PROC_SELF_STAT: &str = "/proc/self/stat";
    const PROC_SELF_STATUS: &str = "/proc/self/status";
    const PROC_SELF_CGROUP: &str = "/proc/self/cgroup";
    const PROC_SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

    /// The cgroup memory files found at start.
    #[derive(Debug)]
    struct CgroupFiles {
        version: CgroupVersion,
        limit: PathBuf,
        usage: PathBuf,
    }

    #[derive(Debug, Default)]
    pub(super) struct State {
        /// Reused for every file read: sampling allocates nothing once it has grown.
        buf: String,
        prev_cpu: Option<CpuTimes>,
        /// The process's ticks with the system counters read alongside them.
        prev_process: Option<(u64, CpuTimes)>,
        cgroup: Option<CgroupFiles>,
    }

    impl State {
        pub(super) fn new() -> Self {
            let mut state = State {
                cgroup: locate_cgroup_files(),
                ..State::default()
            };
            let _ = state.sample();
            state
        }

        pub(super) fn sample(&mut self) -> SystemMetrics {
            let mut out = SystemMetrics::default();

            let cpu = read(&mut self.buf, PROC_STAT).and_then(parse_proc_stat);
            let ticks = read(&mut self.buf, PROC_SELF_STAT).and_then(parse_process_cpu_ticks);
            if let (Some(prev), Some(cur)) = (self.prev_cpu, cpu) {
                out.cpu_total_norm_pct = system_cpu_pct(prev, cur);
            }
            if let (Some((prev_ticks, prev)), Some(cur_ticks), Some(cur)) =
                (self.prev_process, ticks, cpu)
            {
                out.process_cpu_total_norm_pct = process_cpu_pct(prev_ticks, cur_ticks, prev, cur);
            }
            // A failed read keeps the old baseline: the next delta spans both intervals.
            if cpu.is_some() {
                self.prev_cpu = cpu;
            }
            if let (Some(t), Some(c)) = (ticks, cpu) {
                self.prev_process = Some((t, c));
            }

            if let Some(mem) = read(&mut self.buf, PROC_MEMINFO).map(parse_meminfo) {
                out.memory_total = mem.total;
                out.memory_actual_free = mem.available;
            }
            if let Some(mem) = read(&mut self.buf, PROC_SELF_STATUS).map(parse_process_status) {
                out.process_memory_size = mem.size;
                out.process_memory_rss_bytes = mem.rss;
            }
            if let Some(files) = &self.cgroup {
                out.cgroup_memory_limit_bytes = read(&mut self.buf, &files.limit)
                    .and_then(|c| parse_cgroup_limit(c, files.version));
                out.cgroup_memory_usage_bytes =
                    read(&mut self.buf, &files.usage).and_then(parse_cgroup_usage);
            }
            out
        }
    }

    /// The first candidate directory whose usage file opens.
    fn locate_cgroup_files() -> Option<CgroupFiles> {
        let self_cgroup = std::fs::read_to_string(PROC_SELF_CGROUP).ok()?;
        // Lossy: a mount point that is not UTF-8 must not hide the memory mount's line.
        let mountinfo = std::fs::read(PROC_SELF_MOUNTINFO)
            .ok()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        let (version, dirs) = memory_cgroup_dirs(&self_cgroup, mountinfo.as_deref())?;
        dirs.into_iter().find_map(|dir| {
            let usage = dir.join(version.usage_file());
            File::open(&usage).ok()?;
            Some(CgroupFiles {
                version,
                limit: dir.join(version.limit_file()),
                usage,
            })
        })
    }

    /// Reads `path` into `buf`, replacing its contents.
    fn read(buf: &mut String, path: impl AsRef<Path>) -> Option<&str> {
        buf.clear();
        File::open(path).ok()?.read_to_string(buf).ok()?;
        Some(buf.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::super::cgroup::CGROUP_V1_UNLIMITED_MIN;
    use super::super::cpu::parse_process_cpu_ticks;
    use super::*;

    // --- the live machine --------------------------------------------------------------------

    #[test]
    fn back_to_back_samples_never_panic() {
        let mut sampler = Sampler::new();
        for _ in 0..3 {
            let m = sampler.sample();
            for (name, value) in m.iter() {
                assert!(value.is_finite() && value >= 0.0, "{name} = {value}");
            }
        }
    }

    /// Reads this process's CPU ticks, for the busy loop below.
    #[cfg(target_os = "linux")]
    fn own_ticks() -> Option<u64> {
        parse_process_cpu_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn live_busy_thread_shows_process_cpu() {
        use std::time::{Duration, Instant};

        let mut sampler = Sampler::new();
        let start_ticks = own_ticks().unwrap();
        // Spin for a measured interval, and on until the kernel has charged this process at
        // least two ticks (a loaded machine may not schedule the thread at once), capped.
        let spinner = std::thread::spawn(move || {
            let start = Instant::now();
            let mut x = 0u64;
            loop {
                for i in 0..100_000u64 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
                }
                let elapsed = start.elapsed();
                let charged = own_ticks().is_some_and(|t| t >= start_ticks + 2);
                if (elapsed >= Duration::from_millis(200) && charged)
                    || elapsed >= Duration::from_secs(20)
                {
                    return x;
                }
            }
        });
        spinner.join().unwrap();
        let m = sampler.sample();

        let process = m.process_cpu_total_norm_pct.unwrap();
        assert!(process > 0.0 && process <= 1.0, "process cpu {process}");
        let system = m.cpu_total_norm_pct.unwrap();
        assert!((0.0..=1.0).contains(&system), "system cpu {system}");
        // The process is part of the system (both read from the same tick counters).
        assert!(system > 0.0);

        let total = m.memory_total.unwrap();
        let free = m.memory_actual_free.unwrap();
        assert!(total > 0 && total >= free, "total {total}, free {free}");
        let rss = m.process_memory_rss_bytes.unwrap();
        let size = m.process_memory_size.unwrap();
        assert!(rss > 0 && size >= rss, "rss {rss}, size {size}");

        if let Some(usage) = m.cgroup_memory_usage_bytes {
            assert!(usage > 0, "cgroup usage {usage}");
        }
        if let Some(limit) = m.cgroup_memory_limit_bytes {
            assert!(
                limit > 0 && limit < CGROUP_V1_UNLIMITED_MIN,
                "cgroup limit {limit}"
            );
        }
    }
}
