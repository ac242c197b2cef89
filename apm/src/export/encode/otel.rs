//! `otel` of spans and transactions made through the OpenTelemetry API: the span kind, and the
//! attributes as the application set them (the APM Server maps them as its OTLP intake
//! does). Strings are cut to `long_field_max_length`; a number JSON cannot hold is `null`.

use std::io;

use opentelemetry::{Array, KeyValue, Value};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::types::span_context::Otel;
use crate::util::text::truncate;

/// Writes `,"otel":{...}`.
pub(super) fn write(out: &mut Vec<u8>, otel: &Otel, long_limit: usize) -> io::Result<()> {
    out.extend_from_slice(b",\"otel\":");
    serde_json::to_writer(&mut *out, &OtelView { otel, long_limit }).map_err(io::Error::other)
}

struct OtelView<'a> {
    otel: &'a Otel,
    long_limit: usize,
}

impl Serialize for OtelView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("span_kind", self.otel.span_kind)?;
        m.serialize_entry(
            "attributes",
            &Attributes {
                list: &self.otel.attributes,
                long_limit: self.long_limit,
            },
        )?;
        m.end()
    }
}

struct Attributes<'a> {
    list: &'a [KeyValue],
    long_limit: usize,
}

impl Serialize for Attributes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.list.len()))?;
        for kv in self.list {
            m.serialize_entry(
                kv.key.as_str(),
                &ValueView {
                    value: &kv.value,
                    long_limit: self.long_limit,
                },
            )?;
        }
        m.end()
    }
}

struct ValueView<'a> {
    value: &'a Value,
    long_limit: usize,
}

impl Serialize for ValueView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = |t: &str| truncate(t, self.long_limit).into_owned();
        match self.value {
            Value::Bool(b) => s.serialize_bool(*b),
            Value::I64(n) => s.serialize_i64(*n),
            Value::F64(f) if f.is_finite() => s.serialize_f64(*f),
            Value::F64(_) => s.serialize_none(),
            Value::String(t) => s.serialize_str(&text(t.as_str())),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(None)?;
                match a {
                    Array::Bool(v) => v.iter().try_for_each(|b| seq.serialize_element(b))?,
                    Array::I64(v) => v.iter().try_for_each(|n| seq.serialize_element(n))?,
                    Array::F64(v) => v
                        .iter()
                        .try_for_each(|f| seq.serialize_element(&f.is_finite().then_some(*f)))?,
                    Array::String(v) => v
                        .iter()
                        .try_for_each(|t| seq.serialize_element(&text(t.as_str())))?,
                    // A kind of array added after 0.33: its text form.
                    #[allow(unreachable_patterns)]
                    other => seq.serialize_element(&text(&other.to_string()))?,
                }
                seq.end()
            }
            // A kind of value added after 0.33: its text form.
            #[allow(unreachable_patterns)]
            other => s.serialize_str(&text(&other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_keep_their_types() {
        let otel = Otel {
            span_kind: "CLIENT",
            attributes: vec![
                KeyValue::new("db.system", "mysql"),
                KeyValue::new("net.peer.port", 3307_i64),
                KeyValue::new("ratio", f64::NAN),
                KeyValue::new("ok", true),
                KeyValue::new(
                    "tags",
                    Value::Array(
                        vec!["a", "b"]
                            .into_iter()
                            .map(Into::into)
                            .collect::<Vec<opentelemetry::StringValue>>()
                            .into(),
                    ),
                ),
                KeyValue::new("long", "x".repeat(20)),
            ],
        };
        let mut out = Vec::new();
        write(&mut out, &otel, 10).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out[b",\"otel\":".len()..]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"span_kind": "CLIENT", "attributes": {
                "db.system": "mysql", "net.peer.port": 3307, "ratio": null, "ok": true,
                "tags": ["a", "b"], "long": truncate(&"x".repeat(20), 10)}})
        );
    }
}
