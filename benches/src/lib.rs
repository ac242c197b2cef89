//! Shared pieces of the benchmarks (see `benches/span.rs` and `BENCHMARKS.md`).
