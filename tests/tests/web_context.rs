//! `context.request` / `context.response` of server transactions: URL parts, headers,
//! cookies and bodies, sanitised with `sanitize_field_names`, and `capture_headers`.

mod common;

use apm::web::{Request, Response};
use common::agent::{self, named};

fn request() -> Request {
    Request::new(
        "POST",
        "https://shop.example.com:8443/cart/items?id=7&coupon=x",
    )
    .http_version("1.1")
    .header("Content-Type", "application/x-www-form-urlencoded")
    .header("Authorization", "Bearer secret")
    .header("X-Api-Key", "k")
    .header("Accept", "text/html")
    .header("Accept", "application/json")
    .header("Cookie", "session_id=abc; theme=dark")
    .remote_address("10.1.2.3")
    .body("item=7&password=hunter2&qty=1")
}

#[test]
fn request_and_response_are_recorded_and_sanitised() {
    let h = agent::start(|c| c.capture_body(apm::config::CaptureBody::All));
    let t = apm::Transaction::start("POST /cart/items", "request");
    t.set_request(request());
    t.set_response(
        Response::new(201)
            .header("Set-Cookie", "session_id=new")
            .header("Content-Length", "0"),
    );
    t.set_result(apm::web::result_for_status(201));
    t.end();
    h.flush();
    let tx = named(&h.transactions(), "POST /cart/items").clone();
    assert_eq!(tx["result"], "HTTP 2xx");
    let req = &tx["context"]["request"];
    assert_eq!(req["method"], "POST");
    assert_eq!(req["http_version"], "1.1");
    let url = &req["url"];
    assert_eq!(
        url["full"],
        "https://shop.example.com:8443/cart/items?id=7&coupon=x"
    );
    assert_eq!(url["protocol"], "https:");
    assert_eq!(url["hostname"], "shop.example.com");
    assert_eq!(url["port"], 8443);
    assert_eq!(url["pathname"], "/cart/items");
    assert_eq!(url["search"], "id=7&coupon=x");
    let headers = &req["headers"];
    assert_eq!(headers["Authorization"], "[REDACTED]");
    assert_eq!(headers["X-Api-Key"], "[REDACTED]");
    assert_eq!(
        headers["Accept"],
        serde_json::json!(["text/html", "application/json"])
    );
    assert!(
        headers.get("Cookie").is_none(),
        "cookies are sent parsed, not as a header"
    );
    assert_eq!(req["cookies"]["session_id"], "[REDACTED]");
    assert_eq!(req["cookies"]["theme"], "dark");
    assert_eq!(req["socket"]["remote_address"], "10.1.2.3");
    assert_eq!(req["body"], "item=7&password=[REDACTED]&qty=1");
    let resp = &tx["context"]["response"];
    assert_eq!(resp["status_code"], 201);
    assert_eq!(resp["headers"]["Set-Cookie"], "[REDACTED]");
    assert_eq!(resp["headers"]["Content-Length"], "0");
    h.finish();
}

#[test]
fn capture_headers_off_and_custom_sanitisation_are_honoured() {
    let h = agent::start(|c| c.capture_headers(false));
    let t = apm::Transaction::start("no headers", "request");
    let mut req = request();
    req.body = None;
    t.set_request(req);
    t.end();
    h.flush();
    let req = named(&h.transactions(), "no headers")["context"]["request"].clone();
    assert!(req.get("headers").is_none() && req.get("cookies").is_none());
    assert_eq!(
        req["body"], "[REDACTED]",
        "a body that was not captured is redacted"
    );
    h.finish();

    let h = agent::start(|c| {
        c.sanitize_field_names(["theme", "accept"])
            .capture_body(apm::config::CaptureBody::All)
    });
    let t = apm::Transaction::start("custom", "request");
    t.set_request(request());
    t.end();
    h.flush();
    let req = named(&h.transactions(), "custom")["context"]["request"].clone();
    assert_eq!(req["cookies"]["theme"], "[REDACTED]");
    assert_eq!(
        req["cookies"]["session_id"], "abc",
        "the configured list replaces the default"
    );
    assert_eq!(
        req["headers"]["Accept"],
        serde_json::json!(["[REDACTED]", "[REDACTED]"])
    );
    h.finish();
}
