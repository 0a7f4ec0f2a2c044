#!/usr/bin/env bash
# Two servers measured at the same time: CPU per request of one against the
# other, finer than this machine's noise allows run.sh to resolve.
#
#   benches/load/side_by_side.sh                     # b: rust against the floor, 10 rounds
#   SCENARIO=a benches/load/side_by_side.sh          # keep-alive instead of pipelined
#   A=layer B=floor benches/load/side_by_side.sh     # the two HTTP layers alone
#   A=rust B=base BASELINE=/path/to/worker-pool benches/load/side_by_side.sh
#
# Why: run.sh measures one server at a time, and this shared VM has slow
# spells that change CPU per request by 15% or more from one run to the
# next, so two servers within 5% of each other come out in either order.
# Here each round starts both servers, pinned together to CPU $SERVER_CPU,
# and loads each with its own wrk (-t1, $CONNECTIONS connections), both
# pinned to CPU $LOAD_CPU, over the same $DURATION window after a $WARMUP
# warm-up. CPU per request of each is its utime+stime over the window
# divided by the requests its wrk completed. A slow spell lands on both at
# once, and the ratio A/B of a round moves by a few percent where each
# figure alone moves by 15. Both servers share one core, so each pays for
# the other's context switches and cache misses: the ratio compares them
# under the same conditions, and the absolute figures are not run.sh's.
# Rounds alternate which server starts first.
#
# Servers: rust (target/release/worker-pool), floor and layer
# (target/release/examples/), base ($BASELINE). Scenarios: a GET /tasks/1
# keep-alive; b the same pipelined $PIPELINE deep; c POST /tasks under the
# default config. Task 1 is created in each server first.
#
# Needs cargo, wrk, taskset, curl and ss. Builds the release binary and the
# two examples first. Environment: A (rust) B (floor) SCENARIO (b) ROUNDS
# (10) DURATION (5s) WARMUP (1s) CONNECTIONS (32) PIPELINE (16) BENCH_PORT
# (18080; B uses the next port) SERVER_CPU (0) LOAD_CPU (1) BASELINE.
# Output on stdout and in target/bench/side_by_side.md; the summary's
# figures also in target/bench/side_by_side.summary, one tab-separated
# line (median, the interval's two ends or — with too few rounds, rounds
# below 1.0, rounds), for run.sh's scenario s.

set -euo pipefail

A=${A:-rust}
B=${B:-floor}
SCENARIO=${SCENARIO:-b}
ROUNDS=${ROUNDS:-10}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-32}
PIPELINE=${PIPELINE:-16}
PORT=${BENCH_PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASELINE=${BASELINE:-}

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

declare -A BIN=(
    [rust]=$ROOT/target/release/worker-pool
    [floor]=$ROOT/target/release/examples/floor
    [layer]=$ROOT/target/release/examples/layer
    [base]=$BASELINE
)
declare -A PORT_OF=([A]=$PORT [B]=$((PORT + 1)))
declare -A PID_OF=()

# start SIDE: the server of side A or B, on its port, once it answers.
start() {
    local side=$1 name=${!1}
    PORT=${PORT_OF[$side]}
    launch_server "$LOGS/side-$side-$name.log" "${BIN[$name]}" THREADS=1
    PID_OF[$side]=$SERVER_PID
    wait_answering "$name" "$LOGS/side-$side-$name.log" "http://127.0.0.1:$PORT/healthz" 100
    curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"title":"t","description":"d"}' \
        "http://127.0.0.1:$PORT/tasks"
    SERVER_PID=
}

stop() {
    local side
    for side in A B; do
        [[ -n ${PID_OF[$side]:-} ]] || continue
        PORT=${PORT_OF[$side]} SERVER_PID=${PID_OF[$side]}
        stop_server
        PID_OF[$side]=
    done
}

# load SIDE SECONDS: one wrk against side's server; its output on stdout.
load() { wrk_scenario "$SCENARIO" "http://127.0.0.1:${PORT_OF[$1]}" "$2"; }

# both SECONDS OUT_A OUT_B: both loads at once (waiting for the two wrk
# only: the servers are children of this shell too).
both() {
    local a b
    load A "$1" >"$2" &
    a=$!
    load B "$1" >"$3" &
    b=$!
    wait "$a" "$b" || true
}

# round N: prints "cpuA requestsA cpuB requestsB" (CPU in µs per request).
round() {
    local first=A second=B side t0 t1
    ((($1 % 2) == 1)) || first=B second=A
    start "$first"
    start "$second"
    both "$WARMUP" /dev/null /dev/null
    declare -A t0 requests cpu
    for side in A B; do t0[$side]=$(cpu_ticks "${PID_OF[$side]}"); done
    both "$DURATION" "$LOGS/side-A-$1.txt" "$LOGS/side-B-$1.txt"
    for side in A B; do
        t1=$(cpu_ticks "${PID_OF[$side]}")
        requests[$side]=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$LOGS/side-$side-$1.txt")
        [[ -n ${requests[$side]} && ${requests[$side]} != 0 ]] || die "wrk against side $side failed: $(tail -3 "$LOGS/side-$side-$1.txt")"
        cpu[$side]=$(awk -v t=$((t1 - t0[$side])) -v n="${requests[$side]}" -v tck="$CLK_TCK" 'BEGIN { printf "%.4f", t / tck * 1e6 / n }')
    done
    stop
    echo "${cpu[A]} ${requests[A]} ${cpu[B]} ${requests[B]}"
}

# summarize A B: the summary of the ratios A/B on stdin, sorted: their
# median; an interval that holds the true median with at least 95%
# confidence, whatever the ratios' distribution (order statistics: the k-th
# lowest and k-th highest ratio, k the largest for which fewer than k of n
# rounds fall below the median with probability at most 2.5%); the
# extremes; and how many rounds are below 1.0. The figures also go to
# $OUT/side_by_side.summary.
summarize() {
    awk -v a="$1" -v b="$2" -v figures="$OUT/side_by_side.summary" '{ v[NR] = $1; below += ($1 < 1) } END {
        n = NR
        med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
        printf "%s/%s CPU per request: median of %d rounds %.3f, lowest %.3f, highest %.3f; %d of %d rounds below 1.0\n", a, b, n, med, v[1], v[n], below, n
        # tail = P(X <= k - 1) for X ~ Binomial(n, 1/2), grown while it stays within 2.5%.
        k = 0; term = 0.5 ^ n; tail = term
        while (tail <= 0.025) { k++; term = term * (n - k + 1) / k; tail += term }
        if (k == 0) {
            printf "too few rounds for a 95%% interval of the median (at least 6)\n"
            printf "%.3f\t—\t—\t%d\t%d\n", med, below, n >figures
            exit
        }
        printf "%.3f\t%.3f\t%.3f\t%d\t%d\n", med, v[k], v[n - k + 1], below, n >figures
        printf "95%% interval of the median (rounds %d and %d of %d, sorted; %.1f%% confidence): %.3f to %.3f\n", k, n - k + 1, n, 100 * (1 - 2 * (tail - term)), v[k], v[n - k + 1]
    }'
}

main() {
    local tool r
    for tool in cargo wrk taskset curl ss; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    [[ -n ${BIN[$A]:-} && -n ${BIN[$B]:-} ]] || die "A and B must each be rust, floor, layer or base (with BASELINE)"
    mkdir -p "$LOGS"
    trap stop EXIT
    (cd "$ROOT" && cargo build --release --locked --quiet --bin worker-pool --example floor --example layer) ||
        die "cargo build failed"
    CLK_TCK=$(getconf CLK_TCK)
    {
        echo "Side by side, scenario $SCENARIO: $A against $B, $ROUNDS rounds of $DURATION, $CONNECTIONS connections each,"
        echo "both servers on CPU $SERVER_CPU and both wrk on CPU $LOAD_CPU; $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD)"
        echo
        echo "| round | CPU µs/req $A | requests $A | CPU µs/req $B | requests $B | $A/$B |"
        echo "|---:|---:|---:|---:|---:|---:|"
        for ((r = 1; r <= ROUNDS; r++)); do
            log "round $r/$ROUNDS"
            round "$r" | awk -v r="$r" '{ printf "| %d | %.3f | %d | %.3f | %d | %.3f |\n", r, $1, $2, $3, $4, $1 / $3 }'
        done | tee "$OUT/side_by_side.rounds"
        echo
        awk -F'|' '{ print $7 + 0 }' "$OUT/side_by_side.rounds" | sort -g | summarize "$A" "$B"
    } | tee "$OUT/side_by_side.md"
}

main "$@"
