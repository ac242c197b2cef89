//! Memory from `/proc/meminfo` (the system's) and `/proc/self/status` (this process's).

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
