//! The agent spec's cloud metadata features, run from the spec's files:
//! `azure_app_service_metadata.feature` and `azure_functions_metadata.feature`, every
//! scenario and example row. "Cloud metadata is collected" starts the agent with the
//! scenario's environment and reads the metadata it sends to the mock APM Server.
//!
//! One test in its own binary: it sets environment variables, which no other thread of the
//! process may read meanwhile.

mod common;

use common::gherkin::{self, Scenario};
use common::{agent, spec_dir};
use serde_json::Value;

/// Every variable the features set, cleared before each scenario.
const AZURE_VARIABLES: [&str; 7] = [
    "WEBSITE_OWNER_NAME",
    "WEBSITE_RESOURCE_GROUP",
    "WEBSITE_SITE_NAME",
    "WEBSITE_INSTANCE_ID",
    "FUNCTIONS_EXTENSION_VERSION",
    "REGION_NAME",
    "FUNCTIONS_WORKER_RUNTIME",
];

fn provider(value: &str) -> apm::config::CloudProvider {
    use apm::config::CloudProvider;
    match value {
        "auto" => CloudProvider::Auto,
        "azure" => CloudProvider::Azure,
        "aws" => CloudProvider::Aws,
        "gcp" => CloudProvider::Gcp,
        "none" => CloudProvider::None,
        other => panic!("cloud_provider {other:?} is not one of the agent's"),
    }
}

/// `metadata.cloud` of the metadata the agent sent, `Null` when it sent none.
fn collect(settings: &[(String, String)]) -> Value {
    let h = agent::start(|mut b| {
        for (setting, value) in settings {
            b = match setting.as_str() {
                "cloud_provider" => b.cloud_provider(provider(value)),
                other => panic!("setting {other:?} is not mapped to the agent's configuration"),
            };
        }
        b
    });
    drop(apm::start_transaction("cloud", "custom"));
    h.flush();
    let metadata = h.server.metadata();
    h.finish();
    let first = metadata.first().expect("a metadata line");
    first.get("cloud").cloned().unwrap_or(Value::Null)
}

fn run(scenario: &Scenario) {
    for name in AZURE_VARIABLES {
        std::env::remove_var(name);
    }
    let mut settings = Vec::new();
    let mut cloud: Option<Value> = None;
    for step in &scenario.steps {
        let text = step.text.as_str();
        let rows = || {
            step.table
                .iter()
                .skip(1)
                .map(|r| (r[0].clone(), r[1].clone()))
        };
        if text == "an agent configured with" {
            settings.extend(rows());
        } else if text == "the following environment variables are present" {
            for (name, value) in rows() {
                assert!(
                    AZURE_VARIABLES.contains(&name.as_str()),
                    "{name}: add it to the list"
                );
                // Changing the environment races with threads reading it: this binary's only
                // test runs alone, and no agent runs while the variables change.
                std::env::set_var(name, value);
            }
        } else if text == "cloud metadata is collected" {
            cloud = Some(collect(&settings));
        } else {
            let got = cloud
                .as_ref()
                .unwrap_or_else(|| panic!("{}: {text} before collecting", scenario.name));
            if text == "cloud metadata is null" {
                assert_eq!(got, &Value::Null, "{}", scenario.name);
            } else if text == "cloud metadata is not null" {
                assert!(got.is_object(), "{}: {got}", scenario.name);
            } else if let Some(rest) = text.strip_prefix("cloud metadata '") {
                let (path, _) = rest.split_once('\'').expect("a quoted path");
                let expected = text.rsplit('\'').nth(1).expect("a quoted value");
                let value = path.split('.').fold(got, |v, key| &v[key]);
                assert_eq!(
                    value.as_str(),
                    Some(expected),
                    "{}: {path} in {got}",
                    scenario.name
                );
            } else {
                panic!("{}: step not understood: {text}", scenario.name);
            }
        }
    }
    for name in AZURE_VARIABLES {
        std::env::remove_var(name);
    }
}

#[test]
fn azure_cloud_metadata_features() {
    let Some(dir) = spec_dir() else { return };
    // The metadata endpoints refuse connections: the scenarios are about the environment
    // alone, whatever machine (a cloud's, say) runs them.
    let refused = format!("http://{}", common::refused_addr());
    std::env::set_var("APM_TEST_CLOUD_METADATA_URL", refused);
    let mut scenarios = 0;
    for file in [
        "azure_app_service_metadata.feature",
        "azure_functions_metadata.feature",
    ] {
        let text =
            std::fs::read_to_string(dir.join("gherkin-specs").join(file)).expect("feature file");
        let parsed = gherkin::parse(&text);
        assert!(!parsed.is_empty(), "{file}");
        for scenario in &parsed {
            run(scenario);
        }
        scenarios += parsed.len();
    }
    // 2 + 5 scenarios (outline rows counted) in the app service feature, 2 + 4 in functions'.
    assert_eq!(scenarios, 13, "scenarios run");
}
