//! Hand-written JSON for the fields every span has (ids, names, timestamps, durations): the
//! transport writes millions of them a second, and going through serde's generic machinery
//! cost more than all the rest of the pipeline (compression included).

use crate::types::ids;
use crate::types::meta::PLAIN_MAX_BYTES;
use crate::util::text::{truncate, KEYWORD_LIMIT};

const HEX: &[u8; 16] = b"0123456789abcdef";

// A call site's `plain` texts (`types/meta.rs`) are copied without counting their characters.
const _: () = assert!(PLAIN_MAX_BYTES == KEYWORD_LIMIT);

/// `"` + the lowercase hex of `v`'s low `N * 4` bits + `"` (`N` a multiple of 8).
#[inline]
pub(crate) fn hex<const N: usize>(out: &mut Vec<u8>, v: u128) {
    out.reserve(N + 2);
    out.push(b'"');
    out.extend_from_slice(&ids::hex::<N>(v));
    out.push(b'"');
}

/// The hex of `v` (`N` digits) written over a line's template at `at` (see [`after`]): a
/// line's ids at fixed places, the line's start copied once instead of written field by field.
#[inline]
pub(crate) fn hex_at<const N: usize, const L: usize>(line: &mut [u8; L], at: usize, v: u128) {
    line[at..at + N].copy_from_slice(&ids::hex::<N>(v));
}

/// Where a template's field begins: the position just after the first `key` in `template`
/// (at compile time: a key not in the template does not build).
pub(crate) const fn after(template: &[u8], key: &[u8]) -> usize {
    let mut at = 0;
    while at + key.len() <= template.len() {
        let mut i = 0;
        while i < key.len() && template[at + i] == key[i] {
            i += 1;
        }
        if i == key.len() {
            return at + i;
        }
        at += 1;
    }
    panic!("the key is not in the template")
}

/// A JSON string of `text` cut to `limit` characters.
#[inline]
pub(crate) fn string(out: &mut Vec<u8>, text: &str, limit: usize) {
    // No more bytes than `limit`, so no more characters: nothing to cut (most fields), and no
    // call to find that out.
    if text.len() <= limit {
        escaped(out, text);
    } else {
        escaped(out, &truncate(text, limit));
    }
}

/// A JSON string of a keyword `text`; `plain`: known to need no escaping and to fit the
/// keyword limit (a call site's static name, checked when it was compiled), so copied as it is.
#[inline]
pub(crate) fn keyword(out: &mut Vec<u8>, text: &str, plain: bool) {
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        string(out, text, KEYWORD_LIMIT);
    }
}

/// A JSON string of `text`, escaped.
#[inline]
fn escaped(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    if bytes.len() < 8 {
        let word = short_word(bytes);
        if escape_mask(word) == 0 {
            // A short name or type, the usual case: written as one word cut to its length,
            // where it is called (a call's saving of registers cost as much).
            out.reserve(10);
            out.push(b'"');
            out.extend_from_slice(&word.to_le_bytes());
            out.truncate(out.len() - (8 - bytes.len()));
            out.push(b'"');
            return;
        }
    }
    escaped_any(out, text);
}

#[inline(never)]
fn escaped_any(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    // Room for the text as it is (the usual case) reserved at once, not grown piece by piece.
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut clean = 0;
    while let Some(found) = first_to_escape(&bytes[clean..]) {
        let at = clean + found;
        out.extend_from_slice(&bytes[clean..at]);
        let b = bytes[at];
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]),
        }
        clean = at + 1;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

/// The position of the first byte of `bytes` that needs escaping
/// ([`needs_json_escape`](crate::types::meta::needs_json_escape)), looked for eight bytes at a
/// time (names, URLs and statements are mostly long runs with nothing to escape: a test per
/// byte was most of what writing them cost).
#[inline]
fn first_to_escape(bytes: &[u8]) -> Option<usize> {
    let word_at = |at: usize| {
        let word: [u8; 8] = bytes[at..at + 8].try_into().unwrap_or_default();
        let mask = escape_mask(u64::from_le_bytes(word));
        (mask != 0).then(|| at + (mask.trailing_zeros() / 8) as usize)
    };
    let len = bytes.len();
    if len < 8 {
        // One word too: short names and types are most of what is escaped, and a test per
        // byte cost more than the word's.
        let mask = escape_mask(short_word(bytes));
        return (mask != 0).then_some((mask.trailing_zeros() / 8) as usize);
    }
    let mut at = 0;
    while at + 8 <= len {
        if let Some(found) = word_at(at) {
            return Some(found);
        }
        at += 8;
    }
    // The last bytes, in a word that overlaps the one before (whose bytes had none).
    if at < len {
        return word_at(len - 8);
    }
    None
}

/// The bytes of `bytes` (fewer than eight) as one word, the first byte the lowest, spaces
/// after them (a space needs no escaping): read in at most two loads, without a copy loop or a
/// library call. Two overlapping loads carry the same bytes where they overlap.
#[inline]
fn short_word(bytes: &[u8]) -> u64 {
    const SPACES: u64 = 0x2020_2020_2020_2020;
    let len = bytes.len();
    debug_assert!(len < 8);
    let four = |at: usize| {
        let b: [u8; 4] = bytes[at..at + 4].try_into().unwrap_or_default();
        u64::from(u32::from_le_bytes(b))
    };
    let word = match len {
        0 => 0,
        1..=3 => {
            u64::from(bytes[0])
                | (u64::from(bytes[len / 2]) << (len / 2 * 8))
                | (u64::from(bytes[len - 1]) << ((len - 1) * 8))
        }
        _ => four(0) | (four(len - 4) << ((len - 4) * 8)),
    };
    word | SPACES.checked_shl(len as u32 * 8).unwrap_or(0)
}

/// The high bit set in each byte of `word` (its first byte the lowest) that needs escaping, and
/// possibly in bytes above such a byte, never below: the lowest bit set marks the first one.
#[inline]
fn escape_mask(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bytes below 0x20 (a byte of 0x80 or more, part of a wider character, never counts).
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    control | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

/// An unsigned integer in decimal.
///
/// Written eight digits at a time as whole words: formatting into a buffer and copying the
/// digits out cost a library call per number, whose loads waited for the buffer's byte stores
/// (about a tenth of the transport thread's time in a profile: a span has a timestamp and a
/// duration).
///
/// Up to sixteen digits (counts, durations, timestamps) inlined where it is called: as a call,
/// saving and restoring registers cost about as much as the digits.
#[inline(always)]
pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
    if v < 10 {
        // Counts, and the whole milliseconds of most durations.
        out.push(b'0' + v as u8);
    } else if v < E8 {
        leading(out, v as u32);
    } else if v < E8 * E8 {
        out.reserve(16);
        leading(out, (v / E8) as u32);
        eight(out, (v % E8) as u32);
    } else {
        uint_wide(out, v);
    }
}

/// [`uint`] of seventeen digits or more.
#[inline(never)]
fn uint_wide(out: &mut Vec<u8>, v: u64) {
    let rest = v % (E8 * E8);
    leading(out, (v / (E8 * E8)) as u32);
    eight(out, (rest / E8) as u32);
    eight(out, (rest % E8) as u32);
}

/// Nanoseconds as milliseconds, exactly (up to six decimals, trailing zeros left out), as the
/// intake's `duration` fields want them.
#[inline]
pub(crate) fn millis(out: &mut Vec<u8>, nanos: u64) {
    fixed::<6>(out, nanos);
}

/// A fixed-point number with four decimals (`v` / 10 000), trailing zeros left out.
#[inline]
pub(crate) fn fixed4(out: &mut Vec<u8>, v: u16) {
    fixed::<4>(out, u64::from(v));
}

const E8: u64 = 100_000_000;
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// `v` / 10^`DECIMALS` with `DECIMALS` (at most 7) decimals, trailing zeros left out.
#[inline]
fn fixed<const DECIMALS: u32>(out: &mut Vec<u8>, v: u64) {
    let scale = 10u64.pow(DECIMALS);
    uint(out, v / scale);
    let fraction = (v % scale) as u32;
    if fraction != 0 {
        // The fraction's digits are the last `DECIMALS` of eight: the padding shifted out,
        // so the bytes above them are zero.
        let digits = decimal8(fraction) >> ((8 - DECIMALS) * 8);
        let trailing_zeros = digits.leading_zeros() / 8 - (8 - DECIMALS);
        let word = ((digits + ASCII_ZEROS) << 8) | u64::from(b'.');
        out.extend_from_slice(&word.to_le_bytes());
        out.truncate(out.len() - (8 - 1 - (DECIMALS - trailing_zeros)) as usize);
    }
}

/// `v` (below 10^8) in decimal without its leading zeros ("0" for zero).
#[inline]
fn leading(out: &mut Vec<u8>, v: u32) {
    let digits = decimal8(v);
    // The first digit is the lowest byte: leading zeros are the low bytes that are zero.
    let zeros = (digits.trailing_zeros() / 8).min(7);
    out.extend_from_slice(&((digits + ASCII_ZEROS) >> (zeros * 8)).to_le_bytes());
    out.truncate(out.len() - zeros as usize);
}

/// `v` (below 10^8) as eight decimal digits, leading zeros kept.
#[inline]
fn eight(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&(decimal8(v) + ASCII_ZEROS).to_le_bytes());
}

/// The eight decimal digits of `v` (below 10^8) as the bytes of one word, the most significant
/// digit in the lowest byte (first in memory), each byte 0 to 9. Each step splits every lane
/// of the word in two by a division done as a multiplication and a shift, exact in the range
/// a lane holds (as `hex8`, all lanes at once).
#[inline]
fn decimal8(v: u32) -> u64 {
    debug_assert!(u64::from(v) < E8);
    let v = u64::from(v);
    // Two lanes of 32 bits: the first four digits low, the last four high.
    let x = (v / 10_000) | ((v % 10_000) << 32);
    // Four lanes of 16 bits: each lane / 100 (as × 10 486 >> 20, exact below 43 699) low,
    // the remainder high.
    let hundreds = ((x * 10_486) >> 20) & 0x0000_007f_0000_007f;
    let x = hundreds | ((x - hundreds * 100) << 16);
    // Eight bytes: each lane / 10 (as × 103 >> 10, exact below 179) low, the remainder high.
    let tens = ((x * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | ((x - tens * 10) << 8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::meta::needs_json_escape;

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
    fn every_character_in_every_position_is_written_back_as_it_was() {
        // Each character below 0x80 and some wider ones, at each position of a string.
        let specials: Vec<char> = (0u8..0x80)
            .map(char::from)
            .chain(['é', '✓', '🦀'])
            .collect();
        for c in specials {
            for at in 0..20 {
                let mut text: String = "abcdefghijklmnopqrst".chars().take(at).collect();
                text.push(c);
                text.push_str("uvwxyz0123456789");
                let ours = s(|o| string(o, &text, 1024));
                // serde_json writes `\b` and `\f` where this writes `\u0008` and `\u000c`.
                let back: String = serde_json::from_str(&ours).expect("valid JSON");
                assert_eq!(back, text);
            }
        }
    }

    #[test]
    fn short_strings_are_written_as_serde_json_writes_them() {
        // Every length below a word, each character below 0x80 and a wider one at every
        // position, the other bytes plain.
        for len in 0..8 {
            assert_eq!(
                s(|o| string(o, &"a".repeat(len), 1024)),
                format!("\"{}\"", "a".repeat(len))
            );
            for at in 0..len {
                for c in (0u8..0x80).map(char::from).chain(['é']) {
                    let mut text: String = "abcdefg".chars().take(len).collect();
                    text.replace_range(at..=at, c.encode_utf8(&mut [0; 4]));
                    let ours = s(|o| string(o, &text, 1024));
                    let back: String = serde_json::from_str(&ours).expect("valid JSON");
                    assert_eq!(back, text, "{ours}");
                    if !c.is_control() {
                        assert_eq!(ours, serde_json::to_string(&text).expect("json"));
                    }
                }
            }
        }
    }

    #[test]
    fn a_plain_keyword_is_written_as_a_checked_one_is() {
        for text in ["plain", "", "unicode é ✓ 🦀", "orders::load_order"] {
            assert_eq!(
                s(|o| keyword(o, text, true)),
                s(|o| keyword(o, text, false)),
                "{text:?}"
            );
        }
        // Not plain: escaped and cut.
        assert_eq!(s(|o| keyword(o, "a\"b", false)), r#""a\"b""#);
        let long = "x".repeat(KEYWORD_LIMIT + 5);
        let back: String = serde_json::from_str(&s(|o| keyword(o, &long, false))).expect("valid");
        assert_eq!(back.chars().count(), KEYWORD_LIMIT);
    }

    #[test]
    fn the_first_byte_to_escape_is_found_in_every_position_among_any_neighbours() {
        // Every byte value at every position of strings of 1 to 24 bytes, after bytes that
        // need no escaping and before ones that may (a borrow may only mark bytes above).
        for len in 1..=24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for after in [b'a', 0x00, b'"', 0xff] {
                        let mut bytes = vec![b'x'; len];
                        bytes[at] = b;
                        for later in &mut bytes[at + 1..] {
                            *later = after;
                        }
                        let expected = bytes.iter().position(|&c| needs_json_escape(c));
                        assert_eq!(first_to_escape(&bytes), expected, "{bytes:?}");
                    }
                }
            }
        }
        assert_eq!(first_to_escape(b""), None);
    }

    #[test]
    fn long_strings_are_cut_by_characters() {
        let text = "é".repeat(1500);
        let ours = s(|o| string(o, &text, 1024));
        let back: String = serde_json::from_str(&ours).expect("valid");
        assert_eq!(back.chars().count(), 1024);
        assert!(back.ends_with('…'));
    }

    /// `v` / 10^`decimals` as the old formatter wrote it: trailing zeros of the fraction left out.
    fn fixed_reference(v: u64, decimals: u32) -> String {
        let scale = 10u64.pow(decimals);
        let fraction = v % scale;
        if fraction == 0 {
            return (v / scale).to_string();
        }
        let digits = format!("{fraction:0width$}", width = decimals as usize);
        format!("{}.{}", v / scale, digits.trim_end_matches('0'))
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
        // Against the standard formatter: every number of digits, each power of ten and its
        // neighbours, and a spread of values of every bit length.
        let mut values: Vec<u64> = vec![0, 1, 9, u64::MAX, u64::MAX - 1];
        for p in 1..=19 {
            let ten = 10u64.pow(p);
            values.extend([ten - 1, ten, ten + 1, ten / 2, ten / 10 * 9 + 7]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for bits in 1..=64 {
            for _ in 0..200 {
                x = x.rotate_left(17) ^ x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
                values.push(x >> (64 - bits));
            }
        }
        for &v in &values {
            assert_eq!(s(|o| uint(o, v)), v.to_string(), "{v}");
            assert_eq!(s(|o| millis(o, v)), fixed_reference(v, 6), "{v}");
        }
        for v in 0..=u16::MAX {
            assert_eq!(s(|o| fixed4(o, v)), fixed_reference(u64::from(v), 4), "{v}");
        }
        for v in (0..100_000).chain((0..E8 as u32).step_by(9973)) {
            assert_eq!(s(|o| eight(o, v)), format!("{v:08}"), "{v}");
        }
        // Against the float formatting they stand for, over every number of leading and
        // trailing zeros.
        for nanos in (0..2_000_000u64)
            .step_by(997)
            .chain((0..=6).map(|z| 10u64.pow(z) * 7))
        {
            let ms: f64 = s(|o| millis(o, nanos)).parse().expect("a number");
            assert_eq!(ms, nanos as f64 / 1e6, "{nanos}");
        }
        assert_eq!(s(|o| hex::<16>(o, 0xab)), "\"00000000000000ab\"");
        // Against the standard formatter, over every digit value in every position.
        let mut v: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        for _ in 0..1000 {
            assert_eq!(s(|o| hex::<32>(o, v)), format!("\"{v:032x}\""));
            assert_eq!(s(|o| hex::<16>(o, v)), format!("\"{:016x}\"", v as u64));
            v = v.rotate_left(7) ^ v.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        assert_eq!(
            s(|o| hex::<32>(o, u128::MAX)),
            format!("\"{}\"", "f".repeat(32))
        );
    }
}
