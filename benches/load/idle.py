#!/usr/bin/env python3
"""Holds many idle keep-alive connections open, for scenario i of run.sh.

    idle.py HOST PORT COUNT [PATH]

Opens COUNT connections to HOST:PORT, at most CONCURRENCY (env, default 100)
of them still connecting or waiting for their answer at a time (so the
server's listen backlog never overflows). Each sends one
`GET PATH HTTP/1.1` (PATH defaults to /tasks/1) and reads the whole answer,
then stays open and idle. When every connection has its answer (or failed),
it prints one line to stdout:

    ready held=N failed=M seconds=S

then keeps the connections open, watching for any the server closes, until
SIGTERM or SIGINT, and prints:

    done held=N closed_while_idle=K

Standard library only (selectors over non-blocking sockets). The caller
raises the file-descriptor limit (`ulimit -n`) above COUNT; this script
raises its own soft limit to the hard limit as well.
"""

import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time

CONCURRENCY = int(os.environ.get("CONCURRENCY", "100"))
OPEN_TIMEOUT = float(os.environ.get("OPEN_TIMEOUT", "180"))


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"  # then "answering", then "idle"
        self.buf = b""
        self.need = None  # bytes of the whole answer, once its head is read


def answer_length(buf):
    """Length of the complete answer in buf, or None while incomplete.
    Raises ValueError on an answer that is not 200."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = head[0].split(" ")
    if len(status) < 2 or status[1] != "200":
        raise ValueError(head[0])
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    return end + 4 + length


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    path = sys.argv[4] if len(sys.argv) > 4 else "/tasks/1"
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < count + 64:
        sys.exit(f"idle.py: the file limit {hard} is below {count} connections: raise ulimit -n")

    stop = False

    def on_signal(_signum, _frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sel = selectors.DefaultSelector()
    started = time.monotonic()
    opened = held = failed = in_flight = 0
    errors = {}

    def fail(conn, why):
        nonlocal held, failed, in_flight
        errors[why] = errors.get(why, 0) + 1
        failed += 1
        if conn.state == "idle":
            held -= 1
        else:
            in_flight -= 1
        sel.unregister(conn.sock)
        conn.sock.close()

    # Opening: keep CONCURRENCY connections in progress until COUNT are done.
    while held + failed < count and not stop:
        while opened < count and in_flight < CONCURRENCY:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex((host, port))
            opened += 1
            in_flight += 1
            conn = Conn(sock)
            sel.register(sock, selectors.EVENT_WRITE, conn)
            if err not in (0, errno.EINPROGRESS):
                fail(conn, errno.errorcode.get(err, str(err)))
        if time.monotonic() - started > OPEN_TIMEOUT:
            break
        for key, _ in sel.select(timeout=1.0):
            conn = key.data
            if conn.state == "connecting":
                err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(conn, errno.errorcode.get(err, str(err)))
                    continue
                try:
                    conn.sock.send(request)  # a few dozen bytes: one send
                except OSError as e:
                    fail(conn, type(e).__name__)
                    continue
                conn.state = "answering"
                sel.modify(conn.sock, selectors.EVENT_READ, conn)
            elif conn.state == "answering":
                try:
                    data = conn.sock.recv(65536)
                except OSError as e:
                    fail(conn, type(e).__name__)
                    continue
                if not data:
                    fail(conn, "closed before the answer")
                    continue
                conn.buf += data
                try:
                    if conn.need is None:
                        conn.need = answer_length(conn.buf)
                except ValueError as e:
                    fail(conn, f"answer {e}")
                    continue
                if conn.need is not None and len(conn.buf) >= conn.need:
                    conn.state = "idle"
                    conn.buf = b""
                    held += 1
                    in_flight -= 1
            else:  # idle and readable: closed by the server (or data we did not ask for)
                fail(conn, "closed while opening the rest")

    # Whatever did not finish in time counts as failed.
    for key in list(sel.get_map().values()):
        if key.data.state != "idle":
            fail(key.data, "timed out")

    elapsed = time.monotonic() - started
    if errors:
        print(f"idle.py: failures: {errors}", file=sys.stderr)
    print(f"ready held={held} failed={failed} seconds={elapsed:.1f}", flush=True)

    # Idle: only watch for connections the server closes.
    closed = 0
    while not stop:
        for key, _ in sel.select(timeout=1.0):
            try:
                data = key.fileobj.recv(65536)
            except OSError:
                data = b""
            if not data:
                closed += 1
                sel.unregister(key.fileobj)
                key.fileobj.close()
    print(f"done held={held} closed_while_idle={closed}", flush=True)


if __name__ == "__main__":
    main()
