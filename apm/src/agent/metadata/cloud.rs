//! Cloud metadata (`metadata.cloud`) for the providers that can be recognised without asking
//! the network: Azure App Service and Azure Functions, from the environment variables their
//! platforms set, as the spec's `azure_app_service_metadata.feature` and
//! `azure_functions_metadata.feature` describe. AWS and GCP expose theirs only through
//! instance metadata endpoints, which this agent does not query.

use serde_json::{json, Map, Value};

use crate::config::CloudProvider;

/// `metadata.cloud` for `provider`, from the variables `var` looks up; `None` when not in a
/// recognised cloud.
pub(crate) fn detect(
    provider: CloudProvider,
    var: impl Fn(&str) -> Option<String>,
) -> Option<Value> {
    match provider {
        CloudProvider::Auto | CloudProvider::Azure => azure(&var),
        CloudProvider::Aws | CloudProvider::Gcp | CloudProvider::None => None,
    }
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

fn azure(var: &impl Fn(&str) -> Option<String>) -> Option<Value> {
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

    fn detect_with(provider: CloudProvider, vars: &[(&str, &str)]) -> Option<Value> {
        detect(provider, |name| {
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
    fn owner_names_split_into_account_group_and_region() {
        let o = owner("d2cd53b3+faas_group-CentralUSwebspace-Linux").expect("an owner");
        assert_eq!(
            (o.account_id, o.resource_group, o.region),
            ("d2cd53b3", "faas_group", "CentralUS")
        );
        assert!(owner("d2cd53b3-faas_group-CentralUSwebspace").is_none());
        assert!(owner("d2cd53b3+no-space").is_none());
    }
}
