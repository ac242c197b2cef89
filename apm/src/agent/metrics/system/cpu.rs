//! CPU usage from `/proc/stat` and `/proc/self/stat`: the system's and this process's share of
//! all CPUs' time between two samples.

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
}
