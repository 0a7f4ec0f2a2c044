#!/usr/bin/env bash
# Load comparison: worker-pool (Rust, its own HTTP/1.1 server on may) against
# two peers, the Go reference port of the original service
# (benches/go-reference) and an idiomatic axum + tokio port
# (benches/axum-reference), and against the may_minihttp framework floor
# (examples/floor.rs). In a and b a fifth server, layer (examples/layer.rs),
# is worker-pool's HTTP layer answering the floor's fixed body: set against
# the floor, it compares the two HTTP layers doing the same work.
#
#   benches/load/run.sh                          # DURATION=10s REPEATS=3
#   DURATION=5s REPEATS=1 benches/load/run.sh    # smoke run, a few minutes
#   SCENARIOS="a b h" benches/load/run.sh        # a subset
#   SCENARIOS="a b" ONLY_SERVERS="rust floor layer" REPEATS=15 benches/load/run.sh
#                                                # a close comparison, many runs
#   BASELINE=/path/to/worker-pool SCENARIOS=b benches/load/run.sh
#                                                # also an older build ("base"),
#                                                # to measure what a change costs
#
# Needs cargo, go (standard library only; builds never touch the network),
# wrk, taskset, curl, ss, getconf, nproc, awk and python3 (scenario i's
# client). Installs nothing. Builds target/release/worker-pool,
# target/release/examples/floor and layer, target/go-reference and
# target/axum-reference/release/axum-reference first (cargo fetches the axum
# port's crates if they are not cached; set CARGO_BUILD_JOBS to limit the
# build).
#
# Every measured run gets a fresh server pinned to CPU $SERVER_CPU with
# HTTP_HOST=127.0.0.1 HTTP_PORT=$BENCH_PORT SHUTDOWN_TIMEOUT=1 (so stopping it
# is quick; it plays no part in the measurement) plus the scenario's settings
# (the same for every server; those a server does not read are ignored);
# every other config variable is unset and the server runs in target/bench so
# no .env is read. Pinned to one CPU, the Rust server runs one scheduler
# thread, Go GOMAXPROCS=1 and tokio one worker thread (their defaults follow
# the affinity mask). The scenario's data is set up, wrk (-t1, $CONNECTIONS
# connections, pinned to CPU $LOAD_CPU) runs a $WARMUP warm-up and then the
# measured $DURATION run. Each case runs $REPEATS times; the table shows the
# median of each metric on its own.
#
# Scenarios (servers):
#   a  GET /tasks/1 keep-alive, task 1 created first        (rust, go, axum, floor, layer)
#   b  as a, pipelined $PIPELINE deep (pipeline.lua)        (rust, go, axum, floor, layer)
#   c  POST /tasks, default config: 5 workers, queue 10, work 1-5 s
#      so almost every answer is 503 "task pool is full"    (rust, go, axum, floor)
#   d  POST /tasks, WORKERS=64 POOL_SIZE=1000000 WORK_MIN_MS=WORK_MAX_MS=1,
#      so (nearly) every answer is 201                      (rust, go, axum)
#   e  GET /tasks with 100 tasks stored                     (rust, go, axum)
#   f  memory: RSS growth per stored task over $MEMORY_TASKS POST /tasks under
#      the default config (queue 10: nearly all are stored as failed)
#      (create_n.lua sends exactly that many POSTs)         (rust, go)
#   h  a new TCP connection per request: GET /tasks/1 with Connection: close
#      (close.lua), task 1 created first; wrk reconnects after each answer
#      that closes the connection. The TCP connections the kernel accepted
#      (PassiveOpens in /proc/net/snmp) are counted per request: a server
#      that keeps the connection open anyway (the floor: may_minihttp ignores
#      Connection: close) shows ~0 there, and its figures are keep-alive
#      figures                                              (rust, go, axum, floor)
#   i  $IDLE_CONNECTIONS idle keep-alive connections (idle.py, pinned to
#      $LOAD_CPU: each sends one GET /tasks/1, reads the answer and stays
#      open); server RSS before and 1 s after they are open (KiB per
#      connection), and server CPU over the next $IDLE_WINDOW s (% of one
#      core). MAX_CONNECTIONS=IDLE_CONNECTIONS+10000 IDLE_TIMEOUT=3600 for
#      every server; the file limit (ulimit -n) is raised to $IDLE_NOFILE,
#      or to the hard limit if that is lower and cannot be raised (at least
#      IDLE_CONNECTIONS+1000), for the client and the servers. One run per
#      server                                             (rust, go, axum, floor)
#   s  CPU per request of rust against the floor in a, b and c measured
#      with both servers loaded at once (side_by_side.sh, $SIDE_ROUNDS rounds
#      of 5 s each after 1 s of warm-up, 32 connections per server, whatever
#      DURATION, WARMUP and CONNECTIONS are): the median ratio and a 95%
#      interval for it, against the target (at most 1.0 in a and b, 1.15 in
#      c). Runs of one server at a time (a, b and c above) move by 15% or
#      more with this machine's slow spells; these resolve 1%  (rust, floor)
# (There is no g any more: the floor, which g used to add, runs in a b c h.)
#
# Metrics per run (a-e, h): requests/s; p50 and p99 latency (wrk's histogram,
# via the done() hook in report.lua, which also repairs wrk's
# coordinated-omission correction for pipelining; pipelined latency is per
# batch); server CPU time per request (utime+stime from /proc/PID/stat read
# just before and after the measured run, divided by the requests completed);
# server VmRSS after the run; share of 2xx answers; wrk socket errors; TCP
# connections accepted per request (PassiveOpens delta over the measured run,
# system-wide).
#
# Runs alternate between servers (rep 1 of each, then rep 2 of each, ...), so
# a slow spell of the machine does not land on one server only; a second
# table gives CPU per request as the median of the ratios of runs made back
# to back (rust's rep i against each server's rep i).
#
# Environment: DURATION (10s) REPEATS (3) WARMUP (3s) CONNECTIONS (64)
#   PIPELINE (16) MEMORY_TASKS (1000000) IDLE_CONNECTIONS (10000)
#   IDLE_WINDOW (10, seconds) IDLE_NOFILE (30000) SIDE_ROUNDS (20)
#   BENCH_PORT (18080) SERVER_CPU (0) LOAD_CPU (1) SCENARIOS
#   ("a b c d e f h i s") BASELINE
#   (unset: a worker-pool binary to run beside the current one in scenarios
#   a to e, as "base") ONLY_SERVERS (unset: every server of each scenario;
#   "rust floor layer" runs only those, for more runs of a close comparison)
#
# Output: the tables on stdout and in target/bench/results.md (one comparison
# table for a-e and h with the ratios of rust to go, axum and the floor; a
# table per server; f's and i's tables); every run in target/bench/runs.tsv
# (scenario, server, rep, req/s, p50 ms, p99 ms, CPU us/req, RSS MiB,
# requests, non-2xx, socket errors, 2xx share, status, connections/request),
# f in memory.tsv, i in idle.tsv, s in side_by_side.tsv and
# side_by_side-{a,b,c}.md; wrk and idle.py output and server logs in
# target/bench/logs/.

set -euo pipefail

DURATION=${DURATION:-10s}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-64}
PIPELINE=${PIPELINE:-16}
MEMORY_TASKS=${MEMORY_TASKS:-1000000}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
IDLE_WINDOW=${IDLE_WINDOW:-10}
IDLE_NOFILE=${IDLE_NOFILE:-30000}
SIDE_ROUNDS=${SIDE_ROUNDS:-20}
PORT=${BENCH_PORT:-18080}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SCENARIOS=${SCENARIOS:-a b c d e f h i s}
BASELINE=${BASELINE:-}
ONLY_SERVERS=${ONLY_SERVERS:-}

# shellcheck source=benches/load/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=$OUT/runs.tsv
# Scenario s: a row per scenario (see side_case).
SIDE=$OUT/side_by_side.tsv
MEMORY=$OUT/memory.tsv
IDLE=$OUT/idle.tsv

declare -A BIN=(
    [rust]=$ROOT/target/release/worker-pool
    [go]=$ROOT/target/go-reference
    [axum]=$ROOT/target/axum-reference/release/axum-reference
    [floor]=$ROOT/target/release/examples/floor
    [layer]=$ROOT/target/release/examples/layer
    [base]=$BASELINE
)
declare -A TITLE=(
    [a]="GET /tasks/1, keep-alive"
    [b]="GET /tasks/1, pipelined ×$PIPELINE"
    [c]="POST /tasks, default pool (mostly 503)"
    [d]="POST /tasks, 64 workers, queue 1e6, 1 ms work"
    [e]="GET /tasks, 100 tasks stored"
    [h]="GET /tasks/1, new connection per request"
)
# The scenarios run under wrk, and the servers of the comparison table.
WRK_SCENARIOS="a b c d e h"
SERVERS="rust go axum floor"
CONFIG_VARS=("${WORKER_POOL_VARS[@]}" GOMAXPROCS GOGC GOMEMLIMIT GODEBUG TOKIO_WORKER_THREADS)
WRK_PID=
IDLE_PID=

# --- tools and builds ---------------------------------------------------------

check_tools() {
    local tool missing=()
    for tool in cargo go wrk taskset curl ss getconf nproc awk python3; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        die "missing tools: ${missing[*]} (wrk: apt-get install wrk; go: a Go >= 1.22 toolchain on PATH; python3 >= 3.6)"
    fi
    local cpus
    cpus=$(nproc --all)
    ((SERVER_CPU < cpus && LOAD_CPU < cpus)) || die "SERVER_CPU/LOAD_CPU must be below $cpus"
    CLK_TCK=$(getconf CLK_TCK)
    [[ -r /proc/net/snmp ]] || die "no /proc/net/snmp (the connection count of h reads it)"
    if [[ " $SCENARIOS " == *" i "* ]]; then
        IDLE_NOFILE=$(idle_nofile)
        [[ $IDLE_NOFILE == unlimited ]] || ((IDLE_NOFILE >= IDLE_CONNECTIONS + 1000)) ||
            die "scenario i needs a file limit of at least IDLE_CONNECTIONS + 1000 = $((IDLE_CONNECTIONS + 1000)) (ulimit -n), but can have only $IDLE_NOFILE (hard limit $(ulimit -Hn)): raise the hard limit or lower IDLE_CONNECTIONS"
    fi
    if [[ " $SCENARIOS " == *" g "* ]]; then
        log "scenario g is gone: the floor now runs in a, b, c and h"
    fi
}

# The file limit scenario i runs under: IDLE_NOFILE, or the hard limit if
# that is lower and cannot be raised (a container without CAP_SYS_RESOURCE),
# or the current limit if it is higher already.
idle_nofile() {
    local soft hard
    soft=$(ulimit -Sn) hard=$(ulimit -Hn)
    if [[ $soft == unlimited ]] || ((soft >= IDLE_NOFILE)); then
        echo "$soft"
    elif (ulimit -n "$IDLE_NOFILE") 2>/dev/null || [[ $hard == unlimited ]] || ((hard >= IDLE_NOFILE)); then
        echo "$IDLE_NOFILE"
    else
        echo "$hard"
    fi
}

build() {
    log "building worker-pool and the floor and layer examples (release)"
    (cd "$ROOT" && cargo build --release --quiet --bin worker-pool --example floor --example layer) ||
        die "cargo build failed"
    log "building the Go reference"
    (cd "$ROOT/benches/go-reference" &&
        GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local go build -o "${BIN[go]}" .) || die "go build failed"
    log "building the axum reference (release)"
    cargo build --release --quiet --manifest-path "$ROOT/benches/axum-reference/Cargo.toml" \
        --target-dir "$ROOT/target/axum-reference" || die "cargo build of the axum reference failed"
    local name
    for name in $SERVERS layer ${BASELINE:+base}; do
        [[ -x ${BIN[$name]} ]] || die "no binary at ${BIN[$name]}"
    done
}

# --- processes ----------------------------------------------------------------

# start_server NAME [VAR=value...]: a fresh server, pinned, once it answers.
start_server() {
    local name=$1
    shift
    launch_server "$LOGS/server-$name.log" "${BIN[$name]}" "$@"
    wait_answering "$name" "$LOGS/server-$name.log" "$URL/tasks/0" 100
}

cleanup() {
    [[ -z $WRK_PID ]] || kill -INT "$WRK_PID" 2>/dev/null || true
    [[ -z $IDLE_PID ]] || kill -TERM "$IDLE_PID" 2>/dev/null || true
    stop_server
}

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# TCP connections accepted so far in this network namespace (client and
# server share it): PassiveOpens of /proc/net/snmp.
tcp_accepted() {
    awk '$1 == "Tcp:" { if (!col) { for (i = 2; i <= NF; i++) if ($i == "PassiveOpens") col = i } else print $col }' /proc/net/snmp
}

# --- load ---------------------------------------------------------------------

# run_wrk DURATION SCRIPT PATH [wrk script args...]
run_wrk() {
    local duration=$1 script=$2 path=$3 depth=1
    shift 3
    [[ $script != pipeline.lua ]] || depth=$PIPELINE
    LUA_PATH="$LOAD_DIR/?.lua;;" WRK_CONNECTIONS=$CONNECTIONS WRK_PIPELINE=$depth taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"$duration" --timeout 5s -s "$LOAD_DIR/$script" "$URL$path" "$@"
}

# create_tasks N: N POST /tasks over one connection; fails unless each is
# answered 201, 503 (queue full) or 200 (the floor answers everything).
create_tasks() {
    local n=$1 args=() i codes
    for ((i = 0; i < n; i++)); do args+=(-o /dev/null "$URL/tasks"); done
    codes=$(taskset -c "$LOAD_CPU" curl -s -w '%{http_code}\n' -H 'Content-Type: application/json' \
        -d '{"title":"t","description":""}' "${args[@]}") || true
    if grep -qvE '^(201|503|200)$' <<<"$codes" || (($(wc -l <<<"$codes") != n)); then
        die "setup: creating $n tasks got status codes: $(sort <<<"$codes" | uniq -c | tr '\n' ' ')"
    fi
}

# Per scenario: the server settings, the set-up, and the wrk script, path and args.
scenario_env() {
    case $1 in
    d) echo "WORKERS=64 POOL_SIZE=1000000 WORK_MIN_MS=1 WORK_MAX_MS=1" ;;
    i) echo "MAX_CONNECTIONS=$((IDLE_CONNECTIONS + 10000)) IDLE_TIMEOUT=3600" ;;
    *) echo "" ;;
    esac
}

scenario_setup() {
    case $1 in
    a | b | h | i) create_tasks 1 ;;
    e) create_tasks 100 ;;
    esac
}

scenario_load() {
    case $1 in
    a) echo "get.lua /tasks/1" ;;
    b) echo "pipeline.lua /tasks/1 -- $PIPELINE" ;;
    c | d) echo "post.lua /tasks" ;;
    e) echo "get.lua /tasks" ;;
    h) echo "close.lua /tasks/1" ;;
    esac
}

# scenario_servers SCENARIO: the servers that run in it, only those in
# $ONLY_SERVERS when that is set.
scenario_servers() {
    local srv
    for srv in $(scenario_all_servers "$1"); do
        [[ -z $ONLY_SERVERS || " $ONLY_SERVERS " == *" $srv "* ]] && echo "$srv"
    done
    return 0
}

scenario_all_servers() {
    case $1 in
    a | b) echo "rust go axum floor layer${BASELINE:+ base}" ;;
    c) echo "rust go axum floor${BASELINE:+ base}" ;;
    d | e) echo "rust go axum${BASELINE:+ base}" ;;
    h | i) echo "rust go axum floor" ;;
    esac
}

# measure SCENARIO SERVER REPEAT: one fresh server, warm-up, measured run, one TSV row.
measure() {
    local scenario=$1 server=$2 rep=$3 tag=$1-$2-$3 env load
    read -r -a env <<<"$(scenario_env "$scenario")"
    read -r -a load <<<"$(scenario_load "$scenario")"
    log "scenario $scenario, $server, run $rep/$REPEATS"
    start_server "$server" "${env[@]}"
    scenario_setup "$scenario"
    run_wrk "$WARMUP" "${load[@]}" >"$LOGS/$tag-warmup.txt" 2>&1 || true

    local t0 t1 rss status=ok opens0 opens1
    opens0=$(tcp_accepted)
    t0=$(cpu_ticks "$SERVER_PID")
    run_wrk "$DURATION" "${load[@]}" >"$LOGS/$tag.txt" 2>&1 || log "wrk failed: $(tail -3 "$LOGS/$tag.txt")"
    opens1=$(tcp_accepted)
    if alive "$SERVER_PID"; then
        t1=$(cpu_ticks "$SERVER_PID")
        rss=$(rss_kib "$SERVER_PID")
    else
        status=died
        log "the $server server DIED during the measured run; log tail follows"
        tail -20 "$LOGS/server-$server.log" | tee "$LOGS/$tag-server-died.log" >&2
    fi
    stop_server
    cp "$LOGS/server-$server.log" "$LOGS/$tag-server.log" 2>/dev/null && truncate_log "$LOGS/$tag-server.log"

    # Every key of wrk's result line is set below, used or not: local, so
    # none leaks out.
    # shellcheck disable=SC2034
    local line requests=0 duration_us=1 p50_us=NA p99_us=NA samples=0 wrk_p50_us=0 wrk_p99_us=0 kv
    local non2xx=0 connect=0 read=0 write=0 timeout=0
    line=$(sed -n 's/^BENCH //p' "$LOGS/$tag.txt")
    [[ -n $line ]] || {
        log "no result line from wrk for $tag"
        status=${status/ok/no-result}
    }
    for kv in $line; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    awk -v s="$scenario" -v srv="$server" -v rep="$rep" -v req="$requests" -v dur="$duration_us" \
        -v p50="$p50_us" -v p99="$p99_us" -v t0="${t0:-}" -v t1="${t1:-}" -v tck="$CLK_TCK" -v rss="${rss:-}" \
        -v non2xx="$non2xx" -v errs="$((connect + read + write + timeout))" -v st="$status" \
        -v opens="$((opens1 - opens0))" 'BEGIN {
            ok = (st == "ok" && req > 0)
            cpu = ok ? sprintf("%.2f", (t1 - t0) * 1e6 / tck / req) : "NA"
            mib = (rss != "") ? sprintf("%.1f", rss / 1024) : "NA"
            share = req > 0 ? sprintf("%.4f", (req - non2xx) / req) : "NA"
            ms50 = (p50 == "NA") ? "NA" : sprintf("%.3f", p50 / 1000)
            ms99 = (p99 == "NA") ? "NA" : sprintf("%.3f", p99 / 1000)
            conns = req > 0 ? sprintf("%.3f", opens / req) : "NA"
            printf "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", s, srv, rep,
                req * 1e6 / dur, ms50, ms99, cpu, mib, req, non2xx, errs, share, st, conns
        }' >>"$RUNS"
    tail -1 "$RUNS" | awk -F'\t' '{ printf "    %s req/s, p50 %s ms, p99 %s ms, CPU %s us/req, RSS %s MiB, 2xx %s, errors %s, conns/req %s (%s)\n", $4, $5, $6, $7, $8, $12, $11, $14, $13 }' >&2
}

# Keeps server logs small (scenario d logs two lines per task).
truncate_log() {
    local file=$1
    if (($(wc -l <"$file") > 400)); then
        {
            head -200 "$file"
            echo "... ($(($(wc -l <"$file") - 400)) lines cut) ..."
            tail -200 "$file"
        } >"$file.tmp" && mv "$file.tmp" "$file"
    fi
}

# --- memory -------------------------------------------------------------------

task_exists() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/tasks/$1") == 200 ]]; }

# The highest stored id (ids are consecutive from 1): gallops up from a
# guess, then bisects.
max_task_id() {
    local lo=0 hi=${1:-1} step=1 mid
    ((hi >= 1)) || hi=1
    if task_exists "$hi"; then
        lo=$hi
        while task_exists $((lo + step)); do
            lo=$((lo + step))
            step=$((step * 2))
        done
        hi=$((lo + step))
    fi
    while ((hi - lo > 1)); do
        mid=$(((lo + hi) / 2))
        if task_exists "$mid"; then lo=$mid; else hi=$mid; fi
    done
    echo "$lo"
}

memory_case() {
    local server=$1 tag=f-$1 rss0 rss1 stored started
    log "scenario f (memory), $server: $MEMORY_TASKS creates"
    start_server "$server"
    curl -s -o /dev/null "$URL/tasks/0"
    sleep 1
    rss0=$(rss_kib "$SERVER_PID")
    started=$SECONDS
    # A subshell that execs, so that WRK_PID is wrk itself and SIGINT reaches it.
    (
        export LUA_PATH="$LOAD_DIR/?.lua;;" WRK_CONNECTIONS=$CONNECTIONS WRK_PIPELINE=1
        exec taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d3600s --timeout 5s \
            -s "$LOAD_DIR/create_n.lua" "$URL/tasks" -- "$MEMORY_TASKS"
    ) >"$LOGS/$tag.txt" 2>&1 &
    WRK_PID=$!
    # create_n.lua sends exactly MEMORY_TASKS POSTs, then harmless GETs until
    # stopped; give up if no task is stored for 15 s.
    local count=0 last=0 since=$SECONDS
    while ((count < MEMORY_TASKS)) && alive "$WRK_PID" && alive "$SERVER_PID"; do
        sleep 1
        count=$(max_task_id "$count")
        if ((count > last)); then
            last=$count since=$SECONDS
        elif ((SECONDS - since >= 15)); then
            log "no new task stored for 15 s, at $count of $MEMORY_TASKS: stopping wrk"
            break
        fi
    done
    sleep 0.5
    kill -INT "$WRK_PID" 2>/dev/null || true
    wait "$WRK_PID" 2>/dev/null || true
    WRK_PID=
    if ! alive "$SERVER_PID"; then
        log "the $server server DIED while creating tasks; log tail follows"
        tail -20 "$LOGS/server-$server.log" | tee "$LOGS/$tag-server-died.log" >&2
        printf '%s\tNA\tNA\tNA\tNA\tNA\tdied\n' "$server" >>"$MEMORY"
        stop_server
        return
    fi
    rss1=$(rss_kib "$SERVER_PID")
    stored=$(max_task_id "$MEMORY_TASKS")
    stop_server
    cp "$LOGS/server-$server.log" "$LOGS/$tag-server.log" && truncate_log "$LOGS/$tag-server.log"
    awk -v srv="$server" -v a="$rss0" -v b="$rss1" -v n="$stored" -v secs=$((SECONDS - started)) 'BEGIN {
        printf "%s\t%d\t%.1f\t%.1f\t%s\t%d\tok\n", srv, n, a / 1024, b / 1024,
            (n > 0 ? sprintf("%.0f", (b - a) * 1024 / n) : "NA"), secs }' >>"$MEMORY"
    tail -1 "$MEMORY" | awk -F'\t' '{ printf "    %s tasks stored, RSS %s -> %s MiB, %s bytes/task (%s s)\n", $2, $3, $4, $5, $6 }' >&2
}

# --- idle connections ---------------------------------------------------------

# idle_case SERVER: scenario i for one server, one row of idle.tsv.
idle_case() {
    local server=$1 tag=i-$1 env rss0=NA rss1=NA t0 t1 cpu=NA status=ok i line kv
    local held=0 failed=0 seconds=NA closed_while_idle=NA
    read -r -a env <<<"$(scenario_env i)"
    log "scenario i (idle connections), $server: $IDLE_CONNECTIONS connections, then $IDLE_WINDOW s idle"
    start_server "$server" "${env[@]}"
    scenario_setup i
    sleep 1
    rss0=$(rss_kib "$SERVER_PID")
    : >"$LOGS/$tag.txt"
    taskset -c "$LOAD_CPU" python3 "$LOAD_DIR/idle.py" 127.0.0.1 "$PORT" "$IDLE_CONNECTIONS" \
        >"$LOGS/$tag.txt" 2>"$LOGS/$tag-client.log" &
    IDLE_PID=$!
    # idle.py gives up opening after 180 s and then prints its ready line.
    for ((i = 0; i < 2000; i++)); do
        grep -q '^ready ' "$LOGS/$tag.txt" && break
        if ! alive "$IDLE_PID" || ! alive "$SERVER_PID"; then break; fi
        sleep 0.1
    done
    line=$(sed -n 's/^ready //p' "$LOGS/$tag.txt")
    for kv in $line; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    if [[ -z $line ]]; then
        status=no-client
        log "idle.py did not get its connections open: $(tail -3 "$LOGS/$tag-client.log")"
    elif ((failed > 0)); then
        log "idle.py: $failed of $IDLE_CONNECTIONS connections failed: $(tail -1 "$LOGS/$tag-client.log")"
    fi
    if [[ $status == ok ]] && alive "$SERVER_PID"; then
        sleep 1
        rss1=$(rss_kib "$SERVER_PID")
        t0=$(cpu_ticks "$SERVER_PID")
        sleep "$IDLE_WINDOW"
        if alive "$SERVER_PID"; then
            t1=$(cpu_ticks "$SERVER_PID")
            cpu=$(awk -v a="$t0" -v b="$t1" -v tck="$CLK_TCK" -v w="$IDLE_WINDOW" 'BEGIN { printf "%.2f", (b - a) / tck / w * 100 }')
        fi
    fi
    if ! alive "$SERVER_PID"; then
        status=died
        log "the $server server DIED in scenario i; log tail follows"
        tail -20 "$LOGS/server-$server.log" | tee "$LOGS/$tag-server-died.log" >&2
    fi
    kill -TERM "$IDLE_PID" 2>/dev/null || true
    wait "$IDLE_PID" 2>/dev/null || true
    IDLE_PID=
    line=$(sed -n 's/^done //p' "$LOGS/$tag.txt")
    for kv in $line; do printf -v "${kv%%=*}" '%s' "${kv#*=}"; done
    stop_server
    cp "$LOGS/server-$server.log" "$LOGS/$tag-server.log" && truncate_log "$LOGS/$tag-server.log"
    awk -v srv="$server" -v held="$held" -v failed="$failed" -v a="$rss0" -v b="$rss1" -v cpu="$cpu" \
        -v closed="$closed_while_idle" -v secs="$seconds" -v st="$status" 'BEGIN {
            per = (a != "NA" && b != "NA" && held > 0) ? sprintf("%.1f", (b - a) / held) : "NA"
            printf "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", srv, held, failed,
                (a == "NA" ? a : sprintf("%.1f", a / 1024)), (b == "NA" ? b : sprintf("%.1f", b / 1024)),
                per, cpu, closed, secs, st }' >>"$IDLE"
    tail -1 "$IDLE" | awk -F'\t' '{ printf "    %s held (%s failed), RSS %s -> %s MiB, %s KiB/connection, idle CPU %s%% of a core, %s closed while idle (%s)\n", $2, $3, $4, $5, $6, $7, $8, $10 }' >&2
}

# --- report -------------------------------------------------------------------

# median SCENARIO SERVER COLUMN: the median of a runs.tsv column, NA values skipped.
median() {
    awk -F'\t' -v s="$1" -v srv="$2" -v c="$3" '$1 == s && $2 == srv && $c != "NA" { print $c }' "$RUNS" |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "—"; exit }
            print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# side_case SCENARIO: rust and the floor side by side (scenario s); one
# row in side_by_side.tsv: the scenario, then side_by_side.sh's summary
# figures (median, the interval's two ends, rounds below 1.0, rounds).
side_case() {
    local scenario=$1
    log "scenario s: $scenario side by side, rust against the floor, $SIDE_ROUNDS rounds"
    # Every setting given, so that none of the caller's for the other
    # scenarios (DURATION, WARMUP, CONNECTIONS) reaches it from the
    # environment.
    A=rust B=floor SCENARIO=$scenario ROUNDS=$SIDE_ROUNDS DURATION=5s WARMUP=1s CONNECTIONS=32 \
        PIPELINE=$PIPELINE BENCH_PORT=$PORT SERVER_CPU=$SERVER_CPU LOAD_CPU=$LOAD_CPU \
        "$LOAD_DIR/side_by_side.sh" >"$LOGS/side-$scenario.txt" 2>&1 ||
        die "side_by_side.sh failed: $(tail -3 "$LOGS/side-$scenario.txt")"
    cp "$OUT/side_by_side.md" "$OUT/side_by_side-$scenario.md"
    printf '%s\t%s\n' "$scenario" "$(cat "$OUT/side_by_side.summary")" >>"$SIDE"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "—" || b == "—" || b + 0 == 0) print "—"; else printf "%.2f", a / b }'; }

# paired_ratio SCENARIO SERVER PEER COLUMN: the median over repetitions of
# SERVER's run i divided by PEER's run i. Runs of one repetition are made
# back to back, so each ratio compares the two servers under the same spell
# of the machine: on a noisy machine this varies less than the ratio of the
# two medians.
paired_ratio() {
    awk -F'\t' -v s="$1" -v a="$2" -v b="$3" -v c="$4" '
        $1 == s && $c != "NA" && ($2 == a || $2 == b) { v[$2, $3] = $c; reps[$3] = 1 }
        END { for (r in reps) if ((a, r) in v && (b, r) in v && v[b, r] + 0 != 0) print v[a, r] / v[b, r] }' "$RUNS" |
        sort -g | awk '{ v[NR] = $1 } END {
            if (NR == 0) { print "—"; exit }
            printf "%.2f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "—") print v; else printf f, v }'; }

report_header() {
    echo "# worker-pool load comparison"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(
        git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes)'), $(nproc --all) CPUs."
    echo "DURATION=$DURATION REPEATS=$REPEATS (medians) WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS PIPELINE=$PIPELINE;"
    echo "server on CPU $SERVER_CPU, wrk -t1 on CPU $LOAD_CPU. wrk $(wrk -v 2>&1 | head -1 | awk '{ print $2 }'), $(go version | awk '{ print $3 }'),"
    echo "$(awk -F'"' '$1 == "name = " && ($2 == "axum" || $2 == "tokio" || $2 == "hyper") { n = $2; getline; printf "%s %s, ", n, $2 }' \
        "$ROOT/benches/axum-reference/Cargo.lock")$(rustc --version | awk '{ print $1, $2 }')."
}

# One row per scenario: each server's median and the ratios of rust to the
# others (req/s and p99 to go and axum; CPU per request to go, axum and floor).
report_comparison() {
    local s srv
    local -a cells
    local -A rps=() p99=() cpu=()
    echo
    echo "| scenario | req/s rust | req/s go | req/s axum | req/s floor | rust/go | rust/axum |" \
        "p99 ms rust | p99 ms go | p99 ms axum | p99 ms floor | p99 rust/go | p99 rust/axum |" \
        "CPU µs/req rust | CPU µs/req go | CPU µs/req axum | CPU µs/req floor | CPU rust/go | CPU rust/axum | CPU rust/floor |"
    echo "|---|$(printf -- '---:|%.0s' {1..19})"
    for s in $WRK_SCENARIOS; do
        grep -qP "^$s\t" "$RUNS" || continue
        for srv in $SERVERS; do
            rps[$srv]=$(median "$s" "$srv" 4)
            p99[$srv]=$(median "$s" "$srv" 6)
            cpu[$srv]=$(median "$s" "$srv" 7)
        done
        cells=("$s ${TITLE[$s]}")
        for srv in $SERVERS; do cells+=("$(fmt "${rps[$srv]}" %.0f)"); done
        cells+=("$(ratio "${rps[rust]}" "${rps[go]}")" "$(ratio "${rps[rust]}" "${rps[axum]}")")
        for srv in $SERVERS; do cells+=("$(fmt "${p99[$srv]}" %.2f)"); done
        cells+=("$(ratio "${p99[rust]}" "${p99[go]}")" "$(ratio "${p99[rust]}" "${p99[axum]}")")
        for srv in $SERVERS; do cells+=("$(fmt "${cpu[$srv]}" %.1f)"); done
        cells+=("$(ratio "${cpu[rust]}" "${cpu[go]}")" "$(ratio "${cpu[rust]}" "${cpu[axum]}")" "$(ratio "${cpu[rust]}" "${cpu[floor]}")")
        printf '| %s ' "${cells[@]}"
        echo "|"
    done
}

# CPU per request of rust against each other server, as the median of the
# ratios of runs made back to back (see paired_ratio).
report_paired() {
    local s
    echo
    echo "CPU µs/req of rust against each server, median of the ratios of runs made back to back (run i of"
    echo "each; less sensitive to the machine's slow spells than the ratio of medians above):"
    echo
    echo "| scenario | CPU rust/go | CPU rust/axum | CPU rust/floor |"
    echo "|---|---:|---:|---:|"
    for s in $WRK_SCENARIOS; do
        grep -qP "^$s\t" "$RUNS" || continue
        echo "| $s | $(paired_ratio "$s" rust go 7) | $(paired_ratio "$s" rust axum 7) | $(paired_ratio "$s" rust floor 7) |"
    done
}

# The two HTTP layers doing the same work: layer (this project's server
# with the floor's fixed body) against the floor (may_minihttp).
report_layers() {
    echo
    echo "The HTTP layers alone, with the same fixed body and no application behind either: layer"
    echo "(worker_pool::server, examples/layer.rs) against the floor (may_minihttp, examples/floor.rs). Medians, and"
    echo "for CPU also the median of the ratios of runs made back to back:"
    report_pair layer floor
}

# report_pair SERVER PEER: a table of SERVER against PEER in each scenario
# both ran: req/s and CPU per request (medians), their ratios, and the
# median of the paired CPU ratios.
report_pair() {
    local a=$1 b=$2 s rps_a rps_b cpu_a cpu_b
    echo
    echo "| scenario | req/s $a | req/s $b | $a/$b | CPU µs/req $a | CPU µs/req $b | $a/$b | paired |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    for s in $WRK_SCENARIOS; do
        if ! grep -qP "^$s\t$a\t" "$RUNS" || ! grep -qP "^$s\t$b\t" "$RUNS"; then
            continue
        fi
        rps_a=$(median "$s" "$a" 4) rps_b=$(median "$s" "$b" 4)
        cpu_a=$(median "$s" "$a" 7) cpu_b=$(median "$s" "$b" 7)
        printf '| %s %s | %s | %s | %s | %s | %s | %s | %s |\n' "$s" "${TITLE[$s]}" \
            "$(fmt "$rps_a" %.0f)" "$(fmt "$rps_b" %.0f)" "$(ratio "$rps_a" "$rps_b")" \
            "$(fmt "$cpu_a" %.2f)" "$(fmt "$cpu_b" %.2f)" "$(ratio "$cpu_a" "$cpu_b")" \
            "$(paired_ratio "$s" "$a" "$b" 7)"
    done
}

# One row per scenario and server, with what the comparison leaves out.
report_details() {
    local s srv bad
    echo
    echo "Per server (medians): p50, RSS after the run, share of 2xx answers, wrk socket errors, TCP connections"
    echo "accepted per request; runs that failed (server died or wrk gave no result)."
    echo
    echo "| scenario | server | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | 2xx share (POST: 201) | socket errors | conns/req | failed runs |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for s in $WRK_SCENARIOS; do
        for srv in $SERVERS layer base; do
            grep -qP "^$s\t$srv\t" "$RUNS" || continue
            bad=$(awk -F'\t' -v s="$s" -v srv="$srv" '$1 == s && $2 == srv && $13 != "ok"' "$RUNS" | wc -l)
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n' "$s" "$srv" \
                "$(fmt "$(median "$s" "$srv" 4)" %.0f)" "$(fmt "$(median "$s" "$srv" 5)" %.2f)" \
                "$(fmt "$(median "$s" "$srv" 6)" %.2f)" "$(fmt "$(median "$s" "$srv" 7)" %.1f)" \
                "$(fmt "$(median "$s" "$srv" 8)" %.1f)" "$(fmt "$(median "$s" "$srv" 12)" %.4f)" \
                "$(fmt "$(median "$s" "$srv" 11)" %.0f)" "$(fmt "$(median "$s" "$srv" 14)" %.3f)" "$bad" "$REPEATS"
        done
    done
}

# When BASELINE is set: the current build against it.
report_baseline() {
    echo
    echo "Against the baseline build ($BASELINE), medians:"
    report_pair rust base
}

report_memory() {
    local go_bytes
    go_bytes=$(awk -F'\t' '$1 == "go" { print $5 }' "$MEMORY")
    echo
    echo "f: memory after $MEMORY_TASKS × POST /tasks (title \"t\", description \"d\") under the default config"
    echo "(POOL_SIZE=10: nearly every task is stored as failed, \"task pool is full\"); one run per server;"
    echo "bytes/task = (VmRSS after - VmRSS before) / tasks stored (the highest id that GET /tasks/{id} finds);"
    echo "it includes allocator and GC slack (Go lets the heap reach GOGC=100% over live data; hash tables grow by doubling)."
    echo
    echo "| server | tasks stored | RSS before MiB | RSS after MiB | bytes/task | rust/go | seconds |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' -v gb="${go_bytes:-NA}" '{
        r = ($1 != "go" && $5 != "NA" && gb != "NA" && gb + 0 > 0) ? sprintf("%.2f", $5 / gb) : "—"
        printf "| %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, r, $6 }' "$MEMORY"
}

# h: whether each server really took a new connection per request.
report_reconnects() {
    local srv conns line=""
    for srv in $SERVERS; do
        conns=$(median h "$srv" 14)
        [[ $conns == — ]] || line+="${line:+, }$srv $(fmt "$conns" %.2f)"
    done
    echo
    echo "h: TCP connections accepted per request (PassiveOpens over the measured run / requests): $line."
    echo "About 1 means a new connection per request; a server near 0 kept its connections open despite"
    echo "Connection: close (wrk reuses a connection unless the answer closes it), so its h figures are keep-alive figures."
}

report_idle() {
    echo
    echo "i: $IDLE_CONNECTIONS idle keep-alive connections (idle.py: each sent one GET /tasks/1 and read the answer), one run"
    echo "per server. RSS before: task 1 created, no connection open; after: 1 s after the last answer. KiB/connection"
    echo "= (after - before) / connections held. Idle CPU: the server's utime+stime over the next $IDLE_WINDOW s, in % of"
    echo "one core (clock ticks of $((1000000 / CLK_TCK)) µs)."
    echo
    echo "| server | connections held | failed | RSS before MiB | RSS after MiB | KiB/connection | idle CPU % of a core | closed while idle | seconds to open | status |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$IDLE"
    awk -F'\t' '$1 == "rust" {
        kib = ($6 == "NA") ? "not measured" : ($6 + 0 <= 12 ? "met" : "missed")
        cpu = ($7 == "NA") ? "not measured" : ($7 + 0 < 1 ? "met" : "missed")
        printf "\nTargets for rust: at most 12 KiB per connection (%s KiB: %s); idle CPU below 1%% of a core (%s%%: %s).\n", $6, kib, $7, cpu
    }' "$IDLE"
}

# s: the side-by-side ratios, and the targets they decide: CPU per
# request at most the floor's in a and b, within 1.15x of it in c. Met
# when the whole 95% interval is within the target; "median only" when the
# median is and the interval reaches past it.
report_side() {
    echo
    echo "s: CPU per request of rust against the floor with both loaded at once (side_by_side.sh, $SIDE_ROUNDS rounds"
    echo "of 5 s, both servers on CPU $SERVER_CPU and both wrk on CPU $LOAD_CPU; rounds in side_by_side-{a,b,c}.md)."
    echo
    echo "| scenario | rust/floor, median of rounds | 95% interval of the median | rounds below 1.0 | target | verdict |"
    echo "|---|---:|---:|---:|---:|---|"
    awk -F'\t' -v ta="${TITLE[a]}" -v tb="${TITLE[b]}" -v tc="${TITLE[c]}" 'BEGIN { title["a"] = ta; title["b"] = tb; title["c"] = tc } {
        target = ($1 == "c") ? 1.15 : 1.0
        verdict = ($3 == "—") ? "too few rounds" : ($4 + 0 <= target ? "met" : ($2 + 0 <= target ? "median only" : "missed"))
        printf "| %s %s | %s | %s to %s | %d of %d | at most %.2f | %s |\n", $1, title[$1], $2, $3, $4, $5, $6, target, verdict }' "$SIDE"
}

report() {
    {
        report_header
        if [[ -s $RUNS ]]; then
            report_comparison
            report_paired
            ! grep -qP '^[a-z]\tlayer\t' "$RUNS" || report_layers
            report_details
            [[ -z $BASELINE ]] || report_baseline
            ! grep -qP '^h\t' "$RUNS" || report_reconnects
        fi
        [[ ! -s $MEMORY ]] || report_memory
        [[ ! -s $IDLE ]] || report_idle
        [[ ! -s $SIDE ]] || report_side
        echo
        echo "Notes: latency is wrk's (coordinated-omission corrected) histogram; with pipelining (b) it is per batch"
        echo "of $PIPELINE, with wrk's correction redone per batch (see report.lua). CPU/request is the server's utime+stime"
        echo "(clock ticks of $((1000000 / CLK_TCK)) µs) over the measured run divided by completed requests, and in c/d"
        echo "includes the workers' share. rust/go and rust/axum are ratios to the two peer ports; CPU rust/floor compares"
        echo "CPU per request with the bare may_minihttp floor (in c the floor answers the same POSTs with its fixed body)."
        echo "In a, b and c that ratio moves by 15% or more from run to run with this machine's slow spells; s measures"
        echo "the two servers at the same time, and is what decides the targets against the floor."
    } >"$OUT/results.md"
    cat "$OUT/results.md"
}

main() {
    check_tools
    mkdir -p "$LOGS"
    : >"$RUNS"
    : >"$MEMORY"
    : >"$IDLE"
    : >"$SIDE"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    build
    local started=$SECONDS s srv rep
    for s in $WRK_SCENARIOS; do
        [[ " $SCENARIOS " == *" $s "* ]] || continue
        for ((rep = 1; rep <= REPEATS; rep++)); do
            for srv in $(scenario_servers "$s"); do
                measure "$s" "$srv" "$rep"
            done
        done
    done
    if [[ " $SCENARIOS " == *" f "* ]]; then
        memory_case rust
        memory_case go
    fi
    if [[ " $SCENARIOS " == *" i "* ]]; then
        # Last, so that the raised file limit applies to this scenario only.
        if [[ $(ulimit -Sn) != "$IDLE_NOFILE" ]]; then
            ulimit -Hn "$IDLE_NOFILE" 2>/dev/null || true
            ulimit -Sn "$IDLE_NOFILE"
            log "scenario i: file limit (ulimit -n) $IDLE_NOFILE for the client and the servers"
        fi
        for srv in $(scenario_servers i); do
            idle_case "$srv"
        done
    fi
    if [[ " $SCENARIOS " == *" s "* ]]; then
        for s in a b c; do side_case "$s"; done
    fi
    log "done in $((SECONDS - started)) s (after the builds)"
    report
}

main "$@"
