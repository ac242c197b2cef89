#!/usr/bin/env bash
# Regenerates the table of BENCHMARKS.md: both runs (agent compiled in, compiled out), the
# median of each variant, and its ratio to the bare function of the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
table() {
    awk '
        /^span\// { name = $1; sub(/^span\//, "", name); if (NF == 1) { pending = name; next } }
        /time:/ {
            if (pending != "") { name = pending; pending = "" }
            for (i = 1; i <= NF; i++) if ($i == "time:") t = i
            v = $(t + 3); u = $(t + 4)
            ns = (u == "ps") ? v / 1000 : (u == "µs" || u == "us") ? v * 1000 : v
            if (name == "bare") bare = ns
            printf "| %s | %.2f | %.1f× |\n", name, ns, (bare > 0 ? ns / bare : 1)
        }'
}
echo "| variant | median ns/call | × bare |"
echo "|---|---:|---:|"
cargo bench -p apm-benches 2>/dev/null | table
cargo bench -p apm-benches --no-default-features 2>/dev/null | table | grep -v '^| bare '
