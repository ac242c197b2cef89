//! The Elastic span type registry (`span_types.json` of the agent spec, elastic/apm
//! `tests/agents/json-specs/`): the types a span may have and, for each, its subtypes.
//! `#[apm::span(kind, subtype)]` is checked against it at compile time.
//!
//! Kept in sync by a test (`tests::the_registry_equals_the_spec_file` below) that reads the
//! spec file where it is found (`../shared/spec` beside the workspace, or `$APM_SPEC_DIR`) and
//! fails under `CI=true` when it is missing: when the spec changes, the test names what to
//! change here.

/// One span type.
pub(crate) struct SpanType {
    pub(crate) name: &'static str,
    /// A span of this type may have no subtype.
    pub(crate) allow_null_subtype: bool,
    /// A subtype not listed is accepted.
    pub(crate) allow_unlisted_subtype: bool,
    pub(crate) subtypes: &'static [Subtype],
}

/// One subtype of a span type.
pub(crate) struct Subtype {
    pub(crate) name: &'static str,
    /// Deprecated: the subtype to use instead.
    pub(crate) replaced_by: Option<&'static str>,
}

pub(crate) const SPAN_TYPES: &[SpanType] = &[
    SpanType {
        name: "app",
        allow_null_subtype: true,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "inferred",
                replaced_by: None,
            },
            Subtype {
                name: "internal",
                replaced_by: None,
            },
            Subtype {
                name: "controller",
                replaced_by: None,
            },
            Subtype {
                name: "graphql",
                replaced_by: None,
            },
            Subtype {
                name: "mailer",
                replaced_by: None,
            },
            Subtype {
                name: "resource",
                replaced_by: None,
            },
            Subtype {
                name: "handler",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "custom",
        allow_null_subtype: true,
        allow_unlisted_subtype: false,
        subtypes: &[],
    },
    SpanType {
        name: "db",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "cassandra",
                replaced_by: None,
            },
            Subtype {
                name: "cosmosdb",
                replaced_by: None,
            },
            Subtype {
                name: "db2",
                replaced_by: None,
            },
            Subtype {
                name: "derby",
                replaced_by: None,
            },
            Subtype {
                name: "dynamodb",
                replaced_by: None,
            },
            Subtype {
                name: "elasticsearch",
                replaced_by: None,
            },
            Subtype {
                name: "graphql",
                replaced_by: None,
            },
            Subtype {
                name: "h2",
                replaced_by: None,
            },
            Subtype {
                name: "hsqldb",
                replaced_by: None,
            },
            Subtype {
                name: "ingres",
                replaced_by: None,
            },
            Subtype {
                name: "mariadb",
                replaced_by: None,
            },
            Subtype {
                name: "memcached",
                replaced_by: None,
            },
            Subtype {
                name: "mongodb",
                replaced_by: None,
            },
            Subtype {
                name: "mssql",
                replaced_by: None,
            },
            Subtype {
                name: "mysql",
                replaced_by: None,
            },
            Subtype {
                name: "oracle",
                replaced_by: None,
            },
            Subtype {
                name: "postgresql",
                replaced_by: None,
            },
            Subtype {
                name: "redis",
                replaced_by: None,
            },
            Subtype {
                name: "sqlite",
                replaced_by: None,
            },
            Subtype {
                name: "sqlite3",
                replaced_by: Some("sqlite"),
            },
            Subtype {
                name: "sqlserver",
                replaced_by: Some("mssql"),
            },
            Subtype {
                name: "unknown",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "external",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "dubbo",
                replaced_by: None,
            },
            Subtype {
                name: "grpc",
                replaced_by: None,
            },
            Subtype {
                name: "http",
                replaced_by: None,
            },
            Subtype {
                name: "ldap",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "json",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "parse",
                replaced_by: None,
            },
            Subtype {
                name: "generate",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "messaging",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "azurequeue",
                replaced_by: None,
            },
            Subtype {
                name: "azureservicebus",
                replaced_by: None,
            },
            Subtype {
                name: "jms",
                replaced_by: None,
            },
            Subtype {
                name: "kafka",
                replaced_by: None,
            },
            Subtype {
                name: "rabbitmq",
                replaced_by: None,
            },
            Subtype {
                name: "sns",
                replaced_by: None,
            },
            Subtype {
                name: "sqs",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "process",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[],
    },
    SpanType {
        name: "storage",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[
            Subtype {
                name: "azureblob",
                replaced_by: None,
            },
            Subtype {
                name: "azurefile",
                replaced_by: None,
            },
            Subtype {
                name: "azuretable",
                replaced_by: None,
            },
            Subtype {
                name: "s3",
                replaced_by: None,
            },
        ],
    },
    SpanType {
        name: "template",
        allow_null_subtype: false,
        allow_unlisted_subtype: true,
        subtypes: &[],
    },
    SpanType {
        name: "websocket",
        allow_null_subtype: false,
        allow_unlisted_subtype: false,
        subtypes: &[Subtype {
            name: "send",
            replaced_by: None,
        }],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec file, from `$APM_SPEC_DIR` or `../shared/spec` beside the workspace; `None`
    /// (and the test says it skips) when absent, a failure under `CI=true`.
    fn spec_file() -> Option<String> {
        let dir = std::env::var_os("APM_SPEC_DIR").map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec"),
            std::path::PathBuf::from,
        );
        let path = dir.join("agent-json-specs/span_types.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("{} ({e}) and CI=true", path.display())
            }
            Err(e) => {
                eprintln!("skipped: {} not found ({e})", path.display());
                None
            }
        }
    }

    #[test]
    fn the_registry_equals_the_spec_file() {
        let Some(text) = spec_file() else {
            return;
        };
        let spec: serde_json::Value = serde_json::from_str(&text).expect("span_types.json");
        let spec = spec.as_object().expect("an object");
        let flag =
            |v: &serde_json::Value, key: &str| v.get(key).and_then(|f| f.as_bool()) == Some(true);
        let types: Vec<(&String, &serde_json::Value)> =
            spec.iter().filter(|(k, _)| !k.starts_with("__")).collect();
        // `serde_json` reads objects in key order; the table is kept in that order too.
        assert_eq!(
            types.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
            SPAN_TYPES.iter().map(|t| t.name).collect::<Vec<_>>(),
            "the span types of span_types.json"
        );
        for ((name, spec_type), ours) in types.into_iter().zip(SPAN_TYPES) {
            assert_eq!(
                flag(spec_type, "allow_null_subtype"),
                ours.allow_null_subtype,
                "{name}"
            );
            assert_eq!(
                flag(spec_type, "allow_unlisted_subtype"),
                ours.allow_unlisted_subtype,
                "{name}"
            );
            let subtypes: Vec<(String, Option<String>)> = spec_type
                .get("subtypes")
                .and_then(|s| s.as_object())
                .map(|s| {
                    s.iter()
                        .map(|(sub, v)| {
                            let replaced = v
                                .get("__description")
                                .and_then(|d| d.as_str())
                                .and_then(|d| d.strip_prefix("Deprecated: use "))
                                .and_then(|d| d.split_once('/'))
                                .map(|(_, sub)| sub.to_owned());
                            (sub.clone(), replaced)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut subtypes = subtypes;
            subtypes.sort();
            let mut ours: Vec<(String, Option<String>)> = ours
                .subtypes
                .iter()
                .map(|s| (s.name.to_owned(), s.replaced_by.map(str::to_owned)))
                .collect();
            ours.sort();
            assert_eq!(subtypes, ours, "the subtypes of {name}");
        }
    }
}
