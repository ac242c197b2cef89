//! Just enough HTTP/1.1 for an APM agent: request parsing (Content-Length and chunked bodies,
//! gzip/deflate content encodings, keep-alive) and response writing. Generic over `BufRead` /
//! `Write` so the parser is unit-tested on byte slices, without sockets.

use std::io::{self, BufRead, Read, Write};

use flate2::read::{DeflateDecoder, GzDecoder, ZlibDecoder};

/// Longest request line or header line accepted; a client sending more is broken.
const MAX_LINE: usize = 64 * 1024;
/// Largest body accepted (after de-chunking, before decompression).
const MAX_BODY: usize = 256 * 1024 * 1024;
const MAX_HEADERS: usize = 256;

/// One parsed HTTP request, body de-chunked but still content-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string (after `?`), `None` when the target had none.
    pub query: Option<String>,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub version: String,
    /// Header names as sent; use [`Request::header`] for case-insensitive lookup.
    pub headers: Vec<(String, String)>,
    /// The body as received on the wire (chunked framing removed, encoding not).
    pub body: Vec<u8>,
}

impl Request {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// Whether the connection stays open after this request (HTTP/1.1 default keep-alive).
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").map(str::to_ascii_lowercase);
        let has = |token: &str| {
            connection
                .as_deref()
                .is_some_and(|c| c.split(',').any(|t| t.trim() == token))
        };
        if self.version.eq_ignore_ascii_case("HTTP/1.0") {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// The body with its `Content-Encoding` (gzip, deflate, identity; possibly stacked) undone.
    pub fn decoded_body(&self) -> io::Result<Vec<u8>> {
        match self.header("content-encoding") {
            None => Ok(self.body.clone()),
            Some(encodings) => decode(&self.body, encodings),
        }
    }
}

/// Case-insensitive header lookup shared by requests and recorded requests.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Value of query parameter `name` in a raw query string (`+` and `%XX` decoded).
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads one line terminated by LF (CR before it stripped). `None` on EOF before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE {
            invalid("line too long")
        } else {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed mid-line")
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| invalid("non-UTF-8 request line or header"))
}

/// Reads the next request from a connection. `Ok(None)` when the peer closed the connection
/// cleanly between requests (the normal end of a keep-alive connection).
pub fn read_request(r: &mut impl BufRead) -> io::Result<Option<Request>> {
    // RFC 9112 §2.2: ignore empty lines before the request line.
    let line = loop {
        match read_line(r)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("malformed request line {line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("unsupported HTTP version {version:?}")));
    }
    let (path, query) = split_target(target);

    let headers = read_headers(r)?;

    // RFC 9112 §6.3: chunked wins over Content-Length when both are present.
    let chunked = header(&headers, "transfer-encoding").is_some_and(|te| {
        te.rsplit(',')
            .next()
            .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
    });
    let body = if chunked {
        read_chunked(r)?
    } else if let Some(len) = header(&headers, "content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        if len > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };

    Ok(Some(Request {
        method: method.to_owned(),
        path,
        query,
        version: version.to_owned(),
        headers,
        body,
    }))
}

/// Header lines up to the empty line that ends them.
fn read_headers(r: &mut impl BufRead) -> io::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in headers"))?;
        if line.is_empty() {
            return Ok(headers);
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed header {line:?}")))?;
        if headers.len() == MAX_HEADERS {
            return Err(invalid("too many headers"));
        }
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
}

/// Splits a request target into path and query; absolute-form (`http://host/p`) is reduced to
/// its path, as a proxy-aware client may send it.
fn split_target(target: &str) -> (String, Option<String>) {
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (target.to_owned(), None),
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk size"))?;
        // Chunk extensions (`;name=value`) are allowed and ignored.
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            break;
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
    // Trailer fields, up to the empty line; their values are not needed.
    loop {
        match read_line(r)? {
            Some(l) if !l.is_empty() => continue,
            _ => break,
        }
    }
    Ok(body)
}

/// Undoes a `Content-Encoding` list, last applied first.
pub fn decode(body: &[u8], encodings: &str) -> io::Result<Vec<u8>> {
    let mut data = body.to_vec();
    for enc in encodings.rsplit(',').map(str::trim) {
        data = match enc.to_ascii_lowercase().as_str() {
            "" | "identity" => data,
            "gzip" | "x-gzip" => read_all(GzDecoder::new(&data[..]))?,
            // HTTP's "deflate" is zlib-wrapped; some clients send raw deflate anyway.
            "deflate" => read_all(ZlibDecoder::new(&data[..]))
                .or_else(|_| read_all(DeflateDecoder::new(&data[..])))?,
            other => return Err(invalid(format!("unsupported Content-Encoding {other:?}"))),
        };
    }
    Ok(data)
}

fn read_all(r: impl Read) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(MAX_BODY as u64 + 1).read_to_end(&mut out)?;
    if out.len() > MAX_BODY {
        return Err(invalid("decoded body too large"));
    }
    Ok(out)
}

/// A response to write; `Content-Length` and `Connection` are added by [`Response::write_to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(body)
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Serialises the response; `keep_alive == false` adds `Connection: close`.
    pub fn write_to(&self, w: &mut impl Write, keep_alive: bool) -> io::Result<()> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        // 304 and 1xx carry no body and must not announce one.
        if self.status != 304 && self.status >= 200 {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

/// Reads one response with a `Content-Length` body (or none): the client side of
/// [`Response::write_to`], for tests that speak raw HTTP.
pub fn read_response(r: &mut impl BufRead) -> io::Result<Response> {
    let line = read_line(r)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no status line"))?;
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("malformed status line {line:?}")))?;
    let headers = read_headers(r)?;
    let len = match header(&headers, "content-length") {
        Some(l) => l
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {l:?}")))?,
        None => 0,
    };
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        202 => "Accepted",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::{GzEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::BufReader;

    fn parse_all(raw: &[u8]) -> Vec<Request> {
        let mut r = BufReader::new(raw);
        let mut out = Vec::new();
        while let Some(req) = read_request(&mut r).expect("parse") {
            out.push(req);
        }
        out
    }

    #[test]
    fn content_length_and_query() {
        let reqs = parse_all(
            b"POST /intake/v2/events?x=1&y=2 HTTP/1.1\r\nHost: a\r\nCONTENT-length: 5\r\n\r\nhello",
        );
        assert_eq!(reqs.len(), 1);
        let r = &reqs[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/intake/v2/events");
        assert_eq!(r.query.as_deref(), Some("x=1&y=2"));
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.header("Host"), Some("a"));
        assert_eq!(r.body, b"hello");
        assert!(r.keep_alive());
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let raw = b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
        let reqs = parse_all(raw);
        assert_eq!(reqs[0].body, b"hello, world");
    }

    #[test]
    fn chunked_wins_over_content_length() {
        let raw = b"POST /p HTTP/1.1\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n\
                    2\r\nok\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let reqs = parse_all(raw);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].body, b"ok");
        assert_eq!(reqs[1].method, "GET");
    }

    #[test]
    fn keep_alive_pipelined_requests() {
        let raw = b"GET / HTTP/1.1\r\n\r\n\
                    POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                    GET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
        let reqs = parse_all(raw);
        let paths: Vec<_> = reqs.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/", "/a", "/b"]);
        assert!(reqs[0].keep_alive() && reqs[1].keep_alive());
        assert!(!reqs[2].keep_alive());
    }

    #[test]
    fn http10_closes_unless_asked() {
        let reqs =
            parse_all(b"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!reqs[0].keep_alive());
        assert!(reqs[1].keep_alive());
    }

    #[test]
    fn truncated_and_malformed_input_are_errors() {
        for raw in [
            &b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"[..],
            b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nno-colon\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a",
        ] {
            assert!(read_request(&mut BufReader::new(raw)).is_err(), "{raw:?}");
        }
    }

    #[test]
    fn absolute_form_target() {
        let r =
            &parse_all(b"GET http://h:8200/config/v1/agents?service.name=s HTTP/1.1\r\n\r\n")[0];
        assert_eq!(r.path, "/config/v1/agents");
        assert_eq!(r.query.as_deref(), Some("service.name=s"));
    }

    fn request_with(encoding: &str, body: Vec<u8>) -> Request {
        Request {
            method: "POST".into(),
            path: "/".into(),
            query: None,
            version: "HTTP/1.1".into(),
            headers: vec![("Content-Encoding".into(), encoding.into())],
            body,
        }
    }

    #[test]
    fn gzip_and_deflate_bodies() {
        let plain = b"{\"metadata\":{}}\n".repeat(50);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&plain).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert_eq!(
            request_with("gzip", gz).decoded_body().expect("gunzip"),
            plain
        );

        let mut zl = ZlibEncoder::new(Vec::new(), Compression::default());
        zl.write_all(&plain).expect("zlib");
        let zl = zl.finish().expect("zlib");
        assert_eq!(
            request_with("deflate", zl).decoded_body().expect("inflate"),
            plain
        );

        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&plain).expect("deflate");
        let raw = raw.finish().expect("deflate");
        assert_eq!(
            request_with("Deflate", raw)
                .decoded_body()
                .expect("raw inflate"),
            plain
        );

        assert!(request_with("gzip", b"not gzip".to_vec())
            .decoded_body()
            .is_err());
        assert!(request_with("br", plain.clone()).decoded_body().is_err());
        assert_eq!(
            request_with("identity", plain.clone())
                .decoded_body()
                .expect("id"),
            plain
        );
    }

    #[test]
    fn response_serialisation() {
        let mut out = Vec::new();
        Response::json(202, "")
            .write_to(&mut out, false)
            .expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.starts_with("HTTP/1.1 202 Accepted\r\n"));
        assert!(text.contains("Content-Length: 0\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));

        let mut out = Vec::new();
        Response::new(304)
            .header("ETag", "\"x\"")
            .write_to(&mut out, true)
            .expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.contains("Content-Length"));

        let mut out = Vec::new();
        let sent = Response::json(400, r#"{"accepted":0}"#);
        sent.write_to(&mut out, false).expect("write");
        let read = read_response(&mut BufReader::new(&out[..])).expect("read back");
        assert_eq!((read.status, &read.body), (400, &sent.body));
        assert_eq!(header(&read.headers, "connection"), Some("close"));
        assert!(read_response(&mut BufReader::new(&b"HTTP/1.1 OK\r\n\r\n"[..])).is_err());
    }
}
