#!/usr/bin/env bash
# Regenerates the tables of BENCHMARKS.md, in this order:
#   1. one instrumented call by agent state (criterion; agent compiled in, then compiled out);
#   2. the race against the other Rust tracers and the cost curve (benches/peers.rs);
#   3. transport throughput (benches/transport.rs);
#   4. the soak with the APM Server healthy, down and slow (benches/soak.rs);
#   6. a traced database query against the same query untraced (benches/db.rs).
# Run it on an otherwise idle machine; compare ratios within one run.
set -euo pipefail
cd "$(dirname "$0")/.."
criterion_table() {
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
echo "## one call by agent state (criterion medians)"
echo
echo "| variant | median ns/call | × bare |"
echo "|---|---:|---:|"
cargo bench -p apm-benches --bench span 2>/dev/null | criterion_table
cargo bench -p apm-benches --bench span --no-default-features 2>/dev/null | criterion_table | grep -v '^| bare '
cargo bench -p apm-benches --bench peers 2>/dev/null | grep -v '^\s*$' | sed 's/^## /\n## /'
cargo bench -p apm-benches --bench transport 2>/dev/null | grep -v '^\s*$' | sed 's/^## /\n## /'
cargo bench -p apm-benches --bench soak 2>/dev/null | grep -v '^\s*$' | sed 's/^## /\n## /'
cargo bench -p apm-benches --bench db 2>/dev/null | grep -E '^(## |\| )' | sed 's/^## /\n## /'
cargo bench -p apm-benches --bench messaging 2>/dev/null | grep -E '^(## |\| )' | sed 's/^## /\n## /'
