//! The agent spec's Gherkin features that concern the transport, run from the spec's files:
//! `user_agent.feature` and `api_key.feature`, every scenario and example row.

mod common;

use common::gherkin::{self, Scenario};
use common::{agent, spec_dir};

fn configure(builder: apm::ConfigBuilder, setting: &str, value: &str) -> apm::ConfigBuilder {
    match setting {
        "service_name" => builder.service_name(value),
        "service_version" => builder.service_version(value),
        "api_key" => builder.api_key(value),
        "secret_token" => builder.secret_token(value),
        other => panic!("setting {other:?} is not mapped to the agent's configuration"),
    }
}

fn run(scenario: &Scenario) {
    let settings: Vec<(String, String)> = scenario
        .steps
        .iter()
        .filter(|s| s.text.starts_with("an agent"))
        .flat_map(|s| s.table.iter().skip(1).map(|r| (r[0].clone(), r[1].clone())))
        .collect();
    let h = agent::start(|mut b| {
        for (k, v) in &settings {
            b = configure(b, k, v);
        }
        b
    });
    let mut sent = false;
    for step in &scenario.steps {
        let text = step.text.as_str();
        if text.starts_with("an agent") {
            continue;
        } else if text == "the agent sends a request to APM server" {
            drop(apm::start_transaction("gherkin", "custom"));
            h.flush();
            sent = true;
        } else if let Some(rest) = text.strip_prefix("the ") {
            assert!(sent, "{}: assertion before a request", scenario.name);
            let header = rest.split_whitespace().next().expect("a header name");
            let expected = gherkin::quoted(text).expect("a quoted value");
            let actual: Vec<String> = h.server.with_recorded(|r| {
                r.intake_requests()
                    .map(|q| q.header(header).unwrap_or_default().to_owned())
                    .collect()
            });
            assert!(!actual.is_empty());
            for value in actual {
                if text.contains("matches regex") {
                    let re = regex::Regex::new(expected).expect("a valid regex");
                    assert!(
                        re.is_match(&value),
                        "{}: {header} {value:?} !~ {expected:?}",
                        scenario.name
                    );
                } else if text.contains("header of the request is") {
                    assert_eq!(value, expected, "{}: {header}", scenario.name);
                } else {
                    panic!("{}: step not understood: {text}", scenario.name);
                }
            }
        } else {
            panic!("{}: step not understood: {text}", scenario.name);
        }
    }
    h.finish();
}

fn run_feature(file: &str) -> usize {
    let Some(dir) = spec_dir() else { return 0 };
    let text = std::fs::read_to_string(dir.join("gherkin-specs").join(file)).expect("feature file");
    let scenarios = gherkin::parse(&text);
    assert!(!scenarios.is_empty());
    for s in &scenarios {
        run(s);
    }
    scenarios.len()
}

#[test]
fn user_agent_feature() {
    let n = run_feature("user_agent.feature");
    assert!(n == 0 || n >= 5, "{n} scenarios");
}

#[test]
fn api_key_feature() {
    let n = run_feature("api_key.feature");
    assert!(n == 0 || n >= 3, "{n} scenarios");
}
