//! Serde views shared by the event writers: keyword and long text fields (cut as the spec
//! says), hex ids, labels; and the line every event is written as.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::types::ids::hex;
use crate::types::span_context::Labels;
use crate::util::text::{truncate, KEYWORD_LIMIT};
use crate::types::outcome::LabelValue;

/// A keyword field (≤ 1024 characters).
pub(super) struct Kw<'a>(pub(super) &'a str);
impl Serialize for Kw<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&truncate(self.0, KEYWORD_LIMIT))
    }
}

/// A long text field, cut to its limit (`long_field_max_length`).
pub(super) struct Long<'a> {
    pub(super) text: &'a str,
    pub(super) limit: usize,
}
impl Serialize for Long<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&truncate(self.text, self.limit))
    }
}

pub(super) struct Hex64(pub(super) u64);
impl Serialize for Hex64 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = hex::<16>(u128::from(self.0));
        s.serialize_str(std::str::from_utf8(&h).unwrap_or_default())
    }
}

pub(super) struct Hex128(pub(super) u128);
impl Serialize for Hex128 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let h = hex::<32>(self.0);
        s.serialize_str(std::str::from_utf8(&h).unwrap_or_default())
    }
}

/// Label keys may not contain `.`, `*` or `"` (the spec replaces them with `_`).
pub(crate) fn label_key(key: &str) -> Cow<'_, str> {
    // Byte by byte: a set of `char`s is searched through the generic pattern, several times
    // the instructions for the short keys labels have.
    if key.bytes().any(|b| matches!(b, b'.' | b'*' | b'"')) {
        Cow::Owned(key.replace(['.', '*', '"'], "_"))
    } else {
        Cow::Borrowed(key)
    }
}

pub(super) struct LabelsView<'a>(pub(super) &'a Labels);
impl Serialize for LabelsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            let k = label_key(k);
            let k = truncate(&k, KEYWORD_LIMIT);
            match v {
                LabelValue::Str(v) => m.serialize_entry(&*k, &Kw(v))?,
                LabelValue::Number(n) if n.is_finite() => m.serialize_entry(&*k, n)?,
                LabelValue::Number(_) => m.serialize_entry(&*k, &())?,
                LabelValue::Bool(b) => m.serialize_entry(&*k, b)?,
            }
        }
        m.end()
    }
}

/// `{"<key>":<value>}` and a newline: one NDJSON line, through serde.
pub(super) fn write_line<W: Write>(out: &mut W, key: &str, value: &impl Serialize) -> io::Result<()> {
    out.write_all(b"{\"")?;
    out.write_all(key.as_bytes())?;
    out.write_all(b"\":")?;
    serde_json::to_writer(&mut *out, value).map_err(io::Error::other)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_are_sanitised() {
        assert_eq!(label_key("a.b*c\"d"), "a_b_c_d");
        assert_eq!(label_key("plain"), "plain");
    }
}
