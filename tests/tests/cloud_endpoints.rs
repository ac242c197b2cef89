//! Cloud metadata from the providers' metadata endpoints: AWS (IMDSv2), Google Cloud and
//! Azure, each answered by a local stand-in in the provider's place
//! (`APM_TEST_CLOUD_METADATA_URL`); `none`; and endpoints that answer an error, something else
//! than the provider's document, or bytes that are not HTTP, which give no cloud metadata; and
//! one that never answers, which holds the transport thread for its timeout, never `init`.
//! The metadata line the agent sends is checked against the intake schema by the stand-in APM
//! Server.
//!
//! One test in its own binary: it sets an environment variable, which no other thread of the
//! process may read meanwhile.

mod common;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use apm::config::CloudProvider;
use apm_tests::http::{read_request, Response};
use common::agent;
use serde_json::{json, Value};

const URL_VAR: &str = "APM_TEST_CLOUD_METADATA_URL";
const AWS_TOKEN: &str = "/latest/api/token";
const AWS_DOCUMENT: &str = "/latest/dynamic/instance-identity/document";
const GCP: &str = "/computeMetadata/v1/";
const AZURE: &str = "/metadata/instance/compute";

/// What the stand-in answers a request with: a status and body, or bytes that are not HTTP.
#[derive(Clone)]
enum Answer {
    Http(u16, String),
    Garbage,
}

/// One request the stand-in received: method, path with query, headers.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Route = Box<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A metadata endpoint stand-in: one connection at a time, one request per connection (the
/// agent's client closes after each), answered by `route`; 404 when it returns `None`.
struct Endpoint {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    fn start(route: impl Fn(&Seen) -> Option<Answer> + Send + Sync + 'static) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the stand-in endpoint");
        let addr = listener.local_addr().expect("its address");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Route =
            Box::new(move |s| route(s).unwrap_or_else(|| Answer::Http(404, "not found".into())));
        let log = Arc::clone(&seen);
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut reader = BufReader::new(conn);
                let Ok(Some(req)) = read_request(&mut reader) else {
                    continue;
                };
                let target = match &req.query {
                    Some(q) => format!("{}?{q}", req.path),
                    None => req.path.clone(),
                };
                let request = Seen {
                    method: req.method.clone(),
                    target,
                    headers: req.headers.clone(),
                };
                let answer = route(&request);
                log.lock().expect("log").push(request);
                let conn = reader.get_mut();
                let _ = match answer {
                    Answer::Http(status, body) => Response::new(status)
                        .body(body.into_bytes())
                        .write_to(conn, false),
                    Answer::Garbage => conn.write_all(b"\x00\x01not http at all\r\n"),
                };
            }
        });
        Endpoint { addr, seen }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// The `cloud` of the metadata an agent with `provider` sends, the metadata endpoints being
/// `base`; `Null` when absent.
fn cloud_with(provider: CloudProvider, base: &str) -> Value {
    // No agent runs while the variable changes: this binary's one test starts them in turn.
    std::env::set_var(URL_VAR, base);
    let h = agent::start(|b| b.cloud_provider(provider).metrics_interval(Duration::ZERO));
    drop(apm::start_transaction("cloud", "custom"));
    h.flush();
    let metadata = h.server.metadata();
    h.finish();
    std::env::remove_var(URL_VAR);
    let first = metadata.first().expect("a metadata line");
    first.get("cloud").cloned().unwrap_or(Value::Null)
}

fn ok(body: Value) -> Option<Answer> {
    Some(Answer::Http(200, body.to_string()))
}

fn aws_document() -> Value {
    json!({
        "accountId": "946960629917",
        "architecture": "x86_64",
        "availabilityZone": "us-east-2a",
        "imageId": "ami-07c1207a9d40bc3bd",
        "instanceId": "i-0ae894a7c1c4f2a75",
        "instanceType": "t2.medium",
        "privateIp": "172.31.0.212",
        "region": "us-east-2",
        "version": "2017-09-30"
    })
}

fn aws_cloud() -> Value {
    json!({
        "provider": "aws",
        "account": { "id": "946960629917" },
        "instance": { "id": "i-0ae894a7c1c4f2a75" },
        "availability_zone": "us-east-2a",
        "machine": { "type": "t2.medium" },
        "region": "us-east-2"
    })
}

/// An EC2 instance: a token for the PUT that asks for one with a TTL, the document only with
/// that token.
fn aws_route(s: &Seen) -> Option<Answer> {
    match (s.method.as_str(), s.target.as_str()) {
        ("PUT", AWS_TOKEN) if s.header("X-aws-ec2-metadata-token-ttl-seconds").is_some() => {
            Some(Answer::Http(200, "AQAEAtoken==".into()))
        }
        ("GET", AWS_DOCUMENT) if s.header("X-aws-ec2-metadata-token") == Some("AQAEAtoken==") => {
            ok(aws_document())
        }
        ("GET", AWS_DOCUMENT) => Some(Answer::Http(401, String::new())),
        _ => None,
    }
}

fn gcp_route(s: &Seen) -> Option<Answer> {
    (s.method == "GET"
        && s.target == format!("{GCP}?recursive=true")
        && s.header("Metadata-Flavor") == Some("Google"))
    .then(|| {
        Answer::Http(
            200,
            json!({
                "instance": {
                    "id": 4306570268266786072_u64,
                    "machineType": "projects/513326162531/machineTypes/n1-standard-1",
                    "name": "basepi-test",
                    "zone": "projects/513326162531/zones/us-west3-a"
                },
                "project": { "numericProjectId": 513326162531_u64, "projectId": "elastic-apm" }
            })
            .to_string(),
        )
    })
}

fn gcp_cloud() -> Value {
    json!({
        "provider": "gcp",
        "instance": { "id": "4306570268266786072", "name": "basepi-test" },
        "project": { "id": "elastic-apm" },
        "availability_zone": "us-west3-a",
        "region": "us-west3",
        "machine": { "type": "n1-standard-1" }
    })
}

fn azure_route(s: &Seen) -> Option<Answer> {
    (s.method == "GET"
        && s.target == format!("{AZURE}?api-version=2019-08-15")
        && s.header("Metadata") == Some("true"))
    .then(|| {
        Answer::Http(
            200,
            json!({
                "location": "westus2",
                "name": "basepi-test",
                "resourceGroupName": "basepi-testing",
                "subscriptionId": "7657426d-c4c3-44ac-88a2-3b2cd59e6dba",
                "vmId": "e11ebedc-019d-427f-84dd-56cd4388d3a8",
                "vmScaleSetName": "",
                "vmSize": "Standard_D2s_v3",
                "zone": ""
            })
            .to_string(),
        )
    })
}

fn azure_cloud() -> Value {
    json!({
        "provider": "azure",
        "account": { "id": "7657426d-c4c3-44ac-88a2-3b2cd59e6dba" },
        "instance": { "id": "e11ebedc-019d-427f-84dd-56cd4388d3a8", "name": "basepi-test" },
        "project": { "name": "basepi-testing" },
        "machine": { "type": "Standard_D2s_v3" },
        "region": "westus2"
    })
}

/// The targets asked, in order.
fn targets(endpoint: &Endpoint) -> Vec<String> {
    endpoint
        .seen()
        .iter()
        .map(|s| format!("{} {}", s.method, s.target))
        .collect()
}

#[test]
fn cloud_metadata_from_the_providers_endpoints() {
    // Each provider named, its endpoint answering as the provider's does.
    let aws = Endpoint::start(aws_route);
    assert_eq!(cloud_with(CloudProvider::Aws, &aws.url()), aws_cloud());
    assert_eq!(
        targets(&aws),
        [format!("PUT {AWS_TOKEN}"), format!("GET {AWS_DOCUMENT}")]
    );
    let gcp = Endpoint::start(gcp_route);
    assert_eq!(cloud_with(CloudProvider::Gcp, &gcp.url()), gcp_cloud());
    let azure = Endpoint::start(azure_route);
    assert_eq!(
        cloud_with(CloudProvider::Azure, &azure.url()),
        azure_cloud()
    );

    // IMDSv1 only: the token is refused, the document is given without one.
    let imds_v1 = Endpoint::start(|s| match s.target.as_str() {
        AWS_TOKEN => Some(Answer::Http(403, String::new())),
        AWS_DOCUMENT if s.header("X-aws-ec2-metadata-token").is_none() => ok(aws_document()),
        _ => None,
    });
    assert_eq!(cloud_with(CloudProvider::Aws, &imds_v1.url()), aws_cloud());

    // `auto` tries AWS (a token refused, so the document without one), then Google Cloud,
    // then Azure, and stops at the first that answers.
    let only_azure = Endpoint::start(azure_route);
    assert_eq!(
        cloud_with(CloudProvider::Auto, &only_azure.url()),
        azure_cloud()
    );
    assert_eq!(
        targets(&only_azure),
        [
            format!("PUT {AWS_TOKEN}"),
            format!("GET {AWS_DOCUMENT}"),
            format!("GET {GCP}?recursive=true"),
            format!("GET {AZURE}?api-version=2019-08-15"),
        ]
    );
    let all = Endpoint::start(|s| {
        aws_route(s)
            .or_else(|| gcp_route(s))
            .or_else(|| azure_route(s))
    });
    assert_eq!(cloud_with(CloudProvider::Auto, &all.url()), aws_cloud());

    // `none` asks nothing.
    assert_eq!(cloud_with(CloudProvider::None, &all.url()), Value::Null);
    assert_eq!(all.seen().len(), 2, "{:?}", targets(&all));

    // An endpoint that answers 404 to everything, 200 with what is not JSON, JSON of another
    // shape, or bytes that are not HTTP: no cloud metadata, and the agent goes on.
    let not_found = Endpoint::start(|_| None);
    let not_json = Endpoint::start(|_| Some(Answer::Http(200, "<html>hello</html>".into())));
    let other_shape = Endpoint::start(|_| ok(json!({ "instance": "yes", "vmId": 7.5e300 })));
    let garbage = Endpoint::start(|_| Some(Answer::Garbage));
    for endpoint in [&not_found, &not_json, &other_shape, &garbage] {
        for provider in [
            CloudProvider::Aws,
            CloudProvider::Gcp,
            CloudProvider::Azure,
            CloudProvider::Auto,
        ] {
            assert_eq!(
                cloud_with(provider, &endpoint.url()),
                Value::Null,
                "{provider} from {:?}",
                targets(endpoint)
            );
        }
    }

    // Nothing listening (connections refused): no cloud metadata under `auto` either.
    let refused = format!("http://{}", common::refused_addr());
    assert_eq!(cloud_with(CloudProvider::Auto, &refused), Value::Null);

    // An endpoint that takes the connection and never answers: `init` returns at once, the
    // transport thread waits out the request's timeout (1 s for a named provider) before its
    // first request, and there is no cloud metadata.
    let stalling = TcpListener::bind("127.0.0.1:0").expect("bind a silent endpoint");
    let url = format!("http://{}", stalling.local_addr().expect("its address"));
    std::env::set_var(URL_VAR, &url);
    let started = Instant::now();
    let h = agent::start(|b| {
        b.cloud_provider(CloudProvider::Gcp)
            .metrics_interval(Duration::ZERO)
    });
    let init_took = started.elapsed();
    drop(apm::start_transaction("cloud", "custom"));
    h.flush();
    let first_request_after = started.elapsed();
    let metadata = h.server.metadata();
    h.finish();
    std::env::remove_var(URL_VAR);
    assert!(
        init_took < Duration::from_millis(500),
        "init took {init_took:?}"
    );
    assert!(
        first_request_after >= Duration::from_secs(1),
        "the endpoint was not waited for: {first_request_after:?}"
    );
    assert_eq!(metadata[0].get("cloud"), None);
    drop(stalling);
}
