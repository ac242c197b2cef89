//! Placeholder: the soak benchmark (10 M spans with the APM Server down, then slow).

fn main() {}
