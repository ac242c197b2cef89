//! A loopback collector for the end-to-end benchmarks (`race`, `service`): it answers the APM
//! Server's endpoints and OTLP/HTTP's `/v1/traces`, reads and decodes every byte it is sent
//! (gzip and deflate undone, chunks joined) and counts the events: for `apm` the
//! transactions and spans of the intake NDJSON, for OTLP the spans of each
//! `ExportTraceServiceRequest`. And the OTLP exporter both benchmarks give the OpenTelemetry
//! SDK.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use crate::{read_request_head, RequestHead};

#[derive(Debug, Default)]
pub struct Counts {
    /// Transactions and spans (apm), or spans (OTLP), received.
    pub events: AtomicU64,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Body bytes read, as sent (compressed or not).
    pub bytes: AtomicU64,
}

/// The collector, listening on `addr`, its threads serving connections.
#[derive(Debug)]
pub struct Collector {
    pub addr: String,
    pub counts: Arc<Counts>,
}

impl Collector {
    /// Listens on `127.0.0.1` and serves each connection on a thread of its own.
    pub fn start() -> Collector {
        // 127.0.0.1: loopback by name, so `apm` sends uncompressed as the spec says for a
        // server on the same host; OTLP compresses as configured.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the collector");
        let addr = listener.local_addr().expect("address").to_string();
        let counts = Arc::new(Counts::default());
        let shared = Arc::clone(&counts);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || serve(conn, &shared));
            }
        });
        Collector { addr, counts }
    }
}

fn serve(conn: TcpStream, counts: &Counts) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::with_capacity(64 * 1024, conn);
    let mut line = String::new();
    loop {
        let Some(RequestHead {
            path,
            length,
            chunked,
            encoding,
        }) = read_request_head(&mut reader, &mut line)
        else {
            return;
        };
        let body = if chunked {
            read_chunked(&mut reader)
        } else {
            let mut body = vec![0; usize::try_from(length).unwrap_or(0)];
            reader.read_exact(&mut body).ok().map(|()| body)
        };
        let Some(body) = body else { return };
        counts.bytes.fetch_add(body.len() as u64, Relaxed);
        counts.requests.fetch_add(1, Relaxed);
        let body = decode(&encoding, body);
        let (status, kind, answer): (&str, &str, &[u8]) = if path == "/v1/traces" {
            counts.events.fetch_add(otlp_spans(&body), Relaxed);
            ("200 OK", "application/x-protobuf", b"")
        } else if path.starts_with("/intake/") {
            let events = body
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"{\"span\"") || l.starts_with(b"{\"transaction\""))
                .count();
            counts.events.fetch_add(events as u64, Relaxed);
            ("202 Accepted", "application/json", b"")
        } else if path.starts_with("/config/") {
            ("200 OK", "application/json", b"{}")
        } else {
            ("200 OK", "application/json", br#"{"version":"8.15.0"}"#)
        };
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).ok()?;
        line.clear();
        reader.read_line(&mut line).ok()?;
        if size == 0 {
            return Some(body);
        }
    }
}

fn decode(encoding: &str, body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::new();
    let ok = match encoding {
        "gzip" => flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut out),
        "deflate" => flate2::read::ZlibDecoder::new(&body[..]).read_to_end(&mut out),
        _ => return body,
    };
    ok.map_or(Vec::new(), |_| out)
}

/// Spans in an `ExportTraceServiceRequest`: `resource_spans` (1) → `scope_spans` (2) →
/// `spans` (2), each a length-delimited field.
fn otlp_spans(msg: &[u8]) -> u64 {
    fields(msg, 1)
        .flat_map(|rs| fields(rs, 2))
        .map(|ss| fields(ss, 2).count() as u64)
        .sum()
}

/// The length-delimited fields numbered `number` of a protobuf message.
fn fields(mut msg: &[u8], number: u64) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || loop {
        let key = varint(&mut msg)?;
        let value: &[u8] = match key & 7 {
            0 => {
                varint(&mut msg)?;
                &[]
            }
            1 => take(&mut msg, 8)?,
            2 => {
                let len = usize::try_from(varint(&mut msg)?).ok()?;
                take(&mut msg, len)?
            }
            5 => take(&mut msg, 4)?,
            _ => return None,
        };
        if key >> 3 == number && key & 7 == 2 {
            return Some(value);
        }
    })
}

fn take<'a>(msg: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if msg.len() < n {
        return None;
    }
    let (head, rest) = msg.split_at(n);
    *msg = rest;
    Some(head)
}

fn varint(msg: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = msg.split_first()?;
        *msg = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The OpenTelemetry SDK's tracer provider exporting to `url` with OTLP HTTP/protobuf, gzip.
pub fn otlp_provider(url: &str) -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .with_endpoint(format!("{url}/v1/traces"))
        .build()
        .expect("OTLP exporter");
    // Sized not to drop at 500 000 spans/s: a batch of 2048 every 20 ms at most, and room for
    // a second of spans.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(1 << 19)
        .with_max_export_batch_size(2048)
        .with_scheduled_delay(Duration::from_millis(20))
        .build();
    SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::new(exporter, batch))
        .build()
}
