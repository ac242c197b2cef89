#!/usr/bin/env bash
# Runs every fuzz target for a fixed number of executions, outside CI's test command:
#   fuzz/run.sh                 # each target, RUNS executions (default 1 000 000)
#   RUNS=50000 fuzz/run.sh sql  # one target
# The corpus grows in fuzz/corpus/<target> (not committed), from the seeds in
# fuzz/seeds/<target>. A crash leaves its input in fuzz/artifacts/<target>/: fix the bug, then
# keep the input in fuzz/regressions/<target>/, which the unit tests replay.
# libFuzzer and AddressSanitizer need unstable compiler flags: on a stable toolchain,
# RUSTC_BOOTSTRAP=1 allows them for this build only.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
runs=${RUNS:-1000000}
targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: $runs executions"
    cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -runs="$runs" -max_len=4096 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 |
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ *DONE)|ERROR|panicked|SUMMARY' || true
    if [ -n "$(ls -A "artifacts/$target" 2>/dev/null)" ]; then
        echo "== $target: crash inputs in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
