//! The memory cgroup of this process (v1 or v2): where its limit and usage files are, found
//! from `/proc/self/cgroup` and `/proc/self/mountinfo`, and how to read them.

use std::path::{Path, PathBuf};

/// The cgroup v1 "no limit" value of `memory.limit_in_bytes` given by the spec: `LONG_MAX`
/// rounded down to a 4 KiB page.
pub(crate) const CGROUP_V1_UNLIMITED: u64 = 0x7fff_ffff_ffff_f000;
/// Limits at or above this are "no limit": the same sentinel for 64 KiB pages (arm64, ppc64),
/// which is smaller than the 4 KiB one, and `LONG_MAX` itself (kernels before 3.19).
pub(super) const CGROUP_V1_UNLIMITED_MIN: u64 = CGROUP_V1_UNLIMITED & !0xffff;

/// Where the spec says to look for the memory controller when mountinfo names none (v1).
const DEFAULT_V1_MEMORY_MOUNT: &str = "/sys/fs/cgroup/memory";
/// The conventional cgroup v2 mount, the fallback the Python agent uses (the spec names none).
const DEFAULT_V2_MOUNT: &str = "/sys/fs/cgroup";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
