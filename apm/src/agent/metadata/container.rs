//! Container and Kubernetes pod discovery from `/proc/self/cgroup` and `/proc/self/mountinfo`,
//! following the Elastic agent spec (`specs/agents/metadata.md`, "Container/Kubernetes
//! metadata") and its fixture `container_metadata_discovery.json`.
//!
//! The spec states the rules as regular expressions; they are matched by hand here (no regex
//! dependency), each helper naming the expression it implements.

/// What discovery found; both `None` outside containers and on any read failure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ContainerInfo {
    pub(crate) container_id: Option<String>,
    pub(crate) pod_uid: Option<String>,
}

/// Reads the real files. Never fails: an unreadable or missing file counts as absent.
pub(crate) fn detect() -> ContainerInfo {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
    // Read lazily: only needed when the cgroup file names no container (cgroup v2).
    let from_cgroup = parse(cgroup.as_deref(), None);
    if from_cgroup.container_id.is_some() {
        return from_cgroup;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
    parse(cgroup.as_deref(), mountinfo.as_deref())
}

/// Parses the contents of `/proc/self/cgroup` and `/proc/self/mountinfo` (either may be absent).
///
/// The first cgroup line yielding a container ID wins; with cgroup v2 (`0::/`) the cgroup file
/// names none and the mount providing `/etc/hostname` is the fallback.
pub(crate) fn parse(cgroup: Option<&str>, mountinfo: Option<&str>) -> ContainerInfo {
    if let Some(found) = cgroup.and_then(|c| c.lines().find_map(parse_cgroup_line)) {
        return found;
    }
    ContainerInfo {
        container_id: mountinfo.and_then(|m| m.lines().find_map(parse_mountinfo_line)),
        pod_uid: None,
    }
}

/// One `hierarchy-ID:controller-list:cgroup-path` line.
fn parse_cgroup_line(line: &str) -> Option<ContainerInfo> {
    let mut fields = line.trim_end_matches('\r').splitn(3, ':');
    let (_hierarchy, _controllers, path) = (fields.next()?, fields.next()?, fields.next()?);

    // 1. containerd-cri paths look like `<dirname>:cri-containerd:<id>`: split on the last
    //    colon when there is one, else on the last slash.
    let sep = path.rfind(':').or_else(|| path.rfind('/'))?;
    let (dirname, mut basename) = (&path[..sep], &path[sep + 1..]);

    // 2. `…/docker-<id>.scope` → `<id>`. The last hyphen: runtimes prefix with hyphenated
    //    names (`cri-containerd-<id>.scope`).
    if let Some(stem) = basename.strip_suffix(".scope") {
        basename = stem.rfind('-').map_or(stem, |i| &stem[i + 1..]);
    }
    if basename.is_empty() {
        return None;
    }

    // 3. A pod UID in the dirname makes the basename the container ID, unchecked.
    if let Some(pod) = pod_uid(dirname) {
        return Some(ContainerInfo {
            container_id: Some(basename.to_owned()),
            pod_uid: Some(pod.replace('_', "-")),
        });
    }

    // 4. Otherwise only a basename shaped like a container ID counts.
    (is_hex64(basename) || is_shortened_uuid(basename) || is_ecs_task_id(basename)).then(|| {
        ContainerInfo {
            container_id: Some(basename.to_owned()),
            pod_uid: None,
        }
    })
}

/// `(?:^/kubepods[\S]*/pod([^/]+)$)|(?:kubepods[^/]*-pod([^/]+)\.slice)`, first group that
/// matched (leftmost match, alternatives in order, as a backtracking engine finds it).
fn pod_uid(dirname: &str) -> Option<&str> {
    cgroupfs_pod(dirname).or_else(|| systemd_pod(dirname))
}

/// `^/kubepods[\S]*/pod([^/]+)$`: the last component is `pod<uid>`, the path starts with
/// `/kubepods` and has no whitespace before that component.
fn cgroupfs_pod(dirname: &str) -> Option<&str> {
    let rest = dirname.strip_prefix("/kubepods")?;
    let last_slash = rest.rfind('/')?;
    let (middle, last) = (&rest[..last_slash], &rest[last_slash + 1..]);
    if middle.chars().any(char::is_whitespace) {
        return None;
    }
    last.strip_prefix("pod").filter(|uid| !uid.is_empty())
}

/// `kubepods[^/]*-pod([^/]+)\.slice`, unanchored. From the leftmost `kubepods`, the greedy
/// `[^/]*` makes the engine try the last `-pod` of that path component first, and the greedy
/// group then ends at the last `.slice` after it (at least one character in).
fn systemd_pod(dirname: &str) -> Option<&str> {
    let mut from = 0;
    while let Some(i) = dirname[from..].find("kubepods") {
        let start = from + i + "kubepods".len();
        // Neither `[^/]*` nor `([^/]+)` nor `.slice` can cross a slash.
        let component = &dirname[start..];
        let component = &component[..component.find('/').unwrap_or(component.len())];
        let mut end = component.len();
        while let Some(p) = component[..end].rfind("-pod") {
            let after = &component[p + "-pod".len()..];
            if let Some(q) = after.rfind(".slice").filter(|&q| q >= 1) {
                return Some(&after[..q]);
            }
            end = p;
        }
        from = from + i + 1;
    }
    None
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `^[[:xdigit:]]{64}$`
fn is_hex64(s: &str) -> bool {
    s.len() == 64 && is_hex(s)
}

/// `^[[:xdigit:]]{8}-[[:xdigit:]]{4}-[[:xdigit:]]{4}-[[:xdigit:]]{4}-[[:xdigit:]]{4,}$`
fn is_shortened_uuid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts.iter().all(|p| is_hex(p))
        && [8, 4, 4, 4].iter().zip(&parts).all(|(&n, p)| p.len() == n)
        && parts[4].len() >= 4
}

/// `^[[:xdigit:]]{32}-[[:digit:]]{10}$` (AWS ECS / Fargate).
fn is_ecs_task_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(task, n)| {
        task.len() == 32 && is_hex(task) && n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// A mountinfo line (`id parent major:minor root mount-point options … - fstype source …`)
/// whose mount point is `/etc/hostname`: the container runtime bind-mounts that file from its
/// per-container directory, so the root field holds the ID (the first run of 64 hex digits).
fn parse_mountinfo_line(line: &str) -> Option<String> {
    let mut fields = line.split(' ');
    let root = fields.nth(3)?;
    if fields.next()? != "/etc/hostname" {
        return None;
    }
    first_hex64(root).map(str::to_owned)
}

/// Leftmost 64 consecutive hex digits, as the unanchored `[[:xdigit:]]{64}` finds them.
fn first_hex64(s: &str) -> Option<&str> {
    let bytes = s.as_bytes();
    let mut run_start = 0;
    for (i, b) in bytes.iter().enumerate() {
        if !b.is_ascii_hexdigit() {
            run_start = i + 1;
        } else if i + 1 - run_start == 64 {
            return Some(&s[run_start..=i]);
        }
    }
    None
}

#[cfg(test)]
mod unit {
    use super::*;

    fn cgroup(line: &str) -> ContainerInfo {
        parse(Some(line), None)
    }

    fn id(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    const ID: &str = "2227daf62df6694645fee5df53c1f91271546a9560e8600a525690ae252b7f63";

    #[test]
    fn docker_cgroupfs_and_systemd() {
        assert_eq!(cgroup(&format!("3:cpu:/docker/{ID}")).container_id, id(ID));
        assert_eq!(
            cgroup(&format!("1:name=systemd:/system.slice/docker-{ID}.scope")).container_id,
            id(ID)
        );
        assert_eq!(
            cgroup(&format!(
                "1:name=systemd:/system.slice/docker-{}.scope",
                &ID[1..]
            )),
            ContainerInfo::default()
        );
    }

    #[test]
    fn kubernetes_cgroupfs_pod() {
        let c = cgroup(&format!(
            "4:cpu:/kubepods/besteffort/pod0e886e9a-3879-45f9-b44d-86ef9df03224/{ID}"
        ));
        assert_eq!(c.container_id, id(ID));
        assert_eq!(c.pod_uid, id("0e886e9a-3879-45f9-b44d-86ef9df03224"));
        // Basename unchecked once a pod matched.
        assert_eq!(cgroup("4:cpu:/kubepods/pod123/abc").container_id, id("abc"));
        assert_eq!(
            cgroup("4:cpu:/kubepods/x y/pod123/abc"),
            ContainerInfo::default()
        );
    }

    #[test]
    fn containerd_cri_colon_paths() {
        let c = cgroup(&format!(
            "0::/kubepods-besteffort-pod5f7e_1a2b.slice:cri-containerd:{ID}"
        ));
        assert_eq!(c.container_id, id(ID));
        assert_eq!(c.pod_uid, id("5f7e-1a2b"));
    }

    #[test]
    fn systemd_pod_picks_the_backtracking_match() {
        assert_eq!(
            systemd_pod("/kubepods.slice/kubepods-a-podX.slice"),
            Some("X")
        );
        // Greedy `[^/]*`: the last `-pod` of the component; greedy group: the last `.slice`.
        assert_eq!(systemd_pod("/kubepods-podA-podB.slice"), Some("B"));
        assert_eq!(systemd_pod("/kubepods-podA.slice.slice"), Some("A.slice"));
        assert_eq!(systemd_pod("/kubepods-pod.slice"), None);
        assert_eq!(systemd_pod("/kubepods-podA/x.slice"), None);
        // A later `kubepods` in the same component can still match.
        assert_eq!(systemd_pod("/xkubepods-kubepods-podQ.slice"), Some("Q"));
    }

    #[test]
    fn id_shapes() {
        assert!(is_shortened_uuid("75bc72bd-6642-4cf5-b62c-0674e11bfc84"));
        assert!(!is_shortened_uuid("75bc72bd-6642-4cf5-b62c-067"));
        assert!(!is_shortened_uuid("75bc72bd-6642-4cf5-b62c"));
        assert!(is_ecs_task_id(
            "03752a671e744971a862edcee6195646-4015103728"
        ));
        assert!(!is_ecs_task_id(
            "03752a671e744971a862edcee6195646-401510372a"
        ));
        assert_eq!(first_hex64(&format!("/x/{ID}z")), Some(ID));
        assert_eq!(first_hex64(&ID[1..]), None);
    }

    #[test]
    fn malformed_input_yields_nothing() {
        for input in [
            "", "\n\n", "garbage", "1:cpu", "0::/", "0::", "0::/a/b/", "::::::",
        ] {
            assert_eq!(
                parse(Some(input), Some(input)),
                ContainerInfo::default(),
                "{input:?}"
            );
        }
        assert_eq!(parse(None, None), ContainerInfo::default());
        assert_eq!(
            parse(None, Some("1 2 3:4 / /etc/hostname")),
            ContainerInfo::default()
        );
    }

    /// `detect` parses this process's own files: whatever this host is (container or not),
    /// its answer is theirs.
    #[test]
    fn detect_reads_this_process_cgroup_and_mountinfo() {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok();
        assert_eq!(detect(), parse(cgroup.as_deref(), mountinfo.as_deref()));
    }
}

/// The cross-agent fixture, every case. Needs serde_json (the `enable` feature).
#[cfg(all(test, feature = "enable"))]
mod tests {
    use super::*;

    const FIXTURE: &str = "agent-json-specs/container_metadata_discovery.json";

    #[test]
    fn container_metadata_discovery_fixture() {
        let Some(text) = crate::util::spec_fixture::read(FIXTURE) else {
            return;
        };
        let cases: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&text).expect("fixture is a JSON object");
        assert_eq!(
            cases.len(),
            6,
            "the fixture's case count changed: pin the new one"
        );
        let file = |case: &serde_json::Value, name: &str| -> Option<String> {
            let lines = case.get("files")?.get(name)?.as_array()?;
            let lines: Vec<&str> = lines
                .iter()
                .map(|l| l.as_str().expect("line is a string"))
                .collect();
            Some(lines.join("\n"))
        };
        let mut failures = Vec::new();
        for (name, case) in &cases {
            let got = parse(
                file(case, "/proc/self/cgroup").as_deref(),
                file(case, "/proc/self/mountinfo").as_deref(),
            );
            let want = ContainerInfo {
                container_id: case["containerId"].as_str().map(str::to_owned),
                pod_uid: case["podId"].as_str().map(str::to_owned),
            };
            if got != want {
                failures.push(format!("{name}: got {got:?}, want {want:?}"));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        eprintln!("container_metadata_discovery: {} cases passed", cases.len());
    }
}
