//! `headers` names one of the function's arguments.
#[apm::transaction(headers = "traceparent")]
fn literal(h: Vec<(String, String)>) {
    let _ = h;
}

#[apm::transaction(headers = request.headers)]
fn field(request: Vec<(String, String)>) {
    let _ = request;
}

#[apm::transaction(headers)]
fn missing(headers: Vec<(String, String)>) {
    let _ = headers;
}

fn main() {}
