//! Metricset lines: system, process, health and breakdown metrics.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::fields::{write_line, Kw};
use crate::types::record::MetricsetRecord;

#[derive(Serialize)]
struct Sample {
    value: f64,
}

struct SamplesView<'a>(&'a [(Cow<'static, str>, f64)]);
impl Serialize for SamplesView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0.iter().filter(|(_, v)| v.is_finite()) {
            m.serialize_entry(&**name, &Sample { value: *value })?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct MetricsetSpanView<'a> {
    #[serde(rename = "type")]
    kind: Kw<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtype: Option<Kw<'a>>,
}

struct TagsView<'a>(&'a [(&'static str, &'static str)]);
impl Serialize for TagsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct MetricsetView<'a> {
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tags: Option<TagsView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<TransactionRef<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<MetricsetSpanView<'a>>,
    samples: SamplesView<'a>,
}

#[derive(Serialize)]
struct TransactionRef<'a> {
    name: Kw<'a>,
    #[serde(rename = "type")]
    kind: Kw<'a>,
}

pub(crate) fn write_metricset<W: Write>(out: &mut W, m: &MetricsetRecord) -> io::Result<()> {
    let view = MetricsetView {
        timestamp: m.timestamp,
        tags: (!m.tags.is_empty()).then_some(TagsView(&m.tags)),
        transaction: m.transaction.as_ref().map(|(name, kind)| TransactionRef {
            name: Kw(name),
            kind: Kw(kind),
        }),
        span: m.span.as_ref().map(|(kind, subtype)| MetricsetSpanView {
            kind: Kw(kind),
            subtype: subtype.as_deref().map(Kw),
        }),
        samples: SamplesView(&m.samples),
    };
    write_line(out, "metricset", &view)
}
