#!/usr/bin/env bash
# Instructions per request that the agent adds to the service of benches/service.rs
# (BENCHMARKS.md §11f): serves its `bare` and its `apm` variant in turn under callgrind, each
# loaded by wrk for the same time and sending to apm-server-local, then prints, per thread
# kind, the instructions per request answered, and the symbols of the runtime's workers whose
# instructions per request differ most between the two (exclusive counts). Instruction
# counts do not move with the machine's load as times do.
#
# Needs valgrind and wrk. Usage: benches/profile-service.sh [SECONDS] (default 20); the
# callgrind files stay in target/profile-service (under $CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
target=${CARGO_TARGET_DIR:-target}
out=$target/profile-service
rm -rf "$out" && mkdir -p "$out"

cargo build -q --release -p apm-server-local
service=$(cargo bench -p apm-benches --bench service --no-run 2>&1 |
    sed -n 's/.*Executable benches\/service.rs (\(.*\))/\1/p')
[ -x "$service" ] || { echo "profile-service: no service bench binary" >&2; exit 1; }

# Waits until FILE has a line starting with PREFIX, and prints the rest of it.
await_line() {
    local file=$1 prefix=$2
    for _ in $(seq 600); do
        if grep -q "$prefix" "$file" 2>/dev/null; then
            sed -n "s/.*$prefix//p" "$file" | head -1
            return
        fi
        sleep 0.1
    done
    echo "profile-service: nothing said '$prefix' in $file" >&2
    exit 1
}

profile() {
    local variant=$1 dir="$out/$1"
    mkdir -p "$dir"
    "$target/release/apm-server-local" --addr 127.0.0.1:0 --no-color >/dev/null 2>"$dir/server.log" &
    local server=$!
    local url
    url=$(await_line "$dir/server.log" "listening on ")
    url=${url%% *}
    mkfifo "$dir/stdin"
    # The child serves until its standard input closes: held open by `sleep` meanwhile.
    sleep 100000 >"$dir/stdin" &
    local holder=$!
    # No stack traces: a span slowed by valgrind past 5 ms would take one, which the
    # service's steady state does not.
    ELASTIC_APM_SPAN_STACK_TRACE_MIN_DURATION=-1 valgrind --tool=callgrind --dump-instr=no \
        --separate-threads=yes --callgrind-out-file="$dir/callgrind.%p" \
        "$service" --service-child "$variant" "$url" <"$dir/stdin" >"$dir/child.log" 2>/dev/null &
    local child=$!
    local addr
    addr=$(await_line "$dir/child.log" "listening ")
    wrk -t1 -c4 -d"${seconds}s" "http://$addr/" >"$dir/wrk.log"
    kill "$holder"
    wait "$child" || true
    kill "$server"
    wait "$server" 2>/dev/null || true
    awk '/requests in/ { print $1 }' "$dir/wrk.log" >"$dir/requests"
}

# A thread's kind, from the functions its callgrind file names.
thread_kind() {
    if grep -q 'Transport::run' "$1"; then echo transport
    elif grep -q 'multi_thread::worker' "$1"; then echo workers
    else echo other
    fi
}

# Exclusive instructions per request by symbol, over the files given (one line a symbol).
symbols() {
    local requests=$1
    shift
    for f in "$@"; do callgrind_annotate --auto=no --threshold=100 "$f"; done |
        awk -v n="$requests" '
            /^ *[0-9,]+ \( *[0-9.]+%\)  / && !/PROGRAM TOTALS/ {
                count = $1; gsub(",", "", count)
                sub(/^ *[0-9,]+ \( *[0-9.]+%\)  /, "")
                sub(/ \[[^]]*\]$/, "")
                sub(/^[^ ]*\.(rs|c|S|h):/, "")
                sum[$0] += count
            }
            END { for (s in sum) printf "%.1f\t%s\n", sum[s] / n, s }'
}

for variant in bare apm; do
    profile "$variant"
done

echo "instructions per request answered (callgrind, wrk -t1 -c4 -d${seconds}s)"
for variant in bare apm; do
    dir="$out/$variant"
    requests=$(cat "$dir/requests")
    declare -A total=()
    for f in "$dir"/callgrind.*-*; do
        kind=$(thread_kind "$f")
        n=$(awk '/^totals:/ { print $2; exit }' "$f")
        total[$kind]=$(( ${total[$kind]:-0} + n ))
    done
    printf '%-5s %8s requests:' "$variant" "$requests"
    for kind in workers transport other; do
        awk -v k="$kind" -v t="${total[$kind]:-0}" -v n="$requests" \
            'BEGIN { printf "  %s %.0f", k, t / n }'
    done
    echo
    workers=()
    for f in "$dir"/callgrind.*-*; do
        [ "$(thread_kind "$f")" = workers ] && workers+=("$f")
    done
    symbols "$requests" "${workers[@]}" | sort -t$'\t' -k2 >"$dir/workers.tsv"
    unset total
done

echo
echo "the workers' symbols that differ most (instructions per request: bare, apm, difference)"
join -t$'\t' -1 2 -2 2 -a 1 -a 2 -e 0 -o 0,1.1,2.1 "$out/bare/workers.tsv" "$out/apm/workers.tsv" |
    awk -F'\t' '{ d = $3 - $2; printf "%9.0f %9.0f %+8.0f  %s\n", $2, $3, d, substr($1, 1, 110) }' |
    sort -k3 -g -r | awk 'NR <= 30'
