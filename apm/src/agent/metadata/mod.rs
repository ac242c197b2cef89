//! The metadata line that opens every intake request: service, agent, process and system,
//! collected once when the agent starts.

use serde_json::{json, Map, Value};

pub(crate) mod cloud;
pub(crate) mod container;

use crate::config::{CloudProvider, Config};
use crate::export::http::identity::{AGENT_NAME, AGENT_VERSION};
use crate::util::text::{truncate, KEYWORD_LIMIT};
const RUSTC_VERSION: &str = env!("APM_RUSTC_VERSION");

fn kw(s: &str) -> Value {
    Value::String(truncate(s, KEYWORD_LIMIT).into_owned())
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), kw(v));
    }
}

/// `metadata` with `cloud` added when `provider` finds where this process runs. May ask the
/// network (the providers' metadata endpoints: a second in all under `auto`, three with one
/// provider named): called on the transport thread.
pub(crate) fn with_cloud(mut metadata: Value, provider: CloudProvider) -> Value {
    let endpoints = cloud::Endpoints::from_env(|k| std::env::var(k).ok());
    if let (Some(cloud), Some(meta)) = (
        cloud::detect(provider, &endpoints, |k| std::env::var(k).ok()),
        metadata.as_object_mut(),
    ) {
        meta.insert("cloud".into(), cloud);
    }
    metadata
}

/// The metadata object (without the `{"metadata": …}` wrapper), but for `cloud`
/// ([`with_cloud`]).
pub(crate) fn collect(config: &Config) -> Value {
    let mut service = Map::new();
    service.insert("name".into(), kw(&config.service_name));
    insert_opt(&mut service, "version", config.service_version.as_deref());
    insert_opt(&mut service, "environment", config.environment.as_deref());
    if let Some(node) = &config.service_node_name {
        service.insert("node".into(), json!({ "configured_name": kw(node) }));
    }
    service.insert(
        "agent".into(),
        json!({ "name": AGENT_NAME, "version": AGENT_VERSION }),
    );
    service.insert(
        "language".into(),
        json!({ "name": "Rust", "version": RUSTC_VERSION }),
    );
    service.insert(
        "runtime".into(),
        json!({ "name": "Rust", "version": RUSTC_VERSION }),
    );

    let mut meta = Map::new();
    meta.insert("service".into(), Value::Object(service));
    meta.insert("process".into(), process());
    meta.insert(
        "system".into(),
        system(config, &container::detect(), &|k| std::env::var(k).ok()),
    );
    if !config.global_labels.is_empty() {
        let labels: Map<String, Value> = config
            .global_labels
            .iter()
            .map(|(k, v)| (crate::export::encode::label_key(k).into_owned(), kw(v)))
            .collect();
        meta.insert("labels".into(), Value::Object(labels));
    }
    Value::Object(meta)
}

fn process() -> Value {
    let argv: Vec<Value> = std::env::args_os()
        .map(|a| kw(&a.to_string_lossy()))
        .collect();
    let title = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let mut p = json!({
        "pid": std::process::id(),
        "title": kw(&title),
        "argv": argv,
    });
    #[cfg(unix)]
    {
        p["ppid"] = json!(std::os::unix::process::parent_id());
    }
    p
}

/// The host's name as its kernel knows it (`uname -n`), else `HOSTNAME`, `HOST` or
/// `COMPUTERNAME`; trimmed as the metadata spec says, case kept.
fn host_name() -> Option<String> {
    #[cfg(target_os = "linux")]
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = spec_trim(&h);
        if !h.is_empty() {
            return Some(h.to_owned());
        }
    }
    ["HOSTNAME", "HOST", "COMPUTERNAME"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|h| spec_trim(&h).to_owned())
        .find(|h| !h.is_empty())
}

/// `system.detected_hostname`: the lower-cased FQDN of the host (specs/agents/metadata.md).
///
/// The FQDN is what `hostname -f` finds without asking DNS: the host name itself when it has
/// a domain, else the canonical name `/etc/hosts` gives it. No resolver is called: a DNS
/// query could hold `init` for the resolver's timeout on a host whose DNS is slow or absent.
fn detected_hostname() -> Option<String> {
    let name = host_name()?;
    let hosts = if name.contains('.') {
        None
    } else {
        std::fs::read_to_string("/etc/hosts").ok()
    };
    Some(fqdn(&name, hosts.as_deref()))
}

/// The lower-cased FQDN of `name`: the canonical name of the first line of `hosts` (the text
/// of `/etc/hosts`) that lists `name` as an alias of `name` with a domain; else `name`.
fn fqdn(name: &str, hosts: Option<&str>) -> String {
    let name = spec_trim(name);
    let from_hosts = hosts.into_iter().flat_map(str::lines).find_map(|line| {
        let line = line.split('#').next().unwrap_or_default();
        let mut names = line.split_whitespace().skip(1);
        let canonical = names.next()?;
        let (first_label, domain) = canonical.split_once('.')?;
        (first_label.eq_ignore_ascii_case(name)
            && !domain.is_empty()
            && names.any(|alias| alias.eq_ignore_ascii_case(name)))
        .then_some(canonical)
    });
    from_hosts.unwrap_or(name).to_lowercase()
}

/// Trims leading and trailing characters at or below U+0020, as the metadata spec says.
fn spec_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// The `system` object; Kubernetes fields as the metadata spec describes them: from the
/// `KUBERNETES_*` variables, the pod uid from the cgroup, the pod name defaulting to the
/// hostname when a pod was detected.
pub(crate) fn system(
    config: &Config,
    found: &container::ContainerInfo,
    env: &dyn Fn(&str) -> Option<String>,
) -> Value {
    let mut sys = Map::new();
    let detected = detected_hostname();
    if let Some(h) = &detected {
        sys.insert("detected_hostname".into(), kw(h));
    }
    insert_opt(&mut sys, "configured_hostname", config.hostname.as_deref());
    sys.insert("architecture".into(), kw(std::env::consts::ARCH));
    sys.insert("platform".into(), kw(std::env::consts::OS));
    if let Some(id) = &found.container_id {
        sys.insert("container".into(), json!({ "id": kw(id) }));
    }
    let namespace = env("KUBERNETES_NAMESPACE");
    let node = env("KUBERNETES_NODE_NAME");
    let pod_name = env("KUBERNETES_POD_NAME");
    let pod_uid = env("KUBERNETES_POD_UID").or_else(|| found.pod_uid.clone());
    if namespace.is_some() || node.is_some() || pod_name.is_some() || pod_uid.is_some() {
        let mut k8s = Map::new();
        insert_opt(&mut k8s, "namespace", namespace.as_deref());
        if let Some(n) = &node {
            k8s.insert("node".into(), json!({ "name": kw(n) }));
        }
        let mut pod = Map::new();
        // Kubernetes names the host after the pod: the host name, not its FQDN.
        let pod_name = pod_name.or_else(|| pod_uid.as_ref().and_then(|_| host_name()));
        insert_opt(&mut pod, "name", pod_name.as_deref());
        insert_opt(&mut pod, "uid", pod_uid.as_deref());
        if !pod.is_empty() {
            k8s.insert("pod".into(), Value::Object(pod));
        }
        sys.insert("kubernetes".into(), Value::Object(k8s));
    }
    Value::Object(sys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k8s(found: &container::ContainerInfo, vars: &[(&str, &str)]) -> Value {
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        };
        system(&Config::default(), found, &env)["kubernetes"].clone()
    }

    #[test]
    fn kubernetes_fields_come_from_the_environment_first() {
        let v = k8s(
            &container::ContainerInfo::default(),
            &[
                ("KUBERNETES_NAMESPACE", "shop"),
                ("KUBERNETES_NODE_NAME", "node-1"),
                ("KUBERNETES_POD_NAME", "api-7f9"),
                ("KUBERNETES_POD_UID", "e9b90526-f47d-11e8-b2a5-080027b9f4fb"),
            ],
        );
        assert_eq!(v["namespace"], "shop");
        assert_eq!(v["node"]["name"], "node-1");
        assert_eq!(v["pod"]["name"], "api-7f9");
        assert_eq!(v["pod"]["uid"], "e9b90526-f47d-11e8-b2a5-080027b9f4fb");
    }

    #[test]
    fn the_detected_hostname_is_the_lower_cased_fqdn() {
        let hosts = "# static names\n\
                     127.0.0.1 localhost.localdomain localhost Web-01\n\
                     ::1 ip6-localhost ip6-loopback\n\
                     10.0.0.7 Web-01.Example.COM web-01 # the office\n\
                     10.0.0.8 web-01.other.org web-01\n";
        assert_eq!(fqdn("Web-01", Some(hosts)), "web-01.example.com");
        assert_eq!(fqdn(" Web-01\n", Some(hosts)), "web-01.example.com");
        assert_eq!(fqdn("WEB-01", None), "web-01");
        assert_eq!(fqdn("Db.Example.com\t", None), "db.example.com");
        // Listed only with a canonical name that is not this host with a domain.
        assert_eq!(
            fqdn("web-02", Some("127.0.0.1 localhost.localdomain web-02")),
            "web-02"
        );
        assert_eq!(
            fqdn("web-02", Some("10.0.0.9 web-02.\n10.0.0.9 web-02")),
            "web-02"
        );
    }

    #[test]
    fn configured_and_detected_hostnames_are_both_sent() {
        let none = container::ContainerInfo::default();
        let no_env = |_: &str| None;
        let sys = system(&Config::default(), &none, &no_env);
        let detected = detected_hostname().expect("this host has a name");
        assert_eq!(detected, detected.to_lowercase());
        assert_eq!(sys["detected_hostname"], detected.as_str());
        assert!(sys.get("configured_hostname").is_none(), "{sys}");
        assert!(sys.get("hostname").is_none(), "{sys}");
        let configured = Config::builder().hostname("My-Host.example").build();
        let sys = system(&configured, &none, &no_env);
        assert_eq!(sys["configured_hostname"], "My-Host.example");
        assert_eq!(sys["detected_hostname"], detected.as_str());
    }

    #[test]
    fn a_pod_found_in_the_cgroup_is_named_after_the_hostname() {
        let found = container::ContainerInfo {
            container_id: Some("abc".into()),
            pod_uid: Some("90d81341-92de-11e7-8cf2-507b9d4141fa".into()),
        };
        let v = k8s(&found, &[]);
        assert_eq!(v["pod"]["uid"], "90d81341-92de-11e7-8cf2-507b9d4141fa");
        assert_eq!(v["pod"]["name"].as_str(), host_name().as_deref());
        assert!(k8s(&container::ContainerInfo::default(), &[]).is_null());
    }
}
