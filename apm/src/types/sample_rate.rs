//! Sample rates as the spec writes them: at most four decimals. Records carry them as integers
//! (the rate × 10 000), which a `u16` holds.

/// `sample_rate` of a continued trace whose root did not propagate one: not sent.
pub(crate) const UNKNOWN_RATE: u16 = u16::MAX;

/// A rate as text with at most four decimals and no trailing zeros (`0.5`, `1`, `0.1235`).
pub(crate) fn format(rate: f64) -> String {
    format!("{}", (rate.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0)
}

/// A rate as stored (× 10 000), from a rate already rounded to four decimals.
pub(crate) fn to_fixed(rate: f64) -> u16 {
    (rate.clamp(0.0, 1.0) * 10_000.0).round() as u16
}
