#!/usr/bin/env bash
# 10,000 requests waiting on tasks at once (GET /tasks/{id}?wait=60): what a
# waiting request costs the server in memory, what the server spends while
# they wait, and how long after a task finishes its waiter has the answer.
#
#   benches/load/waiters.sh                      # 10,000 waiters
#   WAITERS=2000 benches/load/waiters.sh         # a quick look
#
# Builds target/release/worker-pool, starts it pinned to CPU $SERVER_CPU
# (THREADS=1, WORKERS=1, work of 10 minutes so nothing finishes by itself,
# POOL_SIZE and MAX_CONNECTIONS above WAITERS, the default MAX_WAIT=60 and
# log level), and runs waiters.py pinned to CPU $LOAD_CPU (see its
# docstring for the steps). A task here finishes by being canceled: the
# wake-up is the same one a worker finishing a task makes (the store wakes
# a task's waiters on every move to done, failed or canceled).
#
# Needs cargo, python3, taskset, curl and ss; raises the file limit (ulimit
# -n) to $NOFILE, or to the hard limit if lower (at least WAITERS+1000).
# Environment: WAITERS (10000) WINDOW (10, seconds of CPU measured while all
# wait) FLOOR (5000) NOFILE (30000) BENCH_PORT (18080) SERVER_CPU (0)
# LOAD_CPU (1). Output on stdout and in target/bench/waiters.md; the
# client's raw figures in target/bench/logs/waiters.txt.

set -euo pipefail

WAITERS=${WAITERS:-10000}
NOFILE=${NOFILE:-30000}
PORT=${BENCH_PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
export WINDOW=${WINDOW:-10} FLOOR=${FLOOR:-5000}

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

main() {
    local tool hard raw
    for tool in cargo python3 taskset curl ss; do
        command -v "$tool" >/dev/null || die "missing tool: $tool"
    done
    hard=$(ulimit -Hn)
    if [[ $hard != unlimited && $hard -lt $NOFILE ]]; then NOFILE=$hard; fi
    ((NOFILE >= WAITERS + 1000)) || die "the file limit $NOFILE is below $((WAITERS + 1000)): raise ulimit -Hn"
    ulimit -n "$NOFILE"
    mkdir -p "$LOGS"
    trap stop_server EXIT
    (cd "$ROOT" && cargo build --release --locked --quiet --bin worker-pool) || die "cargo build failed"
    launch_server "$LOGS/waiters-server.log" "$ROOT/target/release/worker-pool" \
        THREADS=1 WORKERS=1 WORK_MIN_MS=600000 WORK_MAX_MS=600000 \
        POOL_SIZE=$((WAITERS + 10)) MAX_CONNECTIONS=$((WAITERS + 100)) IDLE_TIMEOUT=600
    wait_answering rust "$LOGS/waiters-server.log" "$URL/healthz" 100
    raw=$LOGS/waiters.txt
    taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/waiters.py" 127.0.0.1 "$PORT" "$WAITERS" "$SERVER_PID" \
        >"$raw" || die "waiters.py failed: $(tail -3 "$raw")"
    stop_server
    declare -A f
    local key value
    while IFS='=' read -r key value; do f[$key]=$value; done <"$raw"
    {
        echo "$WAITERS waiting requests, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD)"
        echo
        echo "| measure | value |"
        echo "|---|---:|"
        echo "| server RSS: tasks stored / connections open and idle / every request waiting | ${f[rss_tasks_kib]} / ${f[rss_idle_kib]} / ${f[rss_waiting_kib]} KiB |"
        echo "| RSS per waiting request (connection included) | ${f[rss_per_waiter_bytes]} B |"
        echo "| of which the connection, idle | ${f[rss_per_idle_connection_bytes]} B |"
        echo "| of which the wait | ${f[rss_waiting_over_idle_bytes]} B |"
        echo "| server CPU while all wait (${f[window_seconds]} s) | ${f[cpu_while_waiting_percent]}% of a core (${f[cpu_while_waiting_seconds]} s) |"
        echo "| one task canceled -> its waiter's answer, p50 / p99 / max ($WAITERS tasks, one at a time) | ${f[wake_p50_us]} / ${f[wake_p99_us]} / ${f[wake_max_us]} µs |"
        echo "| server CPU per cancel, its DELETE and its waiter's answer | ${f[wake_server_cpu_us]} µs |"
        echo "| floor: GET /healthz round trip, same client, p50 / p99 | ${f[floor_p50_us]} / ${f[floor_p99_us]} µs |"
        echo "| floor: server CPU per GET /healthz | ${f[floor_server_cpu_us]} µs |"
        echo "| fan-out: one task, $WAITERS waiters, cancel -> each answer, p50 / p99 / last | ${f[fanout_p50_ms]} / ${f[fanout_p99_ms]} / ${f[fanout_last_ms]} ms |"
        echo "| fan-out: server CPU per woken waiter | ${f[fanout_server_cpu_us_per_waiter]} µs |"
    } | tee "$OUT/waiters.md"
}

main "$@"
