//! System and process CPU/memory metrics and cgroup memory metrics read from Linux `/proc`, as
//! the Elastic agent spec defines them (`specs/agents/metrics.md`, "System/process CPU/Heap"
//! and "cgroup metrics"). The Python agent's `elasticapm/metrics/sets/cpu_linux.py` is the
//! reference design.
//!
//! Every parser takes a file's *contents* and returns `None` (or a field set to `None`) for
//! anything it does not understand, so it can be tested against fixtures. [`Sampler`] reads the
//! real files, keeps the previous CPU counters, never panics and never fails: a missing or
//! unreadable file omits the metrics that depend on it. Off Linux it reports nothing.

use std::path::{Path, PathBuf};

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

/// The cgroup v1 "no limit" value of `memory.limit_in_bytes` given by the spec: `LONG_MAX`
/// rounded down to a 4 KiB page.
pub(crate) const CGROUP_V1_UNLIMITED: u64 = 0x7fff_ffff_ffff_f000;
/// Limits at or above this are "no limit": the same sentinel for 64 KiB pages (arm64, ppc64),
/// which is smaller than the 4 KiB one, and `LONG_MAX` itself (kernels before 3.19).
const CGROUP_V1_UNLIMITED_MIN: u64 = CGROUP_V1_UNLIMITED & !0xffff;

/// Where the spec says to look for the memory controller when mountinfo names none (v1).
const DEFAULT_V1_MEMORY_MOUNT: &str = "/sys/fs/cgroup/memory";
/// The conventional cgroup v2 mount, the fallback the Python agent uses (the spec names none).
const DEFAULT_V2_MOUNT: &str = "/sys/fs/cgroup";

// ---------------------------------------------------------------------------------------------
// CPU
// ---------------------------------------------------------------------------------------------

/// The aggregate `cpu` line of `/proc/stat`, in clock ticks summed over all online CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    /// `idle + iowait`: time no work ran.
    pub(crate) idle: u64,
    /// `user + nice + system + idle + iowait + irq + softirq + steal`. `guest` and `guest_nice`
    /// are left out because the kernel already counts them in `user` and `nice`.
    pub(crate) total: u64,
}

/// Parses the contents of `/proc/stat`. Fields missing on old kernels (`steal`, …) count as 0;
/// the four fields every kernel has (`user nice system idle`) are required.
pub(crate) fn parse_proc_stat(contents: &str) -> Option<CpuTimes> {
    let line = contents.lines().find(|l| l.starts_with("cpu "))?;
    let mut fields = line.split_ascii_whitespace().skip(1);
    // user, nice, system, idle, iowait, irq, softirq, steal
    let mut v = [0u64; 8];
    for (i, slot) in v.iter_mut().enumerate() {
        match fields.next() {
            Some(f) => *slot = f.parse().ok()?,
            None if i >= 4 => break,
            None => return None,
        }
    }
    let total = v.iter().try_fold(0u64, |acc, x| acc.checked_add(*x))?;
    Some(CpuTimes {
        idle: v[3].checked_add(v[4])?,
        total,
    })
}

/// `system.cpu.total.norm.pct`: `1 − Δidle / Δtotal` between two `/proc/stat` samples.
///
/// `None` when no tick elapsed or the total went backwards (a CPU went offline): there is no
/// meaningful ratio then. `iowait` may decrease (proc(5)); the result is clamped to `[0, 1]`.
pub(crate) fn system_cpu_pct(prev: CpuTimes, cur: CpuTimes) -> Option<f64> {
    let total = cur.total.checked_sub(prev.total).filter(|d| *d > 0)?;
    let idle = cur.idle.saturating_sub(prev.idle).min(total);
    Some(1.0 - idle as f64 / total as f64)
}

/// Parses the contents of `/proc/self/stat` into `utime + stime`, in clock ticks.
///
/// The command name (field 2) is parenthesised and may itself contain spaces and parentheses,
/// so fields are counted from the *last* `)`.
pub(crate) fn parse_process_cpu_ticks(contents: &str) -> Option<u64> {
    let after_comm = &contents[contents.rfind(')')? + 1..];
    // After the name: state (field 3) … utime (field 14), stime (field 15).
    let mut fields = after_comm.split_ascii_whitespace().skip(14 - 3);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    utime.checked_add(stime)
}

/// `system.process.cpu.total.norm.pct`: the process's CPU ticks over the ticks all CPUs spent
/// in the same interval. `/proc/stat`'s aggregate line sums every CPU, so its delta is elapsed
/// time × CPU count and the ratio is already normalised by the CPU count (one core kept busy
/// on a 4-CPU machine reads 0.25). Both files count in the same unit (`USER_HZ`).
pub(crate) fn process_cpu_pct(
    prev_ticks: u64,
    cur_ticks: u64,
    prev: CpuTimes,
    cur: CpuTimes,
) -> Option<f64> {
    let total = cur.total.checked_sub(prev.total).filter(|d| *d > 0)?;
    let process = cur_ticks.checked_sub(prev_ticks)?;
    Some((process as f64 / total as f64).min(1.0))
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// `system.memory.*` from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemInfo {
    /// `MemTotal`.
    pub(crate) total: Option<u64>,
    /// `MemAvailable`; before Linux 3.14, which lacks it, `MemFree + Buffers + Cached` (the
    /// Python agent's fallback; the spec names none).
    pub(crate) available: Option<u64>,
}

/// Parses the contents of `/proc/meminfo`.
pub(crate) fn parse_meminfo(contents: &str) -> MemInfo {
    let (mut total, mut available) = (None, None);
    let (mut free, mut buffers, mut cached) = (None, None, None);
    for line in contents.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            "Buffers" => &mut buffers,
            "Cached" => &mut cached,
            _ => continue,
        };
        *slot = parse_kib(value);
    }
    let fallback = || {
        free?
            .checked_add(buffers.unwrap_or(0))?
            .checked_add(cached.unwrap_or(0))
    };
    MemInfo {
        total,
        available: available.or_else(fallback),
    }
}

/// The process's memory from `/proc/self/status`, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ProcessMemory {
    /// `VmSize`: `system.process.memory.size`.
    pub(crate) size: Option<u64>,
    /// `VmRSS`: `system.process.memory.rss.bytes`.
    pub(crate) rss: Option<u64>,
}

/// Parses the contents of `/proc/self/status`. Both fields are absent for kernel threads.
pub(crate) fn parse_process_status(contents: &str) -> ProcessMemory {
    let mut out = ProcessMemory::default();
    for line in contents.lines() {
        match line.split_once(':') {
            Some(("VmSize", value)) => out.size = parse_kib(value),
            Some(("VmRSS", value)) => out.rss = parse_kib(value),
            _ => {}
        }
    }
    out
}

/// `"   1234 kB"` → 1234 × 1024. The kernel's `kB` is KiB.
fn parse_kib(value: &str) -> Option<u64> {
    let mut parts = value.split_ascii_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => n.checked_mul(1024),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// cgroup memory
// ---------------------------------------------------------------------------------------------

/// Which cgroup hierarchy holds the memory controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    /// The limit file: v1 `memory.limit_in_bytes`, v2 `memory.max` (spec, "Metrics source").
    pub(crate) fn limit_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        }
    }

    /// The usage file: v1 `memory.usage_in_bytes`, v2 `memory.current`.
    pub(crate) fn usage_file(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "memory.usage_in_bytes",
            CgroupVersion::V2 => "memory.current",
        }
    }
}

/// The process's memory cgroup, from one line of `/proc/self/cgroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CgroupMembership<'a> {
    pub(crate) version: CgroupVersion,
    /// The cgroup path relative to the hierarchy's root, e.g. `/docker/<id>` or `/`.
    pub(crate) path: &'a str,
}

/// Parses the contents of `/proc/self/cgroup` (`hierarchy-ID:controller-list:cgroup-path`
/// lines). A v1 line whose controller list includes `memory` wins: a controller is bound to one
/// hierarchy only, so the memory controller is then not on v2. Otherwise the v2 line (`0::path`).
pub(crate) fn parse_self_cgroup(contents: &str) -> Option<CgroupMembership<'_>> {
    let mut v2 = None;
    for line in contents.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            return Some(CgroupMembership {
                version: CgroupVersion::V1,
                path,
            });
        }
        if id == "0" && controllers.is_empty() && v2.is_none() {
            v2 = Some(CgroupMembership {
                version: CgroupVersion::V2,
                path,
            });
        }
    }
    v2
}

/// A cgroup file system mount from `/proc/self/mountinfo`, escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// The directory of the hierarchy mounted (field 4), `/` unless a sub-tree is mounted.
    pub(crate) root: String,
    /// Where it is mounted (field 5).
    pub(crate) mount_point: String,
}

/// Finds the mount of the hierarchy holding the memory controller in the contents of
/// `/proc/self/mountinfo` (`id parent major:minor root mount-point options [optional…] - fstype
/// source super-options`): for v1 a `cgroup` mount whose super options include `memory` (the
/// spec's `^\d+? \d+? .+? .+? (.*?) .*cgroup.*memory.*`), for v2 a `cgroup2` mount. Among
/// several, a mount whose root is `cgroup_path` or an ancestor of it is preferred, then the first.
pub(crate) fn find_memory_mount(
    mountinfo: &str,
    version: CgroupVersion,
    cgroup_path: &str,
) -> Option<CgroupMount> {
    let mut first = None;
    for line in mountinfo.lines() {
        let Some((root, mount_point)) = cgroup_mount_fields(line, version) else {
            continue;
        };
        let root = unescape_octal(root);
        if relative_to_root(&root, cgroup_path).is_some() {
            return Some(CgroupMount {
                root,
                mount_point: unescape_octal(mount_point),
            });
        }
        if first.is_none() {
            first = Some(CgroupMount {
                root,
                mount_point: unescape_octal(mount_point),
            });
        }
    }
    first
}

/// `(root, mount point)` of a mountinfo line mounting the memory hierarchy of `version`.
fn cgroup_mount_fields(line: &str, version: CgroupVersion) -> Option<(&str, &str)> {
    let mut fields = line.split(' ');
    let root = fields.nth(3)?;
    let mount_point = fields.next()?;
    // Skip the mount options and the optional fields up to the `-` separator.
    fields.find(|f| *f == "-")?;
    let fstype = fields.next()?;
    let _source = fields.next()?;
    let super_options = fields.next().unwrap_or("");
    let matches = match version {
        CgroupVersion::V1 => fstype == "cgroup" && super_options.split(',').any(|o| o == "memory"),
        CgroupVersion::V2 => fstype == "cgroup2",
    };
    matches.then_some((root, mount_point))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_octal(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = match bytes[i] {
            b'\\' => bytes
                .get(i + 1..i + 4)
                .filter(|d| d[0] <= b'3' && d.iter().all(|b| (b'0'..=b'7').contains(b))),
            _ => None,
        };
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `path` below `root`, without its leading `/`: `("/docker/x", "/docker/x/y")` → `"y"`.
fn relative_to_root<'p>(root: &str, path: &'p str) -> Option<&'p str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() || rest.starts_with('/') {
        Some(rest.trim_start_matches('/'))
    } else {
        None
    }
}

/// Directories that may hold the process's memory cgroup files, most specific first, from the
/// contents of `/proc/self/cgroup` and `/proc/self/mountinfo` (spec, "Discovery of the memory
/// files"): the memory mount joined with the process's cgroup path relative to the mount's root,
/// then the mount itself. Without a mount in mountinfo the spec's default `/sys/fs/cgroup/memory`
/// (v1) or `/sys/fs/cgroup` (v2) stands in. The caller takes the first directory whose usage
/// file it can read.
pub(crate) fn memory_cgroup_dirs(
    self_cgroup: &str,
    mountinfo: Option<&str>,
) -> Option<(CgroupVersion, Vec<PathBuf>)> {
    let membership = parse_self_cgroup(self_cgroup)?;
    let mount = mountinfo.and_then(|m| find_memory_mount(m, membership.version, membership.path));
    let (mount_point, relative) = match &mount {
        Some(m) => (
            m.mount_point.as_str(),
            relative_to_root(&m.root, membership.path),
        ),
        None => (
            match membership.version {
                CgroupVersion::V1 => DEFAULT_V1_MEMORY_MOUNT,
                CgroupVersion::V2 => DEFAULT_V2_MOUNT,
            },
            None,
        ),
    };
    // A path outside the mount's root (another cgroup namespace) is tried as-is, as the Python
    // agent does.
    let relative = relative.unwrap_or_else(|| membership.path.trim_start_matches('/'));
    let mount_point = Path::new(mount_point);
    let mut dirs = Vec::with_capacity(2);
    if !relative.is_empty() {
        dirs.push(mount_point.join(relative));
    }
    dirs.push(mount_point.to_path_buf());
    Some((membership.version, dirs))
}

/// Parses a limit file's contents. `None` for "no limit" — v2 `max`, v1 at or above
/// [`CGROUP_V1_UNLIMITED`] — as the spec says not to send the metric then, and for garbage.
pub(crate) fn parse_cgroup_limit(contents: &str, version: CgroupVersion) -> Option<u64> {
    let value = contents.trim();
    if version == CgroupVersion::V2 && value == "max" {
        return None;
    }
    let limit: u64 = value.parse().ok()?;
    match version {
        CgroupVersion::V1 if limit >= CGROUP_V1_UNLIMITED_MIN => None,
        _ => Some(limit),
    }
}

/// Parses a usage file's contents (`memory.usage_in_bytes` / `memory.current`).
pub(crate) fn parse_cgroup_usage(contents: &str) -> Option<u64> {
    contents.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Sampling
// ---------------------------------------------------------------------------------------------

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
    use super::*;
    use std::fs::File;
    use std::io::Read;

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
    use super::*;

    // --- /proc/stat --------------------------------------------------------------------------

    const PROC_STAT: &str = "\
cpu  76047 12 19186 345733 1554 0 209 18 7 0
cpu0 38002 6 9601 172900 780 0 120 9 3 0
cpu1 38045 6 9585 172833 774 0 89 9 4 0
intr 5190321 9 0 0 0 0 0 0 0 0 0 0 0 156 0 0 0
ctxt 10498263
btime 1718000000
processes 41280
procs_running 2
procs_blocked 0
softirq 2335180 1 603188 2 30577 0 0 1102 941253 0 759057
";

    #[test]
    fn proc_stat_aggregate_line() {
        let t = parse_proc_stat(PROC_STAT).unwrap();
        assert_eq!(t.idle, 345733 + 1554);
        // guest (7) and guest_nice (0) are not added: already part of user/nice.
        assert_eq!(t.total, 76047 + 12 + 19186 + 345733 + 1554 + 209 + 18);
    }

    #[test]
    fn proc_stat_old_kernel_without_steal_and_guest() {
        let t = parse_proc_stat("cpu  100 0 50 800 20 3 2\ncpu0 100 0 50 800 20 3 2\n").unwrap();
        assert_eq!(
            t,
            CpuTimes {
                idle: 820,
                total: 975
            }
        );
        let t = parse_proc_stat("cpu  100 0 50 800\n").unwrap();
        assert_eq!(
            t,
            CpuTimes {
                idle: 800,
                total: 950
            }
        );
    }

    #[test]
    fn proc_stat_malformed() {
        assert_eq!(parse_proc_stat(""), None);
        assert_eq!(parse_proc_stat("cpu0 1 2 3 4 5 6 7 8\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 3\n"), None);
        assert_eq!(parse_proc_stat("cpu  1 2 x 4\n"), None);
    }

    #[test]
    fn system_cpu_pct_is_one_minus_idle_share() {
        let prev = CpuTimes {
            idle: 1000,
            total: 2000,
        };
        let cur = CpuTimes {
            idle: 1300,
            total: 2400,
        };
        assert_eq!(system_cpu_pct(prev, cur), Some(0.25));
        assert_eq!(system_cpu_pct(prev, prev), None, "no tick elapsed");
        assert_eq!(system_cpu_pct(cur, prev), None, "total went backwards");
        // iowait decreasing makes Δidle "negative": clamped, not above 1.
        let fewer_idle = CpuTimes {
            idle: 900,
            total: 2400,
        };
        assert_eq!(system_cpu_pct(prev, fewer_idle), Some(1.0));
        // Fully idle.
        let idle = CpuTimes {
            idle: 1400,
            total: 2400,
        };
        assert_eq!(system_cpu_pct(prev, idle), Some(0.0));
    }

    // --- /proc/self/stat ---------------------------------------------------------------------

    #[test]
    fn process_ticks_are_utime_plus_stime() {
        let stat = "4242 (apm-demo) S 1 4242 4242 0 -1 4194560 2817 0 0 0 153 47 0 0 20 0 9 0 \
                    1054 1122304000 5321 18446744073709551615 1 1 0 0 0 0 0 4096 17663 0 0 0 \
                    17 1 0 0 0 0 0\n";
        assert_eq!(parse_process_cpu_ticks(stat), Some(153 + 47));
    }

    #[test]
    fn process_ticks_with_spaces_and_parens_in_the_name() {
        let stat = "77 (my (odd) name) R 1 77 77 0 -1 0 0 0 0 0 9 4 0 0 20 0 1 0 5 1000 10\n";
        assert_eq!(parse_process_cpu_ticks(stat), Some(13));
        assert_eq!(parse_process_cpu_ticks("77 (x) R 1 2 3"), None);
        assert_eq!(parse_process_cpu_ticks("no name here"), None);
    }

    #[test]
    fn process_cpu_pct_is_normalised_by_cpu_count() {
        // 4 CPUs, 1 s at USER_HZ=100: the aggregate line advances 400 ticks. One core busy for
        // the process is 100 ticks: a quarter of the machine.
        let prev = CpuTimes {
            idle: 0,
            total: 10_000,
        };
        let cur = CpuTimes {
            idle: 300,
            total: 10_400,
        };
        assert_eq!(process_cpu_pct(500, 600, prev, cur), Some(0.25));
        assert_eq!(process_cpu_pct(500, 500, prev, cur), Some(0.0));
        assert_eq!(process_cpu_pct(500, 600, prev, prev), None);
        assert_eq!(process_cpu_pct(600, 500, prev, cur), None);
        // Counters read a moment apart can exceed the interval slightly: capped at 1.
        assert_eq!(process_cpu_pct(0, 500, prev, cur), Some(1.0));
    }

    // --- /proc/meminfo, /proc/self/status ----------------------------------------------------

    const MEMINFO: &str = "\
MemTotal:       24684084 kB
MemFree:        18521012 kB
MemAvailable:   24001548 kB
Buffers:          150784 kB
Cached:          5210336 kB
SwapCached:            0 kB
Active:          2402692 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn meminfo_uses_mem_available() {
        let m = parse_meminfo(MEMINFO);
        assert_eq!(m.total, Some(24684084 * 1024));
        assert_eq!(m.available, Some(24001548 * 1024));
    }

    #[test]
    fn meminfo_without_mem_available_falls_back_to_free_buffers_cached() {
        // Linux 3.10 (e.g. CentOS 7 before its backport).
        let old = "\
MemTotal:        3882124 kB
MemFree:          256876 kB
Buffers:          112128 kB
Cached:          2745436 kB
SwapCached:         1236 kB
";
        let m = parse_meminfo(old);
        assert_eq!(m.total, Some(3882124 * 1024));
        assert_eq!(m.available, Some((256876 + 112128 + 2745436) * 1024));
    }

    #[test]
    fn meminfo_missing_or_malformed() {
        assert_eq!(parse_meminfo(""), MemInfo::default());
        let m = parse_meminfo("MemTotal: lots kB\nMemAvailable: 10 MB\n");
        assert_eq!(m, MemInfo::default());
    }

    #[test]
    fn process_status_vm_size_and_rss() {
        let status = "\
Name:\tapm-demo
Umask:\t0022
State:\tS (sleeping)
Tgid:\t4242
VmPeak:\t 1096708 kB
VmSize:\t 1096000 kB
VmLck:\t       0 kB
VmHWM:\t   21540 kB
VmRSS:\t   21284 kB
RssAnon:\t    9216 kB
Threads:\t9
";
        let m = parse_process_status(status);
        assert_eq!(m.size, Some(1096000 * 1024));
        assert_eq!(m.rss, Some(21284 * 1024));
        let kernel_thread = "Name:\tkworker/0:1\nState:\tI (idle)\nThreads:\t1\n";
        assert_eq!(
            parse_process_status(kernel_thread),
            ProcessMemory::default()
        );
    }

    // --- cgroup discovery --------------------------------------------------------------------

    const DOCKER_ID: &str = "5042cfbb4ab36fcef9ca5f1eda54f40265c6ef3fe0694dfe34b9b474e70f8df5";

    fn dirs(cgroup: &str, mountinfo: Option<&str>) -> Option<(CgroupVersion, Vec<PathBuf>)> {
        memory_cgroup_dirs(cgroup, mountinfo)
    }

    fn paths(p: &[&str]) -> Vec<PathBuf> {
        p.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn v1_docker_container_mounts_its_own_cgroup() {
        let cgroup = format!(
            "12:pids:/docker/{DOCKER_ID}\n\
             4:memory:/docker/{DOCKER_ID}\n\
             3:cpu,cpuacct:/docker/{DOCKER_ID}\n\
             1:name=systemd:/docker/{DOCKER_ID}\n"
        );
        // The spec's example line, with the optional field `master:22`.
        let mountinfo = format!(
            "431 410 0:63 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - tmpfs tmpfs rw,mode=755\n\
             435 431 0:32 /docker/{DOCKER_ID} /sys/fs/cgroup/cpu,cpuacct ro,nosuid,nodev,noexec,relatime master:12 - cgroup cpu,cpuacct rw,cpu,cpuacct\n\
             436 431 0:33 /docker/{DOCKER_ID} /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:22 - cgroup memory rw,memory\n"
        );
        let m = parse_self_cgroup(&cgroup).unwrap();
        assert_eq!(m.version, CgroupVersion::V1);
        assert_eq!(m.path, format!("/docker/{DOCKER_ID}"));
        assert_eq!(
            dirs(&cgroup, Some(&mountinfo)),
            Some((CgroupVersion::V1, paths(&["/sys/fs/cgroup/memory"])))
        );
    }

    #[test]
    fn v1_host_joins_the_cgroup_path_to_the_mount() {
        // Hybrid host (systemd): v1 controllers plus an empty cgroup2 `unified` hierarchy.
        let cgroup = "\
9:name=systemd:/
4:memory:/process_api/404df5061ef0c36b778500dcdd4abc23
1:cpu:/
0::/
";
        let mountinfo = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        assert_eq!(
            dirs(cgroup, Some(mountinfo)),
            Some((
                CgroupVersion::V1,
                paths(&[
                    "/sys/fs/cgroup/memory/process_api/404df5061ef0c36b778500dcdd4abc23",
                    "/sys/fs/cgroup/memory",
                ])
            ))
        );
    }

    #[test]
    fn v1_memory_comounted_with_other_controllers() {
        let cgroup = "5:cpu,memory:/jobs/7\n";
        let mountinfo =
            "40 31 0:40 / /cg/cpu,memory rw,relatime shared:9 - cgroup cgroup rw,cpu,memory\n";
        assert_eq!(
            dirs(cgroup, Some(mountinfo)),
            Some((
                CgroupVersion::V1,
                paths(&["/cg/cpu,memory/jobs/7", "/cg/cpu,memory"])
            ))
        );
    }

    #[test]
    fn v2_host_and_container() {
        let host = format!("0::/system.slice/docker-{DOCKER_ID}.scope\n");
        let mountinfo = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
        let m = parse_self_cgroup(&host).unwrap();
        assert_eq!(m.version, CgroupVersion::V2);
        assert_eq!(
            dirs(&host, Some(mountinfo)),
            Some((
                CgroupVersion::V2,
                vec![
                    PathBuf::from(format!(
                        "/sys/fs/cgroup/system.slice/docker-{DOCKER_ID}.scope"
                    )),
                    PathBuf::from("/sys/fs/cgroup"),
                ]
            ))
        );
        // In a container with its own cgroup namespace the process sits at the root.
        let container = "0::/\n";
        let mountinfo = "\
1071 1070 0:30 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw
";
        assert_eq!(
            dirs(container, Some(mountinfo)),
            Some((CgroupVersion::V2, paths(&["/sys/fs/cgroup"])))
        );
    }

    #[test]
    fn v2_prefers_the_mount_whose_root_contains_the_cgroup() {
        let cgroup = "0::/kubepods/pod1/ctr\n";
        let mountinfo = "\
50 40 0:30 /other /mnt/other rw - cgroup2 cgroup2 rw
51 40 0:30 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            dirs(cgroup, Some(mountinfo)),
            Some((
                CgroupVersion::V2,
                paths(&["/sys/fs/cgroup/ctr", "/sys/fs/cgroup"])
            ))
        );
    }

    #[test]
    fn hybrid_without_memory_on_v1_uses_v2() {
        let cgroup =
            "3:cpu,cpuacct:/\n1:name=systemd:/user.slice\n0::/user.slice/session-2.scope\n";
        let mountinfo = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            dirs(cgroup, Some(mountinfo)),
            Some((
                CgroupVersion::V2,
                paths(&[
                    "/sys/fs/cgroup/unified/user.slice/session-2.scope",
                    "/sys/fs/cgroup/unified",
                ])
            ))
        );
    }

    #[test]
    fn no_mount_found_uses_the_spec_default() {
        let v1 = format!("4:memory:/docker/{DOCKER_ID}\n");
        let expected_v1 = vec![
            PathBuf::from(format!("/sys/fs/cgroup/memory/docker/{DOCKER_ID}")),
            PathBuf::from("/sys/fs/cgroup/memory"),
        ];
        assert_eq!(
            dirs(&v1, None),
            Some((CgroupVersion::V1, expected_v1.clone()))
        );
        let unrelated = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";
        assert_eq!(
            dirs(&v1, Some(unrelated)),
            Some((CgroupVersion::V1, expected_v1))
        );
        assert_eq!(
            dirs("0::/\n", None),
            Some((CgroupVersion::V2, paths(&["/sys/fs/cgroup"])))
        );
    }

    #[test]
    fn no_memory_cgroup() {
        assert_eq!(dirs("", None), None);
        assert_eq!(dirs("3:cpu:/\n1:name=systemd:/\n", None), None);
        assert_eq!(dirs("garbage\n", None), None);
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        let mountinfo = "60 31 0:50 / /mnt/my\\040cgroups\\134v1 rw - cgroup cgroup rw,memory\n";
        let mount = find_memory_mount(mountinfo, CgroupVersion::V1, "/").unwrap();
        assert_eq!(mount.mount_point, "/mnt/my cgroups\\v1");
        assert_eq!(unescape_octal("a\\\\b\\9x\\"), "a\\\\b\\9x\\");
    }

    #[test]
    fn relative_to_root_matches_whole_components() {
        assert_eq!(relative_to_root("/", "/a/b"), Some("a/b"));
        assert_eq!(relative_to_root("/a", "/a"), Some(""));
        assert_eq!(relative_to_root("/a", "/a/b"), Some("b"));
        assert_eq!(relative_to_root("/a", "/ab"), None);
        assert_eq!(relative_to_root("/..", "/a"), None);
    }

    // --- cgroup limit and usage files --------------------------------------------------------

    #[test]
    fn v2_limit_max_is_unlimited() {
        assert_eq!(parse_cgroup_limit("max\n", CgroupVersion::V2), None);
        assert_eq!(
            parse_cgroup_limit("536870912\n", CgroupVersion::V2),
            Some(536870912)
        );
        assert_eq!(parse_cgroup_limit("", CgroupVersion::V2), None);
    }

    #[test]
    fn v1_limit_sentinel_is_unlimited() {
        // The spec's value, 0x7ffffffffffff000, as the kernel prints it.
        assert_eq!(
            parse_cgroup_limit("9223372036854771712\n", CgroupVersion::V1),
            None
        );
        assert_eq!(
            parse_cgroup_limit(&CGROUP_V1_UNLIMITED.to_string(), CgroupVersion::V1),
            None
        );
        // 64 KiB pages, and LONG_MAX from kernels before 3.19.
        assert_eq!(
            parse_cgroup_limit("9223372036854710272\n", CgroupVersion::V1),
            None
        );
        assert_eq!(
            parse_cgroup_limit("9223372036854775807\n", CgroupVersion::V1),
            None
        );
        assert_eq!(
            parse_cgroup_limit("1073741824\n", CgroupVersion::V1),
            Some(1 << 30)
        );
        // `max` means nothing to v1.
        assert_eq!(parse_cgroup_limit("max\n", CgroupVersion::V1), None);
    }

    #[test]
    fn file_names_per_version() {
        assert_eq!(CgroupVersion::V1.limit_file(), "memory.limit_in_bytes");
        assert_eq!(CgroupVersion::V1.usage_file(), "memory.usage_in_bytes");
        assert_eq!(CgroupVersion::V2.limit_file(), "memory.max");
        assert_eq!(CgroupVersion::V2.usage_file(), "memory.current");
    }

    #[test]
    fn usage_files() {
        assert_eq!(parse_cgroup_usage("3047424\n"), Some(3047424));
        assert_eq!(parse_cgroup_usage(""), None);
        assert_eq!(parse_cgroup_usage("-1\n"), None);
    }

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
