//! Pure parsers for the value formats Elastic defines (specs/agents/configuration.md, "Configuration
//! Value Types"). Environment variables, builder values and central configuration all go through
//! these, so one string means the same thing wherever it comes from.
//!
//! Each parser returns the value or the text of a warning (`invalid duration "x" (expected ...)`);
//! the caller adds which option and which fallback value.

use std::time::Duration;

/// The unit a duration written without a suffix is read in (a legacy form, see
/// [`is_bare_number`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Millis,
    Secs,
}

/// Parses a `Duration` (`10s`, `500ms`, `1m`; suffixes case-insensitive). A bare number is read
/// in `default_unit`. Negative values and `us` are rejected.
pub(crate) fn parse_duration(text: &str, default_unit: Unit) -> Result<Duration, String> {
    match parse_signed_duration(text, default_unit, false)? {
        (false, d) => Ok(d),
        (true, _) => Err(format!(
            "negative duration {:?} is not allowed",
            text.trim()
        )),
    }
}

/// Parses a `GranularDuration`: like [`parse_duration`] but also accepts `us` (microseconds),
/// which the spec allows for `exit_span_min_duration`.
pub(crate) fn parse_granular_duration(text: &str, default_unit: Unit) -> Result<Duration, String> {
    match parse_signed_duration(text, default_unit, true)? {
        (false, d) => Ok(d),
        (true, _) => Err(format!(
            "negative duration {:?} is not allowed",
            text.trim()
        )),
    }
}

/// Parses a duration that may be negative (the spec's regex `^(-)?(\d+)(ms|s|m)$`); returns
/// `(negative, magnitude)`. `-0ms` is not negative.
pub(crate) fn parse_signed_duration(
    text: &str,
    default_unit: Unit,
    granular: bool,
) -> Result<(bool, Duration), String> {
    let expected = if granular {
        r#"(expected e.g. "10s", "500ms", "100us")"#
    } else {
        r#"(expected e.g. "10s", "500ms")"#
    };
    let invalid = || format!("invalid duration {:?} {expected}", text.trim());
    let trimmed = text.trim();
    let (negative, unsigned) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let split = unsigned
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unsigned.len());
    let (digits, suffix) = unsigned.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let suffix = suffix.to_ascii_lowercase();
    let duration = match suffix.as_str() {
        "" => match default_unit {
            Unit::Millis => Some(Duration::from_millis(number)),
            Unit::Secs => Some(Duration::from_secs(number)),
        },
        "us" if granular => Some(Duration::from_micros(number)),
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        _ => return Err(invalid()),
    };
    let duration = duration.ok_or_else(|| format!("duration {trimmed:?} is too large"))?;
    Ok((negative && !duration.is_zero(), duration))
}

/// Parses a `Size` in bytes: `100b`, `768kb`, `1mb`, `2gb` (1024 between units,
/// case-insensitive). A bare number is bytes.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let invalid = || format!(r#"invalid size {trimmed:?} (expected e.g. "768kb", "1mb", "100b")"#);
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, suffix) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(invalid());
    }
    let number: u64 = digits.parse().map_err(|_| invalid())?;
    let factor: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return Err(invalid()),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size {trimmed:?} is too large"))
}

/// Whether a duration or size was written without a unit: still accepted, but the spec asks new
/// configurations to always give one ("Duration/Size Config Legacy Considerations").
pub(crate) fn is_bare_number(text: &str) -> bool {
    let t = text.trim();
    let t = t.strip_prefix('-').unwrap_or(t);
    !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit())
}

/// Parses a `Boolean`: `true` or `false`, case-insensitive.
pub(crate) fn parse_bool(text: &str) -> Result<bool, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if t.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(format!(
            r#"invalid boolean {t:?} (expected "true" or "false")"#
        ))
    }
}

/// Parses a `List`: comma-separated, items trimmed, empty items dropped. Never fails.
pub(crate) fn parse_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(String::from)
        .collect()
}

/// Parses a `Mapping`: `key=value` pairs separated by commas, keys and values trimmed, empty
/// items dropped. An item without `=` or with an empty key makes the whole value invalid.
pub(crate) fn parse_mapping(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                pairs.push((key.trim().to_owned(), value.trim().to_owned()));
            }
            _ => {
                return Err(format!(
                    r#"invalid mapping item {item:?} (expected "key=value,key2=value2")"#
                ))
            }
        }
    }
    Ok(pairs)
}

/// Parses a whole number (`Integer` options).
pub(crate) fn parse_int<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    let t = text.trim();
    t.parse()
        .map_err(|_| format!(r#"invalid integer {t:?} (expected a whole number, e.g. "500")"#))
}

/// Parses `transaction_sample_rate`: a number in [0, 1], rounded as
/// [`round_sample_rate`] says.
pub(crate) fn parse_sample_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let rate: f64 = t
        .parse()
        .map_err(|_| format!("invalid sample rate {t:?} (expected a number between 0 and 1)"))?;
    check_sample_rate(rate)
}

/// Checks that a sample rate is within [0, 1] (NaN is not) and rounds it.
pub(crate) fn check_sample_rate(rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(round_sample_rate(rate))
    } else {
        Err(format!("sample rate {rate} out of range [0, 1]"))
    }
}

/// Rounds a sample rate in [0, 1] half away from zero to 4 decimal places; values above 0 and
/// below 0.0001 become 0.0001 (so a configured non-zero rate never turns into "never sample").
///
/// The rounding is done on the shortest decimal form of the value, not on `rate * 10000`, so
/// `0.55555` rounds to `0.5556` as written rather than as its binary approximation would.
pub(crate) fn round_sample_rate(rate: f64) -> f64 {
    if rate <= 0.0 {
        return 0.0;
    }
    if rate < 0.0001 {
        return 0.0001;
    }
    // `Display` for f64 prints the shortest string that round-trips, never in exponent form.
    let text = rate.to_string();
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut digits: u64 = whole.parse().unwrap_or(0);
    let mut scaled_fraction = 0;
    for i in 0..4 {
        let d = fraction
            .as_bytes()
            .get(i)
            .map_or(0, |b| u64::from(b - b'0'));
        scaled_fraction = scaled_fraction * 10 + d;
    }
    digits = digits * 10_000 + scaled_fraction;
    if fraction.as_bytes().get(4).is_some_and(|&b| b >= b'5') {
        digits += 1;
    }
    digits as f64 / 10_000.0
}

/// Checks `server_url`: an `http://` or `https://` URL with a host and no whitespace; returns it
/// without trailing `/` (paths are joined to it).
pub(crate) fn parse_url(text: &str) -> Result<String, String> {
    let t = text.trim();
    let invalid =
        |why: &str| format!(r#"invalid URL {t:?}: {why} (expected e.g. "http://localhost:8200")"#);
    let lower = t.to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &t[7..]
    } else if lower.starts_with("https://") {
        &t[8..]
    } else {
        return Err(invalid("the scheme must be http or https"));
    };
    if t.chars().any(char::is_whitespace) {
        return Err(invalid("it contains whitespace"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(invalid("the host is missing"));
    }
    Ok(t.trim_end_matches('/').to_owned())
}

/// Formats a duration in the largest unit that represents it exactly (`10s`, `50ms`, `1m`,
/// `100us`); zero is `0ms`.
pub(crate) fn format_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if !micros.is_multiple_of(1000) {
        format!("{micros}us")
    } else if micros == 0 || !micros.is_multiple_of(1_000_000) {
        format!("{}ms", micros / 1000)
    } else if !micros.is_multiple_of(60_000_000) {
        format!("{}s", micros / 1_000_000)
    } else {
        format!("{}m", micros / 60_000_000)
    }
}

/// Formats a size in the largest unit that represents it exactly (`768kb`, `1mb`, `100b`).
pub(crate) fn format_size(bytes: u64) -> String {
    for (factor, unit) in [(1u64 << 30, "gb"), (1 << 20, "mb"), (1 << 10, "kb")] {
        if bytes != 0 && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}b")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("10s", Unit::Secs),
            Ok(Duration::from_secs(10))
        );
        assert_eq!(parse_duration("500ms", Unit::Secs), Ok(MS(500)));
        assert_eq!(
            parse_duration("1m", Unit::Secs),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            parse_duration(" 2M ", Unit::Secs),
            Ok(Duration::from_secs(120))
        );
        assert_eq!(parse_duration("5MS", Unit::Secs), Ok(MS(5)));
        assert_eq!(parse_duration("0ms", Unit::Secs), Ok(Duration::ZERO));
        assert_eq!(parse_duration("-0ms", Unit::Secs), Ok(Duration::ZERO));
        // Bare numbers take the option's default unit.
        assert_eq!(parse_duration("7", Unit::Secs), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("7", Unit::Millis), Ok(MS(7)));
        assert!(is_bare_number("7") && is_bare_number("-1") && !is_bare_number("7s"));
        for bad in [
            "",
            "s",
            "ten seconds",
            "10 s",
            "1h",
            "1.5s",
            "10sec",
            "+1s",
            "--1s",
        ] {
            let err = parse_duration(bad, Unit::Secs).expect_err("invalid");
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
        assert_eq!(
            parse_duration("ten seconds", Unit::Secs).expect_err("invalid"),
            r#"invalid duration "ten seconds" (expected e.g. "10s", "500ms")"#
        );
        assert!(parse_duration("-1s", Unit::Secs)
            .expect_err("invalid")
            .contains("negative"));
        assert!(parse_duration("99999999999999999999s", Unit::Secs).is_err());
        assert!(parse_duration(&format!("{}m", u64::MAX), Unit::Secs)
            .expect_err("invalid")
            .contains("too large"));
    }

    #[test]
    fn microseconds_only_where_granular() {
        assert!(parse_duration("100us", Unit::Millis).is_err());
        assert_eq!(
            parse_granular_duration("100us", Unit::Millis),
            Ok(Duration::from_micros(100))
        );
        assert_eq!(
            parse_granular_duration("1US", Unit::Millis),
            Ok(Duration::from_micros(1))
        );
        assert_eq!(
            parse_signed_duration("-1ms", Unit::Millis, false),
            Ok((true, MS(1)))
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("768kb"), Ok(768 * 1024));
        assert_eq!(parse_size("1mb"), Ok(1 << 20));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("100b"), Ok(100));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size(" 1Kb "), Ok(1024));
        for bad in ["", "kb", "1tb", "1.5mb", "-1kb", "1 kb", "big"] {
            assert!(
                parse_size(bad)
                    .expect_err("invalid")
                    .starts_with("invalid size"),
                "{bad}"
            );
        }
        assert!(parse_size(&format!("{}gb", u64::MAX)).is_err());
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("true"), Ok(true));
        assert_eq!(parse_bool("FALSE"), Ok(false));
        assert_eq!(parse_bool(" True "), Ok(true));
        for bad in ["yes", "1", "", "on"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_and_mappings() {
        assert_eq!(parse_list(" a, b ,,c ,"), ["a", "b", "c"]);
        assert!(parse_list("").is_empty());
        assert!(parse_list(" , ").is_empty());
        assert_eq!(
            parse_mapping("k=v, k2 = v2 ,,empty="),
            Ok(vec![
                ("k".into(), "v".into()),
                ("k2".into(), "v2".into()),
                ("empty".into(), String::new()),
            ])
        );
        assert_eq!(parse_mapping("a=b=c"), Ok(vec![("a".into(), "b=c".into())]));
        assert!(parse_mapping("k=v,oops").is_err());
        assert!(parse_mapping("=v").is_err());
    }

    #[test]
    fn integers() {
        assert_eq!(parse_int::<u32>(" 500 "), Ok(500));
        assert!(parse_int::<u32>("-1").is_err());
        assert!(parse_int::<u32>("5e2").is_err());
        assert_eq!(parse_int::<i64>("-1"), Ok(-1));
    }

    #[test]
    fn sample_rate_rounding() {
        // Examples in the style of specs/agents/tracing-sampling.md, at 4 decimals.
        assert_eq!(parse_sample_rate("0.00001"), Ok(0.0001));
        assert_eq!(parse_sample_rate("0.00005"), Ok(0.0001));
        assert_eq!(parse_sample_rate("0.55554"), Ok(0.5555));
        assert_eq!(parse_sample_rate("0.55555"), Ok(0.5556));
        assert_eq!(parse_sample_rate("0.55556"), Ok(0.5556));
        assert_eq!(parse_sample_rate("0.99995"), Ok(1.0));
        assert_eq!(parse_sample_rate("0"), Ok(0.0));
        assert_eq!(parse_sample_rate("1"), Ok(1.0));
        assert_eq!(parse_sample_rate("0.5"), Ok(0.5));
        assert_eq!(parse_sample_rate("1e-1"), Ok(0.1));
        assert_eq!(round_sample_rate(0.12345), 0.1235);
        assert_eq!(round_sample_rate(1e-7), 0.0001);
        for bad in ["1.5", "-0.1", "NaN", "inf", "half", ""] {
            assert!(parse_sample_rate(bad).is_err(), "{bad}");
        }
        assert!(check_sample_rate(f64::NAN).is_err());
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://localhost:8200/"),
            Ok("http://localhost:8200".into())
        );
        assert_eq!(
            parse_url("HTTPS://apm.example.com//"),
            Ok("HTTPS://apm.example.com".into())
        );
        assert_eq!(
            parse_url("https://h/prefix/"),
            Ok("https://h/prefix".into())
        );
        for bad in [
            "localhost:8200",
            "ftp://h",
            "http://",
            "http:///x",
            "http://h x",
            "http://:80",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for (d, text) in [
            (Duration::from_secs(10), "10s"),
            (MS(500), "500ms"),
            (Duration::ZERO, "0ms"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_micros(1500), "1500us"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_granular_duration(text, Unit::Secs), Ok(d));
        }
        for (b, text) in [
            (768 * 1024, "768kb"),
            (1 << 20, "1mb"),
            (100, "100b"),
            (0, "0b"),
        ] {
            assert_eq!(format_size(b), text);
            assert_eq!(parse_size(text), Ok(b));
        }
    }
}
