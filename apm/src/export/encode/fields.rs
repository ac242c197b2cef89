//! Serde views shared by the event writers: keyword and long text fields (cut as the spec
//! says), hex ids, labels; and the line every event is written as.

use std::borrow::Cow;
use std::io::{self, Write};

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::json;
use crate::types::ids::hex;
use crate::types::outcome::LabelValue;
use crate::types::span_context::Labels;
use crate::util::text::{truncate, KEYWORD_LIMIT};

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

pub(super) struct LabelsView<'a>(pub(super) &'a [(Cow<'static, str>, LabelValue)]);
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

/// The labels as [`LabelsView`] serialises them, written by hand: a span's labels (a bridged
/// span's fields) were, through serde, about a third of what writing its line cost.
pub(super) fn write_labels(out: &mut Vec<u8>, labels: &Labels) -> io::Result<()> {
    out.push(b'{');
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::keyword(out, &label_key(key), false);
        out.push(b':');
        match value {
            LabelValue::Str(text) => json::keyword(out, text, false),
            LabelValue::Number(n) => number(out, *n)?,
            LabelValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        }
    }
    out.push(b'}');
    Ok(())
}

/// A label's number as serde writes it (`null` when not finite). A whole one (a count, an
/// id: most of them) is written as an integer and `.0`, which is what serde writes for it,
/// without formatting a float.
fn number(out: &mut Vec<u8>, n: f64) -> io::Result<()> {
    if n.fract() == 0.0 && n.abs() < WHOLE_MAX {
        if n.is_sign_negative() {
            out.push(b'-');
        }
        json::uint(out, n.abs() as u64);
        out.extend_from_slice(b".0");
    } else if n.is_finite() {
        serde_json::to_writer(&mut *out, &n).map_err(io::Error::other)?;
    } else {
        out.extend_from_slice(b"null");
    }
    Ok(())
}

/// Whole numbers below this are written as integers with `.0` by serde too (above, in
/// exponent notation).
const WHOLE_MAX: f64 = 1e15;

/// `{"<key>":<value>}` and a newline: one NDJSON line, through serde.
pub(super) fn write_line<W: Write>(
    out: &mut W,
    key: &str,
    value: &impl Serialize,
) -> io::Result<()> {
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

    #[test]
    fn labels_written_by_hand_are_what_serde_writes() {
        let labels: Labels = vec![
            (
                Cow::Borrowed("plain"),
                LabelValue::Str(Cow::Borrowed("value")),
            ),
            (
                Cow::Borrowed("a.b*c\"d"),
                LabelValue::Str(Cow::Borrowed("q\"\\\n\t\u{1}é")),
            ),
            (
                Cow::Owned("long".repeat(400)),
                LabelValue::Str(Cow::Owned("é".repeat(2000))),
            ),
            (Cow::Borrowed("int"), LabelValue::Number(42.0)),
            (Cow::Borrowed("frac"), LabelValue::Number(-0.125)),
            (Cow::Borrowed("big"), LabelValue::Number(1e300)),
            (Cow::Borrowed("nan"), LabelValue::Number(f64::NAN)),
            (Cow::Borrowed("inf"), LabelValue::Number(f64::INFINITY)),
            (Cow::Borrowed("yes"), LabelValue::Bool(true)),
            (Cow::Borrowed("no"), LabelValue::Bool(false)),
        ];
        for labels in [labels.clone(), labels[..1].to_vec(), Vec::new()] {
            let mut by_hand = Vec::new();
            write_labels(&mut by_hand, &labels).expect("written");
            let by_hand: serde_json::Value = serde_json::from_slice(&by_hand).expect("JSON");
            let by_serde = serde_json::to_value(LabelsView(&labels)).expect("serialised");
            assert_eq!(by_hand, by_serde);
        }
    }

    #[test]
    fn whole_numbers_are_written_as_serde_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            7.0,
            1e14,
            999_999_999_999_999.0,
            -1e14,
        ];
        values.extend((0..15).map(|e| 10f64.powi(e)));
        values.extend((0..1000).map(|i| f64::from(i) * 12_345.0 - 6_000_000.0));
        values.extend([0.5, -0.125, 1e15, 1e16, 1e300, f64::NAN, f64::INFINITY]);
        for n in values {
            let mut by_hand = Vec::new();
            number(&mut by_hand, n).expect("written");
            let by_serde = if n.is_finite() {
                serde_json::to_string(&n).expect("serialised")
            } else {
                "null".to_owned()
            };
            assert_eq!(String::from_utf8(by_hand).expect("UTF-8"), by_serde, "{n}");
        }
    }
}
