//! W3C trace context (`traceparent`, `tracestate`) and the legacy `elastic-apm-traceparent`
//! header, as the Elastic distributed-tracing spec profiles them: the `es` tracestate entry
//! carries the root's sample rate (`es=s:0.5`), other vendors' entries are passed on untouched,
//! and an empty `tracestate` is never sent.

use crate::types::headers::HeaderSource;
pub(crate) use crate::types::headers::{LEGACY_TRACEPARENT, TRACEPARENT, TRACESTATE};
use crate::types::ids::hex;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: u128,
    pub(crate) parent_id: u64,
    pub(crate) sampled: bool,
}

fn lower_hex(s: &str) -> Option<u128> {
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(s, 16).ok()
}

/// Parses one `traceparent` value (trailing spaces and tabs allowed, as in the W3C tests).
pub(crate) fn parse_traceparent(value: &str) -> Option<TraceParent> {
    let v = value.trim_end_matches([' ', '\t']);
    let bytes = v.as_bytes();
    // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55.
    if bytes.len() < 55 || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let version = lower_hex(&v[0..2])?;
    if version == 0xff {
        return None;
    }
    // Version 00 is exactly 55 characters; later versions may append "-…".
    if bytes.len() > 55 && (version == 0 || bytes[55] != b'-') {
        return None;
    }
    let trace_id = lower_hex(&v[3..35])?;
    let parent_id = u64::try_from(lower_hex(&v[36..52])?).ok()?;
    let flags = lower_hex(&v[53..55])?;
    if trace_id == 0 || parent_id == 0 {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        sampled: flags & 1 == 1,
    })
}

/// `00-<trace>-<span>-<flags>`.
pub(crate) fn format_traceparent(trace_id: u128, span_id: u64, sampled: bool) -> String {
    let t = hex::<32>(trace_id);
    let s = hex::<16>(u128::from(span_id));
    format!(
        "00-{}-{}-{}",
        std::str::from_utf8(&t).unwrap_or_default(),
        std::str::from_utf8(&s).unwrap_or_default(),
        if sampled { "01" } else { "00" }
    )
}

/// Finds the trace parent in `headers`: `traceparent` (exactly one value), else the legacy
/// header. A second `traceparent` makes the header invalid.
pub(crate) fn find_traceparent(headers: &dyn HeaderSource) -> Option<TraceParent> {
    match only_value(headers, TRACEPARENT) {
        (0, _) => match only_value(headers, LEGACY_TRACEPARENT) {
            (1, legacy) => legacy,
            _ => None,
        },
        (1, parent) => parent,
        _ => None,
    }
}

/// How many values the header `name` has, and the first one parsed (without copying it: this
/// runs on every request a server takes).
fn only_value(headers: &dyn HeaderSource, name: &str) -> (usize, Option<TraceParent>) {
    let mut count = 0;
    let mut parsed = None;
    headers.header_values(name, &mut |v| {
        count += 1;
        if count == 1 {
            parsed = parse_traceparent(v);
        }
    });
    (count, parsed)
}

fn key_ok(key: &str) -> bool {
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-*/".contains(&c);
    match key.split_once('@') {
        None => {
            let b = key.as_bytes();
            !b.is_empty()
                && b.len() <= 256
                && b[0].is_ascii_lowercase()
                && b.iter().all(|&c| ok_char(c))
        }
        Some((tenant, system)) => {
            let (t, s) = (tenant.as_bytes(), system.as_bytes());
            !t.is_empty()
                && t.len() <= 241
                && (t[0].is_ascii_lowercase() || t[0].is_ascii_digit())
                && t.iter().all(|&c| ok_char(c))
                && !s.is_empty()
                && s.len() <= 14
                && s[0].is_ascii_lowercase()
                && s.iter().all(|&c| ok_char(c))
        }
    }
}

fn value_ok(value: &str) -> bool {
    let b = value.as_bytes();
    !b.is_empty()
        && b.len() <= 256
        && b.iter()
            .all(|&c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
        && b[b.len() - 1] != b' '
}

/// A received `tracestate`: the `es` entry's sample rate and the other vendors' entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TraceState {
    /// `s` of the `es` entry, when present and valid.
    pub(crate) sample_rate: Option<f64>,
    /// Whether an `es` entry was present (the trace comes from an Elastic agent).
    pub(crate) has_es: bool,
    /// The `es` entry's value as received.
    pub(crate) es: Option<String>,
    /// The other members, in order, joined with `,`.
    pub(crate) others: String,
}

/// Parses every `tracestate` value of `headers` (joined as one list). `None` when the list is
/// invalid (it is then dropped, as W3C says) or empty.
pub(crate) fn find_tracestate(headers: &dyn HeaderSource) -> Option<TraceState> {
    let mut members: Vec<(String, String)> = Vec::new();
    let mut valid = true;
    headers.header_values(TRACESTATE, &mut |v| {
        for m in v.split(',') {
            let m = m.trim_matches([' ', '\t']);
            if m.is_empty() {
                continue;
            }
            match m.split_once('=') {
                Some((k, val)) if key_ok(k) && value_ok(val) => {
                    if members.iter().any(|(existing, _)| existing == k) {
                        valid = false;
                    }
                    members.push((k.to_owned(), val.to_owned()));
                }
                _ => valid = false,
            }
        }
    });
    if !valid || members.is_empty() {
        return None;
    }
    let mut state = TraceState::default();
    let mut others = Vec::new();
    for (k, v) in &members {
        if k == "es" {
            state.has_es = true;
            state.sample_rate = parse_es_rate(v);
            state.es = Some(v.clone());
        } else {
            others.push(format!("{k}={v}"));
        }
    }
    state.others = others.join(",");
    Some(state)
}

/// `s:<rate>` out of the `es` value (`key:value` pairs separated by `;`), rounded as a
/// configured rate is (specs/agents/tracing-sampling.md): half away from zero to 4 decimals,
/// and a rate above 0 to at least 0.0001.
fn parse_es_rate(es: &str) -> Option<f64> {
    es.split(';').find_map(|kv| {
        let (k, v) = kv.split_once(':')?;
        let rate: f64 = (k == "s").then(|| v.parse().ok()).flatten()?;
        crate::config::parse::check_sample_rate(rate).ok()
    })
}

/// The `tracestate` to send: the `es` entry first when we know the rate (`s` with at most four
/// decimals), then the other vendors' entries. `None` rather than an empty header.
pub(crate) fn format_tracestate(sample_rate: Option<f64>, others: &str) -> Option<String> {
    let es = sample_rate.map(|r| format!("es=s:{}", crate::types::sample_rate::format(r)));
    match (es, others.is_empty()) {
        (Some(es), true) => Some(es),
        (Some(es), false) => Some(format!("{es},{others}")),
        (None, false) => Some(others.to_owned()),
        (None, true) => None,
    }
}

/// A received `tracestate` to pass on as it came (the `es` entry first).
pub(crate) fn format_tracestate_raw(state: &TraceState) -> Option<String> {
    let es = state.es.as_ref().map(|v| format!("es={v}"));
    match (es, state.others.is_empty()) {
        (Some(es), true) => Some(es),
        (Some(es), false) => Some(format!("{es},{}", state.others)),
        (None, false) => Some(state.others.clone()),
        (None, true) => None,
    }
}

/// Parses a `traceparent` and a `tracestate` and checks that what would be sent on parses
/// again to the same (`crate::fuzz`).
#[cfg(any(test, fuzzing))]
pub(crate) fn check_trace_context(traceparent: &str, tracestate: &str) {
    if let Some(parsed) = parse_traceparent(traceparent) {
        let sent = format_traceparent(parsed.trace_id, parsed.parent_id, parsed.sampled);
        assert_eq!(parse_traceparent(&sent), Some(parsed), "{sent}");
    }
    if let Some(state) = find_tracestate(&vec![(TRACESTATE, tracestate)]) {
        let sent = format_tracestate_raw(&state).expect("a valid tracestate is never empty");
        let again = find_tracestate(&vec![(TRACESTATE, sent.as_str())])
            .unwrap_or_else(|| panic!("the tracestate sent on is invalid: {sent:?}"));
        assert_eq!(again.es, state.es);
        assert_eq!(again.others, state.others);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn traceparent_round_trips() {
        let tp = parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        let tp = tp.expect("valid");
        assert!(tp.sampled);
        assert_eq!(
            format_traceparent(tp.trace_id, tp.parent_id, true),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        );
        assert!(
            parse_traceparent("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01").is_none()
        );
    }

    #[test]
    fn the_legacy_header_is_used_only_without_traceparent() {
        let legacy = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let w3c = "00-11111111111111111111111111111111-2222222222222222-00";
        let h = headers(&[("Elastic-Apm-Traceparent", legacy)]);
        assert_eq!(
            find_traceparent(&h).map(|t| t.parent_id),
            Some(0xb7ad_6b71_6920_3331)
        );
        let h = headers(&[("elastic-apm-traceparent", legacy), ("traceparent", w3c)]);
        assert_eq!(
            find_traceparent(&h).map(|t| t.parent_id),
            Some(0x2222_2222_2222_2222)
        );
    }

    #[test]
    fn a_header_sent_twice_or_invalid_gives_no_parent() {
        let a = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let b = "00-11111111111111111111111111111111-2222222222222222-00";
        let none = |pairs: &[(&str, &str)]| find_traceparent(&headers(pairs)).is_none();
        assert!(none(&[("traceparent", a), ("traceparent", b)]));
        assert!(none(&[("traceparent", a), ("traceparent", a)]));
        // A `traceparent` that does not parse is not replaced by the legacy header.
        assert!(none(&[
            ("traceparent", "00-xyz"),
            ("elastic-apm-traceparent", a)
        ]));
        assert!(none(&[
            ("elastic-apm-traceparent", a),
            ("elastic-apm-traceparent", b)
        ]));
        assert!(none(&[]));
        let one = find_traceparent(&headers(&[("traceparent", b)])).expect("one value");
        assert_eq!((one.parent_id, one.sampled), (0x2222_2222_2222_2222, false));
    }

    #[test]
    fn es_entry_gives_the_rate_and_others_are_kept() {
        let h = headers(&[
            ("tracestate", "foo=1,es=s:0.25;x:y"),
            ("tracestate", "bar=2"),
        ]);
        let ts = find_tracestate(&h).expect("valid");
        assert_eq!(ts.sample_rate, Some(0.25));
        assert!(ts.has_es);
        assert_eq!(ts.others, "foo=1,bar=2");
        assert_eq!(
            format_tracestate(Some(0.5), &ts.others).as_deref(),
            Some("es=s:0.5,foo=1,bar=2")
        );
        assert_eq!(format_tracestate(None, ""), None);
        let h = headers(&[("tracestate", "es=s:1.5")]);
        assert_eq!(find_tracestate(&h).and_then(|t| t.sample_rate), None);
    }

    #[test]
    fn an_incoming_rate_is_rounded_as_a_configured_one() {
        for (sent, read) in [
            ("0.00001", Some(0.0001)),
            ("0.00015", Some(0.0002)),
            ("0.55554", Some(0.5555)),
            ("0.55555", Some(0.5556)),
            ("0", Some(0.0)),
            ("1", Some(1.0)),
            ("-0.1", None),
            ("NaN", None),
        ] {
            let tracestate = format!("es=s:{sent}");
            let h = headers(&[("tracestate", tracestate.as_str())]);
            assert_eq!(
                find_tracestate(&h).and_then(|t| t.sample_rate),
                read,
                "{sent}"
            );
        }
    }

    /// Every case of the spec's `w3c_distributed_tracing.json`.
    #[test]
    fn w3c_distributed_tracing_fixture() {
        let Some(text) =
            crate::util::spec_fixture::read("agent-json-specs/w3c_distributed_tracing.json")
        else {
            return;
        };
        let json: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&json).expect("fixture is a JSON array");
        assert_eq!(
            cases.len(),
            82,
            "the fixture's case count changed: pin the new one"
        );
        let mut failures = Vec::new();
        let mut tracestate_cases = 0;
        for (i, case) in cases.iter().enumerate() {
            let h: Vec<(String, String)> = case["headers"]
                .as_array()
                .expect("headers")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_owned(),
                        p[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            let tp_valid = find_traceparent(&h).is_some();
            if Some(tp_valid) != case["is_traceparent_valid"].as_bool() {
                failures.push(format!("case {i}: traceparent valid = {tp_valid}: {h:?}"));
            }
            if let Some(expected) = case["is_tracestate_valid"].as_bool() {
                tracestate_cases += 1;
                // Valid and present, or valid because every value was empty.
                let mut any = false;
                h.header_values(TRACESTATE, &mut |v| any |= !v.trim().is_empty());
                let ts_valid = find_tracestate(&h).is_some() || !any;
                if ts_valid != expected {
                    failures.push(format!("case {i}: tracestate valid = {ts_valid}: {h:?}"));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        assert_eq!(tracestate_cases, 36, "cases with a tracestate expectation");
        eprintln!("w3c_distributed_tracing: {} cases passed", cases.len());
    }
}
