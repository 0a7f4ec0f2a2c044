#!/usr/bin/env python3
"""Many requests waiting on tasks at once (GET /tasks/{id}?wait=60), for
waiters.sh.

    waiters.py HOST PORT COUNT PID

Talks to a fresh worker-pool (pid PID) started with one worker, long work,
a queue of at least COUNT+2 and MAX_CONNECTIONS above COUNT. It:

1. creates COUNT+2 tasks over one control connection: task 1 runs (for the
   whole benchmark), tasks 2..COUNT+1 and COUNT+2 stay pending;
2. opens COUNT connections, each sending GET /healthz and reading the answer
   (idle keep-alive connections), at most CONCURRENCY (env, 100) at a time;
3. sends GET /tasks/{i}?wait=60 on connection i, for the COUNT tasks
   2..COUNT+1, and polls /metrics until worker_pool_task_waiters is COUNT;
4. reads the server's CPU time (utime+stime, /proc/PID/stat) before and after
   WINDOW seconds (env, 10) with every request waiting;
5. cancels the COUNT tasks one at a time over the control connection
   (DELETE /tasks/{i}), timing from just before the DELETE is sent to the
   moment the waiter's whole answer (200, canceled) has been read; then
   times FLOOR (env, 5000) plain GET /healthz round trips on the control
   connection the same way, as the floor of what this client can measure;
   the server's CPU time over each of the two, per cancel or round trip,
   says what a DELETE with its woken waiter costs beside one plain request;
6. fan-out: sends GET /tasks/{COUNT+2}?wait=60 on every connection, waits
   until all COUNT are waiting, cancels that one task, and times each
   waiter's answer from just before the DELETE was sent; the server's CPU
   time over the burst, divided by COUNT, is what one woken waiter costs it.

VmRSS (/proc/PID/status) is read after step 1, 2 and 3. Prints one
`key=value` line per figure on stdout. Standard library only (selectors over
non-blocking sockets); times from time.perf_counter. The caller raises the
file-descriptor limit above COUNT; this script raises its soft limit to the
hard limit.
"""

import errno
import os
import resource
import selectors
import socket
import statistics
import sys
import time

CONCURRENCY = int(os.environ.get("CONCURRENCY", "100"))
WINDOW = float(os.environ.get("WINDOW", "10"))
FLOOR = int(os.environ.get("FLOOR", "5000"))
TIMEOUT = 120.0


def request(method, path, body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def split_answer(buf):
    """(status, body, rest) for the first complete answer in buf, or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    total = end + 4 + length
    if len(buf) < total:
        return None
    return int(head[0].split(" ")[1]), buf[end + 4 : total], buf[total:]


class Control:
    """One blocking connection for setup, metrics and cancels."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read(self):
        while True:
            answer = split_answer(self.buf)
            if answer:
                status, body, self.buf = answer
                return status, body
            data = self.sock.recv(65536)
            if not data:
                sys.exit("waiters.py: the control connection closed")
            self.buf += data

    def call(self, method, path, body=b""):
        self.send(request(method, path, body))
        return self.read()

    def metric(self, name):
        _, page = self.call("GET", "/metrics")
        for line in page.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Waiter:
    __slots__ = ("sock", "buf", "answered", "status", "body")

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.answered = None
        self.status = None
        self.body = b""


def open_connections(host, port, count):
    """COUNT connections, each having had GET /healthz answered."""
    sel = selectors.DefaultSelector()
    healthz = request("GET", "/healthz")
    ready, opened, in_flight = [], 0, 0
    deadline = time.monotonic() + TIMEOUT
    while len(ready) < count:
        while opened < count and in_flight < CONCURRENCY:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                sys.exit(f"waiters.py: connect: {errno.errorcode.get(err, err)}")
            sel.register(sock, selectors.EVENT_WRITE, Waiter(sock))
            opened += 1
            in_flight += 1
        if time.monotonic() > deadline:
            sys.exit(f"waiters.py: only {len(ready)} of {count} connections opened")
        for key, events in sel.select(timeout=1.0):
            waiter = key.data
            if events & selectors.EVENT_WRITE:
                if waiter.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    sys.exit("waiters.py: a connection failed")
                waiter.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                waiter.sock.send(healthz)
                sel.modify(waiter.sock, selectors.EVENT_READ, waiter)
                continue
            if read_answer(sel, waiter, "while opening"):
                ready.append(waiter)
                in_flight -= 1
    sel.close()
    return ready


def read_answer(sel, waiter, when):
    """Reads what `waiter`'s connection has; once a whole answer is in,
    stamps and keeps it, unregisters the connection from `sel` and returns
    True."""
    data = waiter.sock.recv(65536)
    if not data:
        sys.exit(f"waiters.py: a connection closed {when}")
    waiter.buf += data
    answer = split_answer(waiter.buf)
    if not answer:
        return False
    waiter.answered = time.perf_counter()
    waiter.status, waiter.body, waiter.buf = answer
    sel.unregister(waiter.sock)
    return True


def await_answers(waiters):
    """Reads one answer on each waiter, stamping when each is complete."""
    sel = selectors.DefaultSelector()
    for waiter in waiters:
        waiter.answered = None
        sel.register(waiter.sock, selectors.EVENT_READ, waiter)
    left = len(waiters)
    deadline = time.monotonic() + TIMEOUT
    while left:
        if time.monotonic() > deadline:
            sys.exit(f"waiters.py: {left} waiters never answered")
        for key, _ in sel.select(timeout=1.0):
            if read_answer(sel, key.data, "while waiting"):
                left -= 1
    sel.close()


def send_waits(control, waiters, ids):
    for waiter, task in zip(waiters, ids):
        waiter.sock.sendall(request("GET", f"/tasks/{task}?wait=60"))
    deadline = time.monotonic() + TIMEOUT
    while control.metric("worker_pool_task_waiters") != len(waiters):
        if time.monotonic() > deadline:
            sys.exit("waiters.py: the requests never all waited")
        time.sleep(0.05)


def check_canceled(waiters):
    wrong = [w for w in waiters if w.status != 200 or b'"status":"canceled"' not in w.body]
    if wrong:
        sys.exit(f"waiters.py: {len(wrong)} waiters answered {wrong[0].status} {wrong[0].body!r}")


def cancel_and_time(sel, control, waiter, task):
    """Cancels `task` over the control connection (registered in `sel`) and
    returns the time from just before the DELETE is sent to the moment the
    waiter's answer is complete, reading whichever answer comes first."""
    sel.register(waiter.sock, selectors.EVENT_READ, waiter)
    waiter.answered = None
    deleted = False
    sent = time.perf_counter()
    control.send(request("DELETE", f"/tasks/{task}"))
    while not deleted or waiter.answered is None:
        events = sel.select(timeout=TIMEOUT)
        if not events:
            sys.exit(f"waiters.py: no answer for task {task}")
        for key, _ in events:
            if key.data is None:
                control.buf += control.sock.recv(65536)
                answer = split_answer(control.buf)
                if answer:
                    status, _, control.buf = answer
                    if status != 200:
                        sys.exit(f"waiters.py: DELETE /tasks/{task} answered {status}")
                    deleted = True
                continue
            read_answer(sel, waiter, "while waiting")
    return waiter.answered - sent


def quantiles_us(samples):
    samples = sorted(samples)
    at = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))] * 1e6
    return at(0.5), at(0.99), samples[-1] * 1e6


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    host, port, count, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < count + 64:
        sys.exit(f"waiters.py: the file limit {hard} is below {count} connections: raise ulimit -n")

    control = Control(host, port)
    batch = request("POST", "/tasks", b'{"title":"waited on"}')
    for start in range(0, count + 2, 100):
        size = min(100, count + 2 - start)
        control.send(batch * size)
        for _ in range(size):
            status, body = control.read()
            if status != 201:
                sys.exit(f"waiters.py: POST /tasks answered {status} {body!r}")
    distinct = list(range(2, count + 2))
    fan_out = count + 2
    rss_tasks = rss_kib(pid)
    print(f"rss_tasks_kib={rss_tasks}")

    started = time.monotonic()
    waiters = open_connections(host, port, count)
    rss_idle = rss_kib(pid)
    print(f"open_seconds={time.monotonic() - started:.1f}")
    print(f"rss_idle_kib={rss_idle}")

    started = time.monotonic()
    send_waits(control, waiters, distinct)
    rss_waiting = rss_kib(pid)
    print(f"park_seconds={time.monotonic() - started:.2f}")
    print(f"rss_waiting_kib={rss_waiting}")
    print(f"rss_per_waiter_bytes={(rss_waiting - rss_tasks) * 1024 / count:.0f}")
    print(f"rss_per_idle_connection_bytes={(rss_idle - rss_tasks) * 1024 / count:.0f}")
    print(f"rss_waiting_over_idle_bytes={(rss_waiting - rss_idle) * 1024 / count:.0f}")

    cpu = cpu_seconds(pid)
    time.sleep(WINDOW)
    idle_cpu = cpu_seconds(pid) - cpu
    print(f"cpu_while_waiting_percent={idle_cpu / WINDOW * 100:.2f}")
    print(f"cpu_while_waiting_seconds={idle_cpu:.2f}")
    print(f"window_seconds={WINDOW:.0f}")

    latencies = []
    sel = selectors.DefaultSelector()
    sel.register(control.sock, selectors.EVENT_READ, None)
    cpu = cpu_seconds(pid)
    for waiter, task in zip(waiters, distinct):
        latencies.append(cancel_and_time(sel, control, waiter, task))
    distinct_cpu = cpu_seconds(pid) - cpu
    sel.close()
    check_canceled(waiters)
    p50, p99, worst = quantiles_us(latencies)
    print(f"wake_p50_us={p50:.0f}")
    print(f"wake_p99_us={p99:.0f}")
    print(f"wake_max_us={worst:.0f}")
    print(f"wake_server_cpu_us={distinct_cpu * 1e6 / count:.1f}")

    floor = []
    cpu = cpu_seconds(pid)
    for _ in range(FLOOR):
        sent = time.perf_counter()
        control.call("GET", "/healthz")
        floor.append(time.perf_counter() - sent)
    floor_cpu = cpu_seconds(pid) - cpu
    p50, p99, _ = quantiles_us(floor)
    print(f"floor_p50_us={p50:.0f}")
    print(f"floor_p99_us={p99:.0f}")
    print(f"floor_server_cpu_us={floor_cpu * 1e6 / FLOOR:.1f}")

    send_waits(control, waiters, [fan_out] * count)
    cpu = cpu_seconds(pid)
    sent = time.perf_counter()
    control.send(request("DELETE", f"/tasks/{fan_out}"))
    await_answers(waiters)
    burst_cpu = cpu_seconds(pid) - cpu
    status, _ = control.read()
    if status != 200:
        sys.exit(f"waiters.py: DELETE /tasks/{fan_out} answered {status}")
    check_canceled(waiters)
    p50, p99, worst = quantiles_us([waiter.answered - sent for waiter in waiters])
    print(f"fanout_p50_ms={p50 / 1000:.1f}")
    print(f"fanout_p99_ms={p99 / 1000:.1f}")
    print(f"fanout_last_ms={worst / 1000:.1f}")
    print(f"fanout_server_cpu_us_per_waiter={burst_cpu * 1e6 / count:.1f}")


if __name__ == "__main__":
    main()
