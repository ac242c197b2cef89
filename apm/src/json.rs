//! Hand-written JSON for the fields every span has (ids, names, timestamps, durations): the
//! transport writes millions of them a second, and going through serde's generic machinery
//! cost more than all the rest of the pipeline (compression included).

use crate::model::truncate;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `"` + the lowercase hex of `v`'s low `N * 4` bits + `"`.
#[inline]
pub(crate) fn hex<const N: usize>(out: &mut Vec<u8>, v: u128) {
    let mut buf = [0u8; 34];
    buf[0] = b'"';
    for i in 0..N {
        buf[N - i] = HEX[((v >> (i * 4)) & 0xf) as usize];
    }
    buf[N + 1] = b'"';
    out.extend_from_slice(&buf[..N + 2]);
}

/// A JSON string of `text` cut to `limit` characters.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, text: &str, limit: usize) {
    // A string of at most `limit` bytes has at most `limit` characters: no counting needed.
    if text.len() <= limit {
        escaped(out, text);
    } else {
        escaped(out, &truncate(text, limit));
    }
}

fn escaped(out: &mut Vec<u8>, text: &str) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut clean = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[clean..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                clean = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[clean..i]);
        out.extend_from_slice(escape);
        clean = i + 1;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

/// An unsigned integer in decimal.
#[inline]
pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// Nanoseconds as milliseconds, exactly (up to six decimals, trailing zeros left out), as the
/// intake's `duration` fields want them.
#[inline]
pub(crate) fn millis(out: &mut Vec<u8>, nanos: u64) {
    fixed::<6>(out, nanos, 1_000_000);
}

/// A fixed-point number with four decimals (`v` / 10 000), trailing zeros left out.
#[inline]
pub(crate) fn fixed4(out: &mut Vec<u8>, v: u16) {
    fixed::<4>(out, u64::from(v), 10_000);
}

/// `v / scale` with `DECIMALS` decimals (`scale` = 10^`DECIMALS`), trailing zeros left out.
#[inline]
fn fixed<const DECIMALS: usize>(out: &mut Vec<u8>, v: u64, scale: u64) {
    uint(out, v / scale);
    let mut frac = v % scale;
    if frac != 0 {
        let mut digits = [b'0'; 7];
        digits[0] = b'.';
        for d in digits[1..=DECIMALS].iter_mut().rev() {
            *d = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        let end = digits[..=DECIMALS]
            .iter()
            .rposition(|&d| d != b'0')
            .map_or(1, |i| i + 1);
        out.extend_from_slice(&digits[..end]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn strings_are_escaped_as_serde_json_does() {
        for text in [
            "plain",
            "",
            "quote \" backslash \\ newline \n tab \t cr \r",
            "control \u{1} \u{1f} end",
            "unicode é ✓ 🦀",
        ] {
            let ours = s(|o| string(o, text, 1024));
            assert_eq!(ours, serde_json::to_string(text).expect("json"), "{text:?}");
            assert_eq!(serde_json::from_str::<String>(&ours).expect("valid"), text);
        }
    }

    #[test]
    fn long_strings_are_cut_by_characters() {
        let text = "é".repeat(1500);
        let ours = s(|o| string(o, &text, 1024));
        let back: String = serde_json::from_str(&ours).expect("valid");
        assert_eq!(back.chars().count(), 1024);
        assert!(back.ends_with('…'));
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| uint(o, 0)), "0");
        assert_eq!(s(|o| uint(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| uint(o, 1_700_000_000_123_456)), "1700000000123456");
        assert_eq!(s(|o| millis(o, 0)), "0");
        assert_eq!(s(|o| millis(o, 999)), "0.000999");
        assert_eq!(s(|o| millis(o, 1_234_567)), "1.234567");
        assert_eq!(s(|o| millis(o, 12_000_000)), "12");
        assert_eq!(s(|o| millis(o, 5_007_000)), "5.007");
        assert_eq!(s(|o| millis(o, 40)), "0.00004");
        assert_eq!(s(|o| fixed4(o, 10_000)), "1");
        assert_eq!(s(|o| fixed4(o, 5_000)), "0.5");
        assert_eq!(s(|o| fixed4(o, 1)), "0.0001");
        assert_eq!(s(|o| fixed4(o, 0)), "0");
        assert_eq!(s(|o| hex::<16>(o, 0xab)), "\"00000000000000ab\"");
        assert_eq!(
            s(|o| hex::<32>(o, u128::MAX)),
            format!("\"{}\"", "f".repeat(32))
        );
    }
}
