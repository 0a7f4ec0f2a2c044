# Sourced by run.sh and flood.sh: logging, and starting, watching and
# stopping one server at a time. The caller sets PORT, OUT (the working
# directory servers run in), SERVER_CPU and CONFIG_VARS (variables cleared
# for every server, so no caller setting leaks in); SERVER_PID is the
# server started last.

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
    local log_file=$1 binary=$2 unset=() var
    shift 2
    for var in "${CONFIG_VARS[@]}"; do unset+=(-u "$var"); done
    wait_port_free
    (cd "$OUT" && exec env "${unset[@]}" HTTP_HOST=127.0.0.1 HTTP_PORT="$PORT" SHUTDOWN_TIMEOUT=1 "$@" \
        taskset -c "$SERVER_CPU" "${LAUNCH_PREFIX[@]}" "$binary") >"$log_file" 2>&1 &
    SERVER_PID=$!
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
