#!/usr/bin/env bash
# Instructions per request: a deterministic measure of what a change costs,
# for costs (a few percent) that wall-clock runs on a noisy machine cannot
# resolve. Each server runs under valgrind's cachegrind (instruction counts
# only), pinned to CPU $SERVER_CPU with THREADS=1, and is loaded with wrk
# (pinned to CPU $LOAD_CPU) for $DURATION; a second run of the same length
# with no load gives what start-up, shutdown and the idle timers cost, which
# is subtracted. So: (instructions loaded - instructions idle) / requests.
#
#   benches/load/instructions.sh                          # this build, scenario b
#   BASELINE=/path/to/worker-pool benches/load/instructions.sh
#                                                         # and an older build beside it
#   SCENARIO=a benches/load/instructions.sh               # keep-alive instead of pipelined
#   cargo build --release --example layer --example floor
#   SERVER=target/release/examples/layer BASELINE=target/release/examples/floor \
#       benches/load/instructions.sh                      # the two HTTP layers alone
#
# Scenarios: a GET /tasks/1 keep-alive; b the same pipelined $PIPELINE deep;
# c POST /tasks under the default config (nearly all 503). Task 1 is created
# first. Instructions are not time: a locked add or a cache miss costs more
# than its count says, so read this beside run.sh's CPU/request.
#
# Needs cargo, valgrind, wrk, taskset, curl and ss. Builds
# target/release/worker-pool first. Environment: DURATION (10s) SCENARIO (b)
# PIPELINE (16) CONNECTIONS (16) BENCH_PORT (18080) SERVER_CPU (0)
# LOAD_CPU (1) SERVER (target/release/worker-pool, the row "rust")
# BASELINE (unset, the row "base"). Output on stdout and in
# target/bench/instructions.md.

set -euo pipefail

DURATION=${DURATION:-10s}
SCENARIO=${SCENARIO:-b}
PIPELINE=${PIPELINE:-16}
CONNECTIONS=${CONNECTIONS:-16}
PORT=${BENCH_PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BASELINE=${BASELINE:-}

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

declare -A BIN=([rust]=${SERVER:-$ROOT/target/release/worker-pool} [base]=$BASELINE)

# count NAME LOADED: runs one server under cachegrind; prints "instructions requests".
count() {
    local name=$1 loaded=$2 tag=instructions-$1-$2 out
    out=$LOGS/$tag.cachegrind
    LAUNCH_PREFIX=(valgrind --tool=cachegrind --cache-sim=no "--cachegrind-out-file=$out")
    launch_server "$LOGS/$tag.log" "${BIN[$name]}" THREADS=1
    # Slower to start under valgrind: up to 30 s.
    wait_answering "$name" "$LOGS/$tag.log" "$URL/healthz" 300
    curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"title":"t","description":"d"}' "$URL/tasks"
    local requests=0
    if [[ $loaded == loaded ]]; then
        wrk_scenario "$SCENARIO" "$URL" "$DURATION" >"$LOGS/$tag-wrk.txt" 2>&1 ||
            die "wrk failed: $(tail -3 "$LOGS/$tag-wrk.txt")"
        requests=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$LOGS/$tag-wrk.txt")
    else
        sleep "${DURATION%s}"
    fi
    stop_server
    echo "$(sed -n 's/^summary: *//p' "$out") $requests"
}

main() {
    local tool name
    for tool in cargo valgrind wrk taskset curl ss; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    mkdir -p "$LOGS"
    trap stop_server EXIT
    (cd "$ROOT" && cargo build --release --locked --quiet --bin worker-pool) || die "cargo build failed"
    local names=(rust) per_request=()
    [[ -z $BASELINE ]] || names+=(base)
    {
        echo "Instructions per request, scenario $SCENARIO, $DURATION under cachegrind, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD)"
        echo "rust: ${BIN[rust]}${BASELINE:+; base: $BASELINE}"
        echo
        echo "| server | instructions loaded | requests | instructions idle | per request |"
        echo "|---|---:|---:|---:|---:|"
        for name in "${names[@]}"; do
            read -r busy requests < <(count "$name" loaded)
            read -r idle _ < <(count "$name" idle)
            per_request+=("$(awk -v b="$busy" -v i="$idle" -v r="$requests" 'BEGIN { printf "%.1f", (b - i) / r }')")
            echo "| $name | $busy | $requests | $idle | ${per_request[-1]} |"
        done
        if ((${#per_request[@]} == 2)); then
            echo
            awk -v a="${per_request[0]}" -v b="${per_request[1]}" 'BEGIN { printf "rust/base: %.3f\n", a / b }'
        fi
    } | tee "$OUT/instructions.md"
}

main "$@"
