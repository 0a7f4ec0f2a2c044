#!/usr/bin/env bash
# Memory under a long POST flood: shows that MAX_TASKS keeps the server's RSS
# flat once the store is full, where without a bound it grows with every task.
#
#   benches/load/flood.sh                                  # 120 s, MAX_TASKS=200000
#   COMPARE_UNBOUNDED=1 benches/load/flood.sh              # then the same with MAX_TASKS=0
#   DURATION=20 MAX_TASKS=50000 benches/load/flood.sh      # a quick look
#
# Needs cargo, wrk, taskset, curl and ss. Installs nothing. Builds
# target/release/worker-pool (cargo build --release --locked) first.
#
# Each run starts a fresh server pinned to CPU $SERVER_CPU with
# HTTP_HOST=127.0.0.1 HTTP_PORT=$BENCH_PORT SHUTDOWN_TIMEOUT=1 MAX_TASKS=...;
# every other config variable is unset (the default config: 5 workers, a queue
# of 10, 1-5 s of work) and the server runs in target/bench so no .env is
# read. So nearly every POST is answered 503 "task pool is full", and each of
# those still stores a failed task: that is what fills memory, and, past
# MAX_TASKS, what is evicted. The server is ready when its log says
# "listening on 127.0.0.1:PORT:".
#
# wrk (-t1, $CONNECTIONS connections, pinned to CPU $LOAD_CPU) floods
# POST /tasks with post.lua for $DURATION seconds. Every $INTERVAL seconds,
# and once before and once after the flood, a sample is taken: VmRSS from
# /proc/PID/status, and from one GET /metrics (curl, pinned to CPU $LOAD_CPU)
# worker_pool_tasks_created_total, the sum of worker_pool_tasks{status=...}
# (tasks stored) and worker_pool_tasks_evicted_total.
#
# "Bound reached" is the first sample with tasks created >= MAX_TASKS (the
# store is full from then on: stored = created - evicted). With
# COMPARE_UNBOUNDED=1 a second run with MAX_TASKS=0 follows, and its reference
# point is the same count of tasks created, so the growth after it compares
# like with like. An unbounded run stores every task: about 110-120 bytes
# each, so a 120 s flood at 70,000 requests/s takes roughly 1 GiB.
#
# Environment: DURATION (120, seconds) MAX_TASKS (200000) INTERVAL (2, seconds)
#   COMPARE_UNBOUNDED (0) CONNECTIONS (64) BENCH_PORT (18080) SERVER_CPU (0)
#   LOAD_CPU (1)
#
# Output: the summary on stderr; the sample tables and the summary in
# target/bench/flood.md; the samples as TSV in target/bench/flood-<run>.tsv;
# wrk output and server logs in target/bench/logs/flood-<run>-*.
#
# Fails (exit 1) if the build fails, the server does not start or dies, or wrk
# gives no result. A run that never reaches its bound is reported with a
# warning (raise DURATION or lower MAX_TASKS).

set -euo pipefail

DURATION=${DURATION:-120}
DURATION=${DURATION%s}
MAX_TASKS=${MAX_TASKS:-200000}
INTERVAL=${INTERVAL:-2}
COMPARE_UNBOUNDED=${COMPARE_UNBOUNDED:-0}
CONNECTIONS=${CONNECTIONS:-64}
PORT=${BENCH_PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
REPORT=$OUT/flood.md
BIN=$ROOT/target/release/worker-pool

WRK_PID=
SERVER_LOG=
# The summary lines of every run, for the report and the end.
SUMMARY=()

check_config() {
    local tool missing=()
    for tool in cargo wrk taskset curl ss; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (wrk: apt-get install wrk)"
    [[ $DURATION =~ ^[1-9][0-9]*$ ]] || die "DURATION must be a whole number of seconds, not '$DURATION'"
    [[ $MAX_TASKS =~ ^[0-9]+$ ]] || die "MAX_TASKS must be a number, not '$MAX_TASKS'"
    ((MAX_TASKS > 0)) || die "MAX_TASKS must be above 0 (the bounded run); COMPARE_UNBOUNDED=1 adds a run with MAX_TASKS=0"
    [[ $COMPARE_UNBOUNDED == [01] ]] || die "COMPARE_UNBOUNDED must be 0 or 1, not '$COMPARE_UNBOUNDED'"
    [[ $INTERVAL =~ ^[1-9][0-9]*$ ]] || die "INTERVAL must be a whole number of seconds, not '$INTERVAL'"
    local cpus
    cpus=$(nproc --all)
    ((SERVER_CPU < cpus && LOAD_CPU < cpus)) || die "SERVER_CPU/LOAD_CPU must be below $cpus"
}

build() {
    log "building worker-pool (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked --quiet --bin worker-pool) || die "cargo build failed"
    [[ -x $BIN ]] || die "no binary at $BIN"
}

# --- processes ----------------------------------------------------------------

# server_died CONTEXT: the server is gone; show why and fail.
server_died() {
    local code='?'
    if [[ -n $SERVER_PID ]]; then
        wait "$SERVER_PID" 2>/dev/null && code=0 || code=$?
        SERVER_PID=
    fi
    log "the server DIED $1 (exit status $code); log tail follows"
    tail -20 "$SERVER_LOG" >&2 || true
    die "the server died $1"
}

# start_server TAG MAX_TASKS: a fresh server, pinned, once its log says it listens.
start_server() {
    local tag=$1 max=$2 i
    SERVER_LOG=$LOGS/flood-$tag-server.log
    launch_server "$SERVER_LOG" "$BIN" MAX_TASKS="$max"
    for ((i = 0; i < 100; i++)); do
        alive "$SERVER_PID" || server_died "at start-up"
        grep -qF "listening on 127.0.0.1:$PORT:" "$SERVER_LOG" && return 0
        sleep 0.1
    done
    die "the server did not log 'listening on 127.0.0.1:$PORT:' within 10 s"
}

stop_wrk() {
    [[ -n $WRK_PID ]] || return 0
    kill -INT "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    WRK_PID=
}

cleanup() {
    stop_wrk
    stop_server
}

# status_kib FIELD: a VmRSS/VmHWM line of the server's /proc status, in KiB.
status_kib() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SERVER_PID/status" 2>/dev/null; }

# --- sampling -----------------------------------------------------------------

# sample T0 TSV: appends "seconds created stored evicted rss_kib" (NA for a
# metric /metrics did not give).
sample() {
    local t0=$1 tsv=$2 rss metrics now
    alive "$SERVER_PID" || server_died "during the flood"
    rss=$(status_kib VmRSS)
    metrics=$(taskset -c "$LOAD_CPU" curl -s --max-time 2 "$URL/metrics" | awk '
        $1 == "worker_pool_tasks_created_total" { c = $2 }
        $1 ~ /^worker_pool_tasks\{status="/ { s += $2; seen = 1 }
        $1 == "worker_pool_tasks_evicted_total" { e = $2 }
        END { printf "%s\t%s\t%s", (c == "" ? "NA" : c), (seen ? s : "NA"), (e == "" ? "NA" : e) }') || true
    [[ -n $metrics ]] || metrics=$'NA\tNA\tNA'
    if [[ $metrics == *NA* ]]; then
        alive "$SERVER_PID" || server_died "during the flood"
        log "warning: GET /metrics gave no answer (or an incomplete one) at this sample"
    fi
    [[ -n $rss ]] || server_died "during the flood"
    now=$EPOCHREALTIME
    printf '%s\t%s\t%s\n' "$(awk -v a="$t0" -v b="$now" 'BEGIN { printf "%.1f", b - a }')" "$metrics" "$rss" >>"$tsv"
}

# flood TAG MAX_TASKS BOUND: one server, one flood, samples in flood-TAG.tsv,
# a summary line in SUMMARY. BOUND is the created count that marks "bound
# reached" (MAX_TASKS, or the bounded run's for the unbounded one).
flood() {
    local tag=$1 max=$2 bound=$3
    local tsv=$OUT/flood-$tag.tsv wrk_out=$LOGS/flood-$tag-wrk.txt
    log "run '$tag': MAX_TASKS=$max, ${DURATION} s flood of POST /tasks, sampling every $INTERVAL s"
    start_server "$tag" "$max"
    : >"$tsv"
    local t0=$EPOCHREALTIME
    sample "$t0" "$tsv"
    # A subshell that execs, so that WRK_PID is wrk itself and SIGINT reaches it.
    (
        export LUA_PATH="$LOAD_DIR/?.lua;;" WRK_CONNECTIONS=$CONNECTIONS WRK_PIPELINE=1
        exec taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s \
            -s "$LOAD_DIR/post.lua" "$URL/tasks"
    ) >"$wrk_out" 2>&1 &
    WRK_PID=$!
    local next=$INTERVAL elapsed last_log=0
    while alive "$WRK_PID"; do
        # Sleep to the next multiple of INTERVAL since t0, in short steps, so
        # the loop notices wrk's end (and a dead server) promptly.
        elapsed=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
        if awk -v e="$elapsed" -v n="$next" 'BEGIN { exit !(e < n) }'; then
            alive "$SERVER_PID" || server_died "during the flood"
            sleep "$(awk -v e="$elapsed" -v n="$next" 'BEGIN { d = n - e; printf "%.3f", (d < 0.2 ? d : 0.2) }')"
            continue
        fi
        sample "$t0" "$tsv"
        next=$((next + INTERVAL))
        if ((next - last_log >= 10)); then
            last_log=$next
            tail -1 "$tsv" | awk -F'\t' '{ printf "    %6ss  created %s, stored %s, evicted %s, RSS %.1f MiB\n", $1, $2, $3, $4, $5 / 1024 }' >&2
        fi
    done
    local wrk_status=0
    wait "$WRK_PID" || wrk_status=$?
    WRK_PID=
    alive "$SERVER_PID" || server_died "during the flood"
    sleep 0.5
    sample "$t0" "$tsv"
    local hwm
    hwm=$(status_kib VmHWM)
    stop_server

    local point="the bound"
    [[ $max == "$bound" ]] || point="the bounded run's bound"
    # Every key of wrk's result line is set below, used or not: local, so
    # none leaks out.
    # shellcheck disable=SC2034
    local line requests=0 duration_us=1 p50_us=NA p99_us=NA non2xx=0 connect=0 read=0 write=0 timeout=0 kv
    line=$(sed -n 's/^BENCH //p' "$wrk_out")
    [[ -n $line ]] || die "no result from wrk (exit status $wrk_status): $(tail -3 "$wrk_out")"
    for kv in $line; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done

    SUMMARY+=("$(awk -F'\t' -v tag="$tag" -v max="$max" -v bound="$bound" -v hwm="$hwm" -v req="$requests" \
        -v point="$point" -v dur="$duration_us" -v non2xx="$non2xx" -v errs="$((connect + read + write + timeout))" -v p99="$p99_us" '
        function mib(k) { return sprintf("%.1f", k / 1024) }
        NR == 1 { first = $5 }
        { rss = $5; if (rss > peak) peak = rss; end = rss; end_t = $1; end_c = $2; end_s = $3; end_e = $4 }
        at == "" && bound > 0 && $2 != "NA" && $2 + 0 >= bound { at = rss; at_t = $1; at_c = $2 }
        END {
            printf "%s (MAX_TASKS=%s): %.0f requests/s, %.2f%% non-2xx (the 503s), %d socket errors, p99 %s ms\n",
                tag, max, req * 1e6 / dur, (req > 0 ? 100 * non2xx / req : 0), errs,
                (p99 == "NA" ? "NA" : sprintf("%.2f", p99 / 1000))
            printf "  last sample (%s s): %s created, %s stored, %s evicted\n", end_t, end_c, end_s, end_e
            if (at == "")
                printf "  RSS: idle %s MiB; %s (%s created) NEVER REACHED; end %s MiB; max %s MiB sampled, %s MiB VmHWM",
                    mib(first), point, bound, mib(end), mib(peak), mib(hwm)
            else {
                printf "  RSS: idle %s MiB; at %s (first sample with >= %s created: %s s, %s created) %s MiB;\n",
                    mib(first), point, bound, at_t, at_c, mib(at)
                printf "       end %s MiB; max %s MiB sampled, %s MiB VmHWM\n", mib(end), mib(peak), mib(hwm)
                printf "  growth after %s: %+.1f MiB (%+.1f%%) to the end, %+.1f MiB (%+.1f%%) to the sampled max;\n",
                    point, (end - at) / 1024, 100 * (end - at) / at, (peak - at) / 1024, 100 * (peak - at) / at
                printf "       %s bytes per task created after it (%s tasks)",
                    (end_c > at_c ? sprintf("%.1f", (end - at) * 1024 / (end_c - at_c)) : "NA"), end_c - at_c
            }
        }' "$tsv")")
    printf '%s\n' "${SUMMARY[-1]}" >&2
    [[ ${SUMMARY[-1]} != *NEVER\ REACHED* ]] ||
        log "warning: run '$tag' never reached $bound tasks created: raise DURATION or lower MAX_TASKS"
}

# --- report -------------------------------------------------------------------

table() {
    local tag=$1 max=$2
    echo
    echo "### $tag (MAX_TASKS=$max)"
    echo
    echo "| time s | tasks created | tasks stored | evicted | RSS MiB |"
    echo "|---:|---:|---:|---:|---:|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %.1f |\n", $1, $2, $3, $4, $5 / 1024 }' "$OUT/flood-$tag.tsv"
}

report() {
    {
        echo "# worker-pool memory under a POST flood"
        echo
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
            git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)'), $(nproc --all) CPUs."
        echo "DURATION=${DURATION}s INTERVAL=${INTERVAL}s CONNECTIONS=$CONNECTIONS; default config otherwise (5 workers,"
        echo "queue of 10: nearly every POST is a 503 that stores a failed task); server on CPU $SERVER_CPU, wrk -t1 on CPU $LOAD_CPU."
        echo "Time 0 is the start of the flood (the first row is the idle server); the last row is taken 0.5 s after"
        echo "wrk stopped. \"Bound reached\" is the first sample with tasks created >= $BOUNDED_MAX."
        echo
        echo "## Summary"
        echo
        echo '```text'
        printf '%s\n' "${SUMMARY[@]}"
        echo '```'
        echo
        echo "## Samples"
        table bounded "$BOUNDED_MAX"
        [[ $COMPARE_UNBOUNDED != 1 ]] || table unbounded 0
    } >"$REPORT"
    log "report: $REPORT"
}

main() {
    check_config
    mkdir -p "$LOGS"
    trap cleanup EXIT
    trap 'log "interrupted: stopping wrk and the server"; exit 130' INT TERM
    build
    BOUNDED_MAX=$MAX_TASKS
    flood bounded "$MAX_TASKS" "$MAX_TASKS"
    [[ $COMPARE_UNBOUNDED != 1 ]] || flood unbounded 0 "$MAX_TASKS"
    report
    echo
    printf '%s\n' "${SUMMARY[@]}"
}

main "$@"
