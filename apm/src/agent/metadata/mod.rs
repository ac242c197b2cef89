//! The metadata line that opens every intake request: service, agent, process and system,
//! collected once when the agent starts.

use serde_json::{json, Map, Value};

pub(crate) mod cloud;
pub(crate) mod container;

use crate::export::http::identity::{AGENT_NAME, AGENT_VERSION};
use crate::util::text::{truncate, KEYWORD_LIMIT};
use crate::config::Config;
const RUSTC_VERSION: &str = env!("APM_RUSTC_VERSION");

fn kw(s: &str) -> Value {
    Value::String(truncate(s, KEYWORD_LIMIT).into_owned())
}

fn insert_opt(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), kw(v));
    }
}

/// The metadata object (without the `{"metadata": …}` wrapper).
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
    if let Some(cloud) = crate::agent::metadata::cloud::detect(config.cloud_provider, |k| std::env::var(k).ok()) {
        meta.insert("cloud".into(), cloud);
    }
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

fn detected_hostname() -> Option<String> {
    #[cfg(target_os = "linux")]
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim();
        if !h.is_empty() {
            return Some(h.to_owned());
        }
    }
    std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()
        .filter(|h| !h.is_empty())
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
        let pod_name = pod_name.or_else(|| pod_uid.as_ref().and(detected.clone()));
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
    fn a_pod_found_in_the_cgroup_is_named_after_the_hostname() {
        let found = container::ContainerInfo {
            container_id: Some("abc".into()),
            pod_uid: Some("90d81341-92de-11e7-8cf2-507b9d4141fa".into()),
        };
        let v = k8s(&found, &[]);
        assert_eq!(v["pod"]["uid"], "90d81341-92de-11e7-8cf2-507b9d4141fa");
        assert_eq!(v["pod"]["name"].as_str(), detected_hostname().as_deref());
        assert!(k8s(&container::ContainerInfo::default(), &[]).is_null());
    }
}
