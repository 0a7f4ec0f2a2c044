# shellcheck shell=bash
# shellcheck disable=SC2034 # what this sets, the scripts that source it use
# Sourced by run.sh, flood.sh, instructions.sh, side_by_side.sh, waiters.sh
# and scripts/stress (which puts OUT and LOGS under target/stress): the paths
# they share, logging, and starting, watching and stopping one server at a
# time. The caller sets PORT and SERVER_CPU before sourcing it; it sets ROOT,
# LOAD_DIR, OUT (the working directory servers run in), LOGS and URL, and
# CONFIG_VARS (variables cleared for every server, so no caller setting leaks
# in), WORKER_POOL_VARS unless the caller adds to it; SERVER_PID is the
# server started last.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOAD_DIR=$ROOT/benches/load
OUT=$ROOT/target/bench
LOGS=$OUT/logs
URL=http://127.0.0.1:$PORT
SERVER_PID=

# Every variable worker-pool reads.
WORKER_POOL_VARS=(HTTP_HOST HTTP_PORT THREADS WORKERS POOL_SIZE SHUTDOWN_TIMEOUT WORK_MIN_MS WORK_MAX_MS
    MAX_BODY_BYTES MAX_CONNECTIONS MAX_CONNECTIONS_PER_CLIENT IDLE_TIMEOUT HEADER_TIMEOUT BODY_TIMEOUT
    MAX_HEADER_BYTES MAX_TASKS MAX_TEXT_BYTES CORS_ALLOWED_ORIGINS MAX_WAIT RUST_LOG)
CONFIG_VARS=("${WORKER_POOL_VARS[@]}")

# cpu_ticks PID: the process's utime + stime so far, in clock ticks (fields
# 14 and 15 of its stat; the name in field 2 may hold spaces).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# wrk_scenario SCENARIO URL DURATION: the load of scenario a (GET /tasks/1,
# keep-alive), b (the same pipelined $PIPELINE deep) or c (POST /tasks)
# against the server at URL, from one wrk thread with $CONNECTIONS
# connections pinned to CPU $LOAD_CPU; wrk's output on stdout.
wrk_scenario() {
    local script=get.lua path=/tasks/1 depth=1
    case $1 in
    b) script=pipeline.lua depth=$PIPELINE ;;
    c) script=post.lua path=/tasks ;;
    esac
    LUA_PATH="$LOAD_DIR/?.lua;;" WRK_CONNECTIONS=$CONNECTIONS WRK_PIPELINE=$depth taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$CONNECTIONS" -d"$3" --timeout 5s -s "$LOAD_DIR/$script" "$2$path" -- "$depth"
}

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

die() {
    log "error: $*"
    exit 1
}

# alive PID: the process exists and is not a zombie.
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z ]]
}

port_in_use() { ss -Hltn "sport = :$PORT" | grep -q .; }

wait_port_free() {
    local i
    for ((i = 0; i < 200; i++)); do
        port_in_use || return 0
        sleep 0.1
    done
    die "port $PORT is still in use (set BENCH_PORT to another port)"
}

# launch_server LOG BINARY [VAR=value...]: starts BINARY pinned to
# SERVER_CPU in OUT, with HTTP_HOST=127.0.0.1 HTTP_PORT=$PORT
# SHUTDOWN_TIMEOUT=1 (so stopping it is quick) and the given settings, its
# output in LOG; sets SERVER_PID. The caller waits for it to be ready. The
# array LAUNCH_PREFIX, if set, goes before BINARY (a tool to run it under).
launch_server() {
    # The server runs in OUT: a BINARY given relative to here is made absolute.
    local log_file=$1 binary unset=() var
    binary=$(realpath "$2")
    shift 2
    for var in "${CONFIG_VARS[@]}"; do unset+=(-u "$var"); done
    wait_port_free
    (cd "$OUT" && exec env "${unset[@]}" HTTP_HOST=127.0.0.1 HTTP_PORT="$PORT" SHUTDOWN_TIMEOUT=1 "$@" \
        taskset -c "$SERVER_CPU" "${LAUNCH_PREFIX[@]}" "$binary") >"$log_file" 2>&1 &
    SERVER_PID=$!
}

# wait_answering NAME LOG URL TRIES: waits, 0.1 s a try, until the server
# started last answers URL; fails if it exits or never answers.
wait_answering() {
    local name=$1 log_file=$2 url=$3 tries=$4 i
    for ((i = 0; i < tries; i++)); do
        alive "$SERVER_PID" || die "$name server exited at start-up: $(tail -5 "$log_file")"
        curl -s -o /dev/null --max-time 1 "$url" && return 0
        sleep 0.1
    done
    die "$name server did not answer $url within $((tries / 10)) s"
}

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    local i
    for ((i = 0; i < 150; i++)); do
        alive "$SERVER_PID" || break
        sleep 0.1
    done
    if alive "$SERVER_PID"; then
        log "server $SERVER_PID ignored SIGTERM for 15 s: killing it"
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
    wait_port_free
}
