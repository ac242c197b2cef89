//! Cloud metadata (`metadata.cloud`), as the metadata spec's "Cloud Provider Metadata" says:
//!
//! - Azure App Service and Azure Functions, from the environment variables their platforms set
//!   (the spec's `azure_app_service_metadata.feature` and `azure_functions_metadata.feature`);
//! - AWS EC2: an IMDSv2 token (`PUT /latest/api/token`), then the instance identity document
//!   (`GET /latest/dynamic/instance-identity/document`);
//! - Google Cloud: `GET /computeMetadata/v1/?recursive=true` of `metadata.google.internal`,
//!   with `Metadata-Flavor: Google`;
//! - Azure virtual machines: `GET /metadata/instance/compute?api-version=2019-08-15` of the
//!   instance metadata service, with `Metadata: true`.
//!
//! Asked once, on the transport thread, before the first request: each request is bounded
//! (the name's resolution included), and under `auto` (where most machines are in no cloud at
//! all) the whole search shares one short budget. An endpoint that does not answer, answers an error or something else than the
//! provider's document gives no cloud metadata, nothing more.

use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::config::CloudProvider;
use crate::export::http::client::{Client, Request, TlsOptions};
use crate::util::text::{truncate, KEYWORD_LIMIT};

/// For tests only: a base URL (`http://127.0.0.1:PORT`) that replaces the three providers'
/// metadata addresses, so that a local stand-in answers in their place.
pub(crate) const TEST_URL_VAR: &str = "APM_TEST_CLOUD_METADATA_URL";

/// Under `auto`: the most each request may take, and the whole search.
const AUTO_REQUEST: Duration = Duration::from_millis(300);
const AUTO_TOTAL: Duration = Duration::from_secs(1);
/// With one provider named: the most each request may take, and the whole search.
const NAMED_REQUEST: Duration = Duration::from_secs(1);
const NAMED_TOTAL: Duration = Duration::from_secs(3);

/// The base URLs of the providers' metadata endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoints {
    aws: String,
    gcp: String,
    azure: String,
}

impl Endpoints {
    /// The providers' own addresses, or the test stand-in's ([`TEST_URL_VAR`]).
    pub(crate) fn from_env(var: impl Fn(&str) -> Option<String>) -> Endpoints {
        match var(TEST_URL_VAR).filter(|v| !v.is_empty()) {
            Some(base) => Endpoints {
                aws: base.clone(),
                gcp: base.clone(),
                azure: base,
            },
            None => Endpoints {
                aws: "http://169.254.169.254".into(),
                gcp: "http://metadata.google.internal".into(),
                azure: "http://169.254.169.254".into(),
            },
        }
    }
}

/// `metadata.cloud` for `provider`, from the variables `var` looks up and the endpoints;
/// `None` when not in a recognised cloud.
pub(crate) fn detect(
    provider: CloudProvider,
    endpoints: &Endpoints,
    var: impl Fn(&str) -> Option<String>,
) -> Option<Value> {
    let budget = match provider {
        CloudProvider::None => return None,
        CloudProvider::Auto => Budget::new(AUTO_REQUEST, AUTO_TOTAL),
        _ => Budget::new(NAMED_REQUEST, NAMED_TOTAL),
    };
    match provider {
        CloudProvider::Auto => azure_platform(&var)
            .or_else(|| aws(&endpoints.aws, &budget))
            .or_else(|| gcp(&endpoints.gcp, &budget))
            .or_else(|| azure_vm(&endpoints.azure, &budget)),
        CloudProvider::Azure => {
            azure_platform(&var).or_else(|| azure_vm(&endpoints.azure, &budget))
        }
        CloudProvider::Aws => aws(&endpoints.aws, &budget),
        CloudProvider::Gcp => gcp(&endpoints.gcp, &budget),
        CloudProvider::None => None,
    }
}

/// Time for the requests of one search.
struct Budget {
    per_request: Duration,
    until: Instant,
}

impl Budget {
    fn new(per_request: Duration, total: Duration) -> Budget {
        Budget {
            per_request,
            until: Instant::now() + total,
        }
    }

    /// The timeout of the next request; `None` when the budget is spent.
    fn next(&self) -> Option<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| left.min(self.per_request))
    }
}

/// What a metadata endpoint's request came to.
enum Answer {
    /// A 2xx answer's body.
    Body(Vec<u8>),
    /// An answer of another status.
    Refused,
    /// No answer (nothing listens, a timeout, not HTTP) or no budget left.
    Nothing,
}

/// One request to the metadata endpoint at `base`, never through a proxy (the addresses are
/// the machine's own, link-local).
fn ask(
    base: &str,
    method: &'static str,
    path: &str,
    headers: &[(&str, &str)],
    budget: &Budget,
) -> Answer {
    let Ok(client) = Client::with_env(base, &TlsOptions::default(), |_| None) else {
        return Answer::Nothing;
    };
    // A name (`metadata.google.internal`) is resolved within the budget too.
    let resolved = budget.next().is_some_and(|t| client.resolve_within(t));
    let Some(timeout) = budget.next().filter(|_| resolved) else {
        return Answer::Nothing;
    };
    let request = Request {
        method,
        path,
        headers,
        body: &[],
        timeout,
    };
    match client.send_while(&request, None) {
        Ok(answer) if answer.is_success() => Answer::Body(answer.body),
        Ok(_) => Answer::Refused,
        Err(_) => Answer::Nothing,
    }
}

/// A 2xx answer's body as JSON.
fn ask_json(base: &str, path: &str, headers: &[(&str, &str)], budget: &Budget) -> Option<Value> {
    match ask(base, "GET", path, headers, budget) {
        Answer::Body(body) => serde_json::from_slice(&body).ok(),
        Answer::Refused | Answer::Nothing => None,
    }
}

/// AWS EC2, through IMDSv2: a session token first; an endpoint that refuses to give one
/// (IMDSv1 only) is asked without.
fn aws(base: &str, budget: &Budget) -> Option<Value> {
    let token = match ask(
        base,
        "PUT",
        "/latest/api/token",
        &[("X-aws-ec2-metadata-token-ttl-seconds", "300")],
        budget,
    ) {
        Answer::Body(token) => Some(String::from_utf8(token).ok()?.trim().to_owned()),
        Answer::Refused => None,
        Answer::Nothing => return None,
    };
    let headers: Vec<(&str, &str)> = token
        .iter()
        .map(|t| ("X-aws-ec2-metadata-token", t.as_str()))
        .collect();
    let document = ask_json(
        base,
        "/latest/dynamic/instance-identity/document",
        &headers,
        budget,
    )?;
    from_aws(&document)
}

fn gcp(base: &str, budget: &Budget) -> Option<Value> {
    let metadata = ask_json(
        base,
        "/computeMetadata/v1/?recursive=true",
        &[("Metadata-Flavor", "Google")],
        budget,
    )?;
    from_gcp(&metadata)
}

fn azure_vm(base: &str, budget: &Budget) -> Option<Value> {
    let compute = ask_json(
        base,
        "/metadata/instance/compute?api-version=2019-08-15",
        &[("Metadata", "true")],
        budget,
    )?;
    from_azure_vm(&compute)
}

/// A keyword of the cloud object: a non-empty string, cut to the schema's 1024 characters.
fn keyword(value: &Value) -> Option<Value> {
    let text = value.as_str()?.trim();
    (!text.is_empty()).then(|| Value::String(truncate(text, KEYWORD_LIMIT).into_owned()))
}

/// An id that may come as a whole number (GCP's instance id) or a string.
fn id(value: &Value) -> Option<Value> {
    match value.as_u64() {
        Some(n) => Some(Value::String(n.to_string())),
        None => keyword(value),
    }
}

/// Builds the cloud object: `fields` are `(path, value)` with paths like `account.id`; absent
/// or empty values are left out.
fn cloud(provider: &str, fields: &[(&str, Option<Value>)]) -> Value {
    let mut out = Map::new();
    out.insert("provider".into(), json!(provider));
    for (path, value) in fields {
        let Some(value) = value else { continue };
        match path.split_once('.') {
            Some((object, key)) => {
                if let Value::Object(inner) = out
                    .entry(object.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    inner.insert(key.to_owned(), value.clone());
                }
            }
            None => {
                out.insert((*path).to_owned(), value.clone());
            }
        }
    }
    Value::Object(out)
}

/// The instance identity document's fields, as the spec maps them; `None` for anything but
/// an EC2 document (which always names its instance).
fn from_aws(document: &Value) -> Option<Value> {
    let field = |name: &str| document.get(name).and_then(keyword);
    let instance_id = field("instanceId")?;
    Some(cloud(
        "aws",
        &[
            ("account.id", field("accountId")),
            ("instance.id", Some(instance_id)),
            ("availability_zone", field("availabilityZone")),
            ("machine.type", field("instanceType")),
            ("region", field("region")),
        ],
    ))
}

/// The last segment of a GCP resource path (`projects/513326162531/zones/us-west1-b`).
fn last_segment(value: &Value) -> Option<Value> {
    let path = value.as_str()?;
    keyword(&json!(path.rsplit('/').next().unwrap_or(path)))
}

/// The metadata server's answer, as the spec maps it (and the current Python agent): the
/// project's id is its `projectId` (its number is not sent), the zone and machine type are the
/// last segments of their paths, the region is the zone without its last `-` part.
fn from_gcp(metadata: &Value) -> Option<Value> {
    let instance = metadata.get("instance")?;
    let instance_id = instance.get("id").and_then(id)?;
    let zone = instance.get("zone").and_then(last_segment);
    let region = zone
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|z| z.rsplit_once('-'))
        .and_then(|(region, _)| keyword(&json!(region)));
    Some(cloud(
        "gcp",
        &[
            ("instance.id", Some(instance_id)),
            ("instance.name", instance.get("name").and_then(keyword)),
            (
                "project.id",
                metadata.pointer("/project/projectId").and_then(keyword),
            ),
            ("availability_zone", zone),
            ("region", region),
            (
                "machine.type",
                instance.get("machineType").and_then(last_segment),
            ),
        ],
    ))
}

/// The instance metadata service's `compute` object, as the spec maps it.
fn from_azure_vm(compute: &Value) -> Option<Value> {
    let field = |name: &str| compute.get(name).and_then(keyword);
    let vm_id = field("vmId")?;
    Some(cloud(
        "azure",
        &[
            ("account.id", field("subscriptionId")),
            ("instance.id", Some(vm_id)),
            ("instance.name", field("name")),
            ("project.name", field("resourceGroupName")),
            ("availability_zone", field("zone")),
            ("machine.type", field("vmSize")),
            ("region", field("location")),
        ],
    ))
}

/// `WEBSITE_OWNER_NAME` is `<subscription id>+<resource group>-<region>webspace[-Linux]`.
struct Owner<'a> {
    account_id: &'a str,
    resource_group: &'a str,
    region: &'a str,
}

fn owner(value: &str) -> Option<Owner<'_>> {
    let (account_id, rest) = value.split_once('+')?;
    let webspace = rest.rfind("webspace")?;
    let (resource_group, region) = match rest[..webspace].rsplit_once('-') {
        Some((group, region)) => (group, region),
        None => ("", &rest[..webspace]),
    };
    Some(Owner {
        account_id,
        resource_group,
        region,
    })
}

/// Azure App Service and Azure Functions, from their environment variables.
fn azure_platform(var: &impl Fn(&str) -> Option<String>) -> Option<Value> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let owner_name = set("WEBSITE_OWNER_NAME")?;
    let owner = owner(&owner_name)?;
    let site = set("WEBSITE_SITE_NAME")?;
    let mut cloud = Map::new();
    cloud.insert("provider".into(), json!("azure"));
    cloud.insert("account".into(), json!({ "id": owner.account_id }));
    cloud.insert("instance".into(), json!({ "name": site }));
    if set("FUNCTIONS_EXTENSION_VERSION").is_some() {
        // Azure Functions.
        let group = set("WEBSITE_RESOURCE_GROUP").unwrap_or_else(|| owner.resource_group.into());
        let region = set("REGION_NAME").unwrap_or_else(|| owner.region.into());
        cloud.insert("service".into(), json!({ "name": "functions" }));
        if !group.is_empty() {
            cloud.insert("project".into(), json!({ "name": group }));
        }
        cloud.insert("region".into(), json!(region));
    } else {
        // Azure App Service: all four variables, or it is not one.
        let group = set("WEBSITE_RESOURCE_GROUP")?;
        let instance_id = set("WEBSITE_INSTANCE_ID")?;
        cloud.insert(
            "instance".into(),
            json!({ "id": instance_id, "name": site }),
        );
        cloud.insert("project".into(), json!({ "name": group }));
        cloud.insert("region".into(), json!(owner.region));
    }
    Some(Value::Object(cloud))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Endpoints where connections are refused at once (port 9 of the loopback).
    fn nowhere() -> Endpoints {
        Endpoints::from_env(|_| Some("http://127.0.0.1:9".into()))
    }

    fn detect_with(provider: CloudProvider, vars: &[(&str, &str)]) -> Option<Value> {
        detect(provider, &nowhere(), |name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    const APP_SERVICE: [(&str, &str); 4] = [
        (
            "WEBSITE_OWNER_NAME",
            "f5940f10-2e30-3e4d-a259-63451ba6dae4+elastic-apm-AustraliaEastwebspace",
        ),
        ("WEBSITE_RESOURCE_GROUP", "resource_group"),
        ("WEBSITE_SITE_NAME", "site_name"),
        ("WEBSITE_INSTANCE_ID", "instance_id"),
    ];

    #[test]
    fn the_provider_setting_decides_where_to_look() {
        assert!(detect_with(CloudProvider::Auto, &APP_SERVICE).is_some());
        assert!(detect_with(CloudProvider::Azure, &APP_SERVICE).is_some());
        for elsewhere in [CloudProvider::Aws, CloudProvider::Gcp, CloudProvider::None] {
            assert_eq!(detect_with(elsewhere, &APP_SERVICE), None, "{elsewhere}");
        }
        assert_eq!(detect_with(CloudProvider::Auto, &[]), None);
    }

    #[test]
    fn the_default_endpoints_are_the_providers_and_a_test_url_replaces_them() {
        let real = Endpoints::from_env(|_| None);
        assert_eq!(real.aws, "http://169.254.169.254");
        assert_eq!(real.gcp, "http://metadata.google.internal");
        assert_eq!(real.azure, "http://169.254.169.254");
        assert_eq!(Endpoints::from_env(|_| Some(String::new())), real);
        assert_eq!(nowhere().gcp, "http://127.0.0.1:9");
    }

    #[test]
    fn owner_names_split_into_account_group_and_region() {
        let o = owner("d2cd53b3+faas_group-CentralUSwebspace-Linux").expect("an owner");
        assert_eq!(
            (o.account_id, o.resource_group, o.region),
            ("d2cd53b3", "faas_group", "CentralUS")
        );
        assert!(owner("d2cd53b3-faas_group-CentralUSwebspace").is_none());
        assert!(owner("d2cd53b3+no-space").is_none());
    }

    // The mapping of each provider's document is tested through its endpoint, answered by a
    // stand-in: tests/tests/cloud_endpoints.rs.

    #[test]
    fn documents_of_another_shape_give_no_cloud() {
        for garbage in [
            json!(null),
            json!("i-0ae894a7c1c4f2a75"),
            json!([1, 2]),
            json!({ "instance": "x" }),
            json!({ "instanceId": {} }),
            json!({ "vmId": "" }),
            json!({ "vmId": 7.5e300, "instanceId": ["i-1"] }),
        ] {
            assert_eq!(from_aws(&garbage), None, "{garbage}");
            assert_eq!(from_gcp(&garbage), None, "{garbage}");
            assert_eq!(from_azure_vm(&garbage), None, "{garbage}");
        }
    }

    #[test]
    fn a_budget_bounds_each_request_and_the_whole_search() {
        let budget = Budget::new(Duration::from_millis(300), Duration::from_secs(1));
        assert_eq!(budget.next(), Some(Duration::from_millis(300)));
        let spent = Budget::new(Duration::from_millis(300), Duration::ZERO);
        assert_eq!(spent.next(), None);
        assert!(matches!(
            ask("http://127.0.0.1:9", "GET", "/", &[], &spent),
            Answer::Nothing
        ));
    }

    #[test]
    fn a_name_that_does_not_resolve_is_nothing_within_the_budget() {
        let budget = Budget::new(Duration::from_millis(300), Duration::from_secs(1));
        let started = Instant::now();
        // `.invalid` never resolves (RFC 6761).
        assert!(matches!(
            ask("http://metadata.invalid", "GET", "/", &[], &budget),
            Answer::Nothing
        ));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn nothing_answering_costs_no_time_under_auto() {
        let started = Instant::now();
        assert_eq!(detect(CloudProvider::Auto, &nowhere(), |_| None), None);
        // Refused at once: no request waited for its timeout.
        assert!(started.elapsed() < AUTO_REQUEST, "{:?}", started.elapsed());
    }
}
