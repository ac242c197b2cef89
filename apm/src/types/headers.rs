//! Header access for trace-context propagation: how the agent reads incoming request headers
//! and writes outgoing ones, whatever the HTTP library.

// The W3C trace context's headers and the Elastic agents' legacy one: read and written by
// the agent (`capture/propagation.rs`), looked up by name in an `http::HeaderMap` below.
#[cfg(any(feature = "enable", apm_http))]
pub(crate) const TRACEPARENT: &str = "traceparent";
#[cfg(any(feature = "enable", apm_http))]
pub(crate) const LEGACY_TRACEPARENT: &str = "elastic-apm-traceparent";
#[cfg(any(feature = "enable", apm_http))]
pub(crate) const TRACESTATE: &str = "tracestate";

/// Reads request headers: call `each` with every value of header `name` (case-insensitive),
/// in order. Implemented for slices and vectors of name/value pairs, `HashMap` and `BTreeMap`
/// of strings (a job's payload) and, with the `http` feature, for `http::HeaderMap`; wrap
/// anything else in [`headers_fn`].
pub trait HeaderSource {
    /// Calls `each` with every value of the header `name` (case-insensitive), in order.
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str));
}

/// Writes request headers (outgoing propagation).
pub trait HeaderSink {
    /// Sets the header `name` to `value`, replacing any value it had.
    fn set_header(&mut self, name: &'static str, value: &str);
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        for (k, v) in self {
            if k.as_ref().eq_ignore_ascii_case(name) {
                each(v.as_ref());
            }
        }
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        self.as_slice().header_values(name, each);
    }
}

impl HeaderSink for Vec<(String, String)> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.push((name.to_owned(), value.to_owned()));
    }
}

/// A job's payload map, for instance: the trace context travels with the job in the names the
/// headers have (`traceparent`, `tracestate`), and the worker continues the trace from it.
impl<S: std::hash::BuildHasher> HeaderSource for std::collections::HashMap<String, String, S> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        match self.get(name) {
            Some(v) => each(v),
            None => self
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .for_each(|(_, v)| each(v)),
        }
    }
}

impl<S: std::hash::BuildHasher> HeaderSink for std::collections::HashMap<String, String, S> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(name.to_owned(), value.to_owned());
    }
}

impl HeaderSource for std::collections::BTreeMap<String, String> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        match self.get(name) {
            Some(v) => each(v),
            None => self
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .for_each(|(_, v)| each(v)),
        }
    }
}

impl HeaderSink for std::collections::BTreeMap<String, String> {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self.retain(|k, _| !k.eq_ignore_ascii_case(name));
        self.insert(name.to_owned(), value.to_owned());
    }
}

/// A [`HeaderSource`] from a lookup closure returning a header's (single) value.
pub fn headers_fn<F: Fn(&str) -> Option<String>>(lookup: F) -> HeadersFn<F> {
    HeadersFn(lookup)
}

/// See [`headers_fn`].
#[derive(Debug, Clone, Copy)]
pub struct HeadersFn<F>(F);

impl<F: Fn(&str) -> Option<String>> HeaderSource for HeadersFn<F> {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        if let Some(v) = (self.0)(name) {
            each(&v);
        }
    }
}

impl<F: FnMut(&'static str, &str)> HeaderSink for F {
    fn set_header(&mut self, name: &'static str, value: &str) {
        self(name, value);
    }
}

impl<T: HeaderSource + ?Sized> HeaderSource for &T {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        (**self).header_values(name, each);
    }
}

#[cfg(apm_http)]
impl HeaderSource for http::HeaderMap {
    fn header_values(&self, name: &str, each: &mut dyn FnMut(&str)) {
        let values = match propagation_header(name) {
            // A request has a few headers and mostly none of these: comparing the names (their
            // lengths, mostly) costs less than hashing the name to look it up.
            Some(known) if !self.keys().any(|k| k == known) => return,
            Some(known) => self.get_all(known),
            None => self.get_all(name),
        };
        for v in values {
            if let Ok(v) = v.to_str() {
                each(v);
            }
        }
    }
}

/// The propagation headers a server looks up on every request, by names made once: a lookup by
/// text checks and lowercases the text first, which cost more than the lookup itself.
#[cfg(apm_http)]
fn propagation_header(name: &str) -> Option<&'static http::HeaderName> {
    use http::HeaderName;
    static NAMES: [HeaderName; 3] = [
        HeaderName::from_static(TRACEPARENT),
        HeaderName::from_static(LEGACY_TRACEPARENT),
        HeaderName::from_static(TRACESTATE),
    ];
    match name {
        TRACEPARENT => Some(&NAMES[0]),
        LEGACY_TRACEPARENT => Some(&NAMES[1]),
        TRACESTATE => Some(&NAMES[2]),
        _ => None,
    }
}

#[cfg(apm_http)]
impl HeaderSink for http::HeaderMap {
    fn set_header(&mut self, name: &'static str, value: &str) {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            self.insert(http::HeaderName::from_static(name), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::{HeaderSink, HeaderSource};

    fn values(source: &impl HeaderSource, name: &str) -> Vec<String> {
        let mut found = Vec::new();
        source.header_values(name, &mut |v| found.push(v.to_owned()));
        found
    }

    #[test]
    fn maps_carry_headers_by_name_whatever_the_case() {
        let mut hash: HashMap<String, String> = HashMap::new();
        hash.insert("TraceParent".into(), "old".into());
        hash.set_header("traceparent", "00-ab-cd-01");
        assert_eq!(hash.len(), 1);
        assert_eq!(values(&hash, "traceparent"), ["00-ab-cd-01"]);
        assert_eq!(values(&hash, "TRACEPARENT"), ["00-ab-cd-01"]);

        let mut tree: BTreeMap<String, String> = BTreeMap::new();
        tree.insert("TRACESTATE".into(), "es=s:1".into());
        assert_eq!(values(&tree, "tracestate"), ["es=s:1"]);
        tree.set_header("tracestate", "es=s:0.5");
        assert_eq!(tree.len(), 1);
        assert_eq!(values(&tree, "tracestate"), ["es=s:0.5"]);
        assert!(values(&tree, "traceparent").is_empty());
    }

    #[cfg(apm_http)]
    #[test]
    fn an_http_header_map_gives_every_value_by_any_case_of_the_name() {
        let mut map = http::HeaderMap::new();
        for (name, value) in [
            ("TraceParent", "00-ab-cd-01"),
            ("tracestate", "a=1"),
            ("TRACESTATE", "b=2"),
            ("Elastic-Apm-Traceparent", "00-ef-01-00"),
            ("x-other", "3"),
        ] {
            let name = http::HeaderName::from_bytes(name.as_bytes()).expect("a name");
            map.append(name, http::HeaderValue::from_static(value));
        }
        map.append(
            "x-bytes",
            http::HeaderValue::from_bytes(b"\xff").expect("a value"),
        );
        assert_eq!(values(&map, "traceparent"), ["00-ab-cd-01"]);
        assert_eq!(values(&map, "TRACEPARENT"), ["00-ab-cd-01"]);
        assert_eq!(values(&map, "tracestate"), ["a=1", "b=2"]);
        assert_eq!(values(&map, "elastic-apm-traceparent"), ["00-ef-01-00"]);
        assert_eq!(values(&map, "X-Other"), ["3"]);
        assert!(
            values(&map, "x-bytes").is_empty(),
            "a value that is not text is skipped"
        );
        assert!(values(&map, "not a name").is_empty());
        assert!(values(&http::HeaderMap::new(), "traceparent").is_empty());
    }
}
