//! The metadata line that opens every request carries the configured service, the agent,
//! the process and the system.

mod common;

use common::agent;

#[test]
fn metadata_describes_service_agent_process_and_system() {
    let h = agent::start(|c| {
        c.service_version("2.0.1")
            .environment("staging")
            .service_node_name("node-a")
            .hostname("configured-host")
            .global_label("region", "eu-west")
            .global_label("tier", "gold")
    });
    drop(apm::start_transaction("m", "custom"));
    h.flush();
    let metadata = h.server.metadata();
    assert!(!metadata.is_empty());
    let m = &metadata[0];
    let service = &m["service"];
    assert_eq!(service["name"], "apm-tests");
    assert_eq!(service["version"], "2.0.1");
    assert_eq!(service["environment"], "staging");
    assert_eq!(service["node"]["configured_name"], "node-a");
    assert_eq!(service["agent"]["name"], "rust");
    assert_eq!(service["agent"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(service["language"]["name"], "Rust");
    assert!(service["runtime"]["version"]
        .as_str()
        .is_some_and(|v| v.starts_with("1.")));
    assert_eq!(m["process"]["pid"], std::process::id());
    assert!(m["process"]["argv"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let system = &m["system"];
    assert_eq!(system["configured_hostname"], "configured-host");
    assert!(system["detected_hostname"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert_eq!(system["architecture"], std::env::consts::ARCH);
    assert_eq!(system["platform"], std::env::consts::OS);
    assert_eq!(m["labels"]["region"], "eu-west");
    assert_eq!(m["labels"]["tier"], "gold");
    h.finish();
}
