"""The loopback server: fixture start and stop, throughput, and server CPU per request.

Run: ``.venv/bin/python bench/bench_server.py`` (about 2 minutes on 2 cores; needs the
``bench`` extra: pytest-httpserver, uvicorn, httptools).

Three measurements, each printed as a markdown table:

1. **Start and stop**: what the ``otp_server`` fixture pays per test: building an
   ``OTPServer`` around a fresh emulator and ``start()`` (bind, listen, the accept
   thread), then ``stop()`` (wake and join the thread, close the socket).  Medians of
   ``--starts`` (300) rounds, after 30 warm-up rounds.
2. **Throughput**: N keep-alive clients (threads, one ``http.client.HTTPConnection``
   each, in this process) send valid ``POST /v1/messages`` requests for a fixed time
   to ``otp_server`` and to pytest-httpserver answering a static JSON body (threaded,
   HTTP/1.1 keep-alive; and its default, single-threaded HTTP/1.0).  ``otp_server``
   authenticates, validates, makes a code and keeps the limits and the journal for
   each request; every client uses its own recipients, so every answer is a 200 (the
   bench checks it).  Contenders alternate, ``--rounds`` rounds, medians.
3. **Server CPU per request**: each server runs alone in a child process; 8
   keep-alive clients in this process send ``--requests`` requests; the child's CPU
   time (user + system, from ``/proc/PID/stat``) over those requests, divided by
   their number.  ``otp_server`` does the emulator's full work; uvicorn with
   httptools (``--http httptools``, asyncio loop, no access log) answers a constant
   JSON body from a bare ASGI app: the floor of a fast Python HTTP server.  Clients
   and servers share the machine's 2 cores, so the clients' work is not counted.

Beside ``otp_server`` and uvicorn, the child-process tables run the door alone (the
listener and the HTTP channel answering a constant, no emulator) and a minimal h11 server
answering a constant (one thread on epoll, a fresh ``h11.Connection`` per request, prebuilt
answer bytes): the least any server that parses with h11 costs.

4. ``--only instructions`` (needs valgrind; about 10 minutes): the instructions each
   server's process executes per request with one keep-alive client, under
   ``valgrind --tool=callgrind``: two runs serving 100 and 500 requests after the same
   warm-up, the difference divided by 400 (``--ir-requests``).  Deterministic to within
   about 0.3% between runs, where CPU times on a shared machine move by a third.

Options: ``--seconds``, ``--rounds``, ``--clients 1,8,32``, ``--requests``,
``--starts``, ``--baseline PATH``, ``--only start,throughput,baseline,children,cpu,instructions``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.emulator.core import Emulator

_BODY_TEMPLATE = '{"to":"+65%d","template":{"id":"login","language":"en","params":{}}}'
_STATIC = {"message_id": "1725407449772531712", "send_channel": "sms"}
_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


Contender = Callable[[], AbstractContextManager[tuple[str, int, dict[str, str]]]]


def _auth(dev_key: str, dev_secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{dev_key}:{dev_secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}


@contextmanager
def otp_server() -> Iterator[tuple[str, int, dict[str, str]]]:
    with OTPServer() as server:
        yield "127.0.0.1", server.port, _auth(server.dev_key, server.dev_secret)


def _httpserver(threaded: bool) -> Contender:
    @contextmanager
    def contender() -> Iterator[tuple[str, int, dict[str, str]]]:
        from pytest_httpserver import HTTPServer

        server = HTTPServer(host="127.0.0.1", port=0, threaded=threaded)
        server.expect_request("/v1/messages", method="POST").respond_with_json(_STATIC)
        server.start()
        try:
            yield "127.0.0.1", server.port, {"Content-Type": "application/json"}
        finally:
            server.clear()
            server.stop()

    return contender


CONTENDERS: dict[str, Contender] = {
    "otp_server": otp_server,
    "httpserver (threaded)": _httpserver(True),
    "httpserver (default)": _httpserver(False),
}


def load(
    host: str,
    port: int,
    headers: dict[str, str],
    clients: int,
    seconds: float,
    base: int,
    *,
    requests: int | None = None,
) -> Run:
    """``clients`` keep-alive clients send for ``seconds`` (or ``requests`` in all)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]
    each = None if requests is None else max(1, requests // clients)

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        number = base + index * 1_000_000
        mine = latencies[index]
        start.wait()
        while True:
            begin = time.perf_counter()
            if (each is None and begin >= deadline[0]) or (each is not None and len(mine) >= each):
                break
            number += 1
            conn.request("POST", "/v1/messages", _BODY_TEMPLATE % number, headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - begin)
            if response.status != 200:
                errors[index] += 1
        conn.close()

    return run_threads(client, clients, seconds, start, deadline, latencies, errors)


def run_threads(
    body: Callable[[int], None],
    count: int,
    seconds: float,
    start: threading.Barrier,
    deadline: list[float],
    latencies: list[list[float]],
    errors: list[int],
) -> Run:
    """Run ``body(index)`` in ``count`` threads that wait on ``start``; set ``deadline`` to
    ``seconds`` from the common start; the Run of every latency they recorded."""
    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    deadline[0] = begin + seconds
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - begin
    merged = [latency for mine in latencies for latency in mine]
    return Run(len(merged), elapsed, merged, sum(errors))


# -- 1. start and stop ----------------------------------------------------------------------


def start_stop(rounds: int) -> tuple[float, float]:
    """Median milliseconds of (construct + start) and of stop, as the fixture does them."""
    starts: list[float] = []
    stops: list[float] = []
    for index in range(rounds + 30):
        emulator = Emulator()
        begin = time.perf_counter()
        server = OTPServer(emulator)
        server.start()
        middle = time.perf_counter()
        server.stop()
        end = time.perf_counter()
        if index >= 30:
            starts.append(middle - begin)
            stops.append(end - middle)
    return statistics.median(starts) * 1000, statistics.median(stops) * 1000


# -- 3. CPU per request, servers in child processes -------------------------------------------

#: Run first in every child: with BENCH_PROFILE=1 every thread is profiled, and a line
#: "calls" on stdin is answered with the function calls made so far (cProfile's count).
_PRELUDE = """
import cProfile, os, sys, threading

_PROFILES = []

def _calls():
    return sum(entry.callcount for profile in _PROFILES for entry in profile.getstats())

def _wait_stdin():
    for line in sys.stdin:
        if line.strip() == "calls":
            print(_calls(), flush=True)

if os.environ.get("BENCH_PROFILE") == "1":
    _PROFILES.append(cProfile.Profile())
    _PROFILES[0].enable()
    _run = threading.Thread.run

    def _profiled(self):
        profile = cProfile.Profile()
        _PROFILES.append(profile)
        profile.enable()
        try:
            _run(self)
        finally:
            profile.disable()

    threading.Thread.run = _profiled
"""

#: Fail a child that imported pytest_engagelab from anywhere but its PYTHONPATH.
_CHECK_PACKAGE = """
import pytest_engagelab
if not pytest_engagelab.__file__.startswith(os.environ["PYTHONPATH"]):
    raise SystemExit(f"imported {pytest_engagelab.__file__}, not {os.environ['PYTHONPATH']}")
"""

_OTP_CHILD = (
    _CHECK_PACKAGE
    + """
from pytest_engagelab.doors.server import OTPServer
server = OTPServer()
server.start()
print(server.port, flush=True)
_wait_stdin()
server.stop()
"""
)

_UVICORN_CHILD = """
import asyncio, json, socket, sys, threading
import uvicorn

BODY = json.dumps(STATIC, separators=(",", ":")).encode()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})

# IPPROTO_TCP, as uvicorn's own sockets have it: asyncio then sets TCP_NODELAY on each
# connection (with proto 0 it does not, and every answer waits 40 ms for a delayed ACK).
sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
sock.bind(("127.0.0.1", 0))
sock.listen(128)
print(sock.getsockname()[1], flush=True)
config = uvicorn.Config(app, http="httptools", loop="asyncio", lifespan="off",
                        access_log=False, log_level="warning")
server = uvicorn.Server(config)
threading.Thread(target=lambda: (_wait_stdin(), setattr(server, "should_exit", True)),
                 daemon=True).start()
server.run(sockets=[sock])
""".replace("STATIC", repr(_STATIC))

#: The door alone: otp_server's listener and HTTP channel (h11, deadlines, limits, the
#: answer's bytes) with a handler answering a constant instead of the emulator.
_DOOR_CHILD = (
    _CHECK_PACKAGE
    + """
import json
from pytest_engagelab.doors.http import HTTPChannel, Limits
from pytest_engagelab.doors.listener import Listener
from pytest_engagelab.emulator.model import EmulatorResponse

ANSWER = EmulatorResponse(
    200, json.dumps(STATIC, separators=(",", ":")).encode(),
    (("content-type", "application/json"),),
)
LIMITS = Limits(1024 * 1024, 2.0, 60.0)

def channel(conn, client):
    return HTTPChannel(conn, client, LIMITS, lambda request: ANSWER, lambda *line: None)

listener = Listener("127.0.0.1", 0, None, what="bench", thread_name="bench",
                    open_channel=channel)
print(listener.start(), flush=True)
_wait_stdin()
listener.stop()
""".replace("STATIC", repr(_STATIC))
)

#: The least an h11 server can do: one thread on epoll, a fresh h11.Connection per request
#: (cheaper than start_next_cycle, which needs the answer sent through h11), the whole
#: request read through h11's events, a constant answer written as prebuilt bytes; no
#: deadlines, no limits, no logging.  The floor of any server that parses with h11.
_MIN_H11_CHILD = """
import json, select, socket, threading
import h11

BODY = json.dumps(STATIC, separators=(",", ":")).encode()
ANSWER = (b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\n"
          b"content-length: %d\\r\\n\\r\\n%s" % (len(BODY), BODY))
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(128)
listener.setblocking(False)
waker, wake = socket.socketpair()
poller = select.epoll()
poller.register(listener.fileno(), select.EPOLLIN)
poller.register(waker.fileno(), select.EPOLLIN)
threading.Thread(target=lambda: (_wait_stdin(), wake.send(b"x")), daemon=True).start()
print(listener.getsockname()[1], flush=True)
conns = {}
running = True
while running:
    for fd, _ in poller.poll():
        if fd == waker.fileno():
            running = False
        elif fd == listener.fileno():
            sock, _ = listener.accept()
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            poller.register(sock.fileno(), select.EPOLLIN)
            conns[sock.fileno()] = [sock, h11.Connection(h11.SERVER)]
        else:
            entry = conns[fd]
            sock, conn = entry
            data = sock.recv(65536)
            if not data:
                poller.unregister(fd)
                sock.close()
                del conns[fd]
                continue
            conn.receive_data(data)
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    break
                if type(event) is h11.EndOfMessage:
                    sock.sendall(ANSWER)
                    rest, _closed = conn.trailing_data
                    conn = entry[1] = h11.Connection(h11.SERVER)
                    if not rest:
                        break
                    conn.receive_data(rest)
""".replace("STATIC", repr(_STATIC))

DOOR = "otp_server door (constant)"
MIN_H11 = "minimal h11 server (constant)"
FLOOR = "uvicorn + httptools (static)"
CHILDREN = {
    "otp_server": _OTP_CHILD,
    DOOR: _DOOR_CHILD,
    MIN_H11: _MIN_H11_CHILD,
    FLOOR: _UVICORN_CHILD,
    "uvicorn + h11 (static)": _UVICORN_CHILD.replace('http="httptools"', 'http="h11"'),
}
#: pytest-httpserver answering a static JSON body, as row 6 of ``bench.run`` runs it
#: (threaded, or its default), werkzeug's line per request silenced.
_HTTPSERVER_CHILD = """
import logging
from pytest_httpserver import HTTPServer

logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = HTTPServer(host="127.0.0.1", port=0, threaded=THREADED)
server.expect_request("/v1/messages", method="POST").respond_with_json(STATIC)
server.start()
print(server.port, flush=True)
_wait_stdin()
server.clear()
server.stop()
""".replace("STATIC", repr(_STATIC))

#: The SMPP door with its default account (``bench/bench_smpp.py``, row 7 of ``bench.run``).
SMPP_CHILD = "otp_smpp_server"
_SMPP_CHILD = (
    _CHECK_PACKAGE
    + """
from pytest_engagelab.doors.smpp import OTPSMPPServer
server = OTPSMPPServer()
server.start()
print(server.port, flush=True)
_wait_stdin()
server.stop()
"""
)

#: Children run only for their calls per request (``calls_per_request``), by rows 6 and 7
#: of ``bench.run``: not in this file's tables.
COUNTED_ONLY = {
    "httpserver (threaded)": _HTTPSERVER_CHILD.replace("THREADED", "True"),
    "httpserver (default)": _HTTPSERVER_CHILD.replace("THREADED", "False"),
    SMPP_CHILD: _SMPP_CHILD,
}

#: ``--baseline PATH``: the same child, importing pytest_engagelab from another checkout.
BASELINE = "otp_server (baseline)"
_PATHS: dict[str, str] = {}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


@contextmanager
def child_server(
    name: str, *, profile: bool = False, callgrind: Path | None = None
) -> Iterator[tuple[int, int, Callable[[], int]]]:
    """(pid, port, calls) of a server running alone in a child process; with ``profile``,
    ``calls()`` is the number of function calls its threads made so far; with
    ``callgrind``, the child runs under ``valgrind --tool=callgrind``, which writes the
    instructions it executed to that file when it exits."""
    env = dict(os.environ)
    env["PYTHONPATH"] = _PATHS.get(name, str(_ROOT))
    env["BENCH_PROFILE"] = "1" if profile else "0"
    source = {**CHILDREN, **COUNTED_ONLY}[_OTP_NAME if name == BASELINE else name]
    code = _PRELUDE + textwrap.dedent(source)
    command = [sys.executable, "-c", code]
    if callgrind is not None:
        env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every run
        command = [
            "valgrind", "-q", "--tool=callgrind", f"--callgrind-out-file={callgrind}", *command
        ]
    process = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        # "python -c" puts its working directory first on sys.path: run it in the
        # checkout whose package it must import, or this tree's would win.
        cwd=env["PYTHONPATH"],
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())

        def calls() -> int:
            assert process.stdin is not None
            assert process.stdout is not None
            process.stdin.write("calls\n")
            process.stdin.flush()
            return int(process.stdout.readline())

        yield process.pid, port, calls
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10 if callgrind is None else 300)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


_OTP_NAME = "otp_server"


def child_contender(name: str) -> Contender:
    """A server in a child process, as a throughput contender (its own GIL: the clients in
    this process compete with it for the 2 cores only)."""

    @contextmanager
    def contender() -> Iterator[tuple[str, int, dict[str, str]]]:
        with child_server(name) as (_pid, port, _calls):
            yield "127.0.0.1", port, _auth("test-dev-key", "test-dev-secret")

    return contender


def calls_per_request(
    name: str,
    clients: int,
    requests: int,
    base: int,
    *,
    drive: Callable[[int, int, int], Run] | None = None,
) -> float:
    """Function calls the server's threads make per request (cProfile's count, in a run of
    its own: profiling slows the server down).  Unlike times, counts hardly move with
    whatever else the machine is doing.  ``drive(port, requests, base)`` sends the requests
    (by default ``clients`` keep-alive HTTP clients; ``bench_smpp`` passes SMPP binds)."""
    headers = _auth("test-dev-key", "test-dev-secret")

    def http(port: int, count: int, first: int) -> Run:
        return load("127.0.0.1", port, headers, clients, 0, first, requests=count)

    send = http if drive is None else drive
    with child_server(name, profile=True) as (_pid, port, calls):
        send(port, min(200, requests), base)  # warm up
        before = calls()
        run = send(port, requests, base + 500_000)
        after = calls()
    if run.errors:
        raise RuntimeError(f"{name}: {run.errors} answers were not 200")
    return (after - before) / run.requests


def cpu_per_request(name: str, clients: int, requests: int, base: int) -> tuple[float, Run]:
    with child_server(name) as (pid, port, _calls):
        headers = _auth("test-dev-key", "test-dev-secret")
        load("127.0.0.1", port, headers, clients, 0, base, requests=min(200, requests))  # warm up
        before = _cpu_seconds(pid)
        run = load("127.0.0.1", port, headers, clients, 0, base + 500_000, requests=requests)
        used = _cpu_seconds(pid) - before
    if run.errors:
        raise RuntimeError(f"{name}: {run.errors} answers were not 200")
    return used / run.requests * 1e6, run


def _callgrind_total(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {path}")


def instructions_per_request(name: str, low: int, high: int, base: int) -> float:
    """Instructions the server's process executes per request, one keep-alive client:
    the child runs twice under callgrind, serving ``low`` and then ``high`` requests after
    the same warm-up, and the difference of the two totals is divided by ``high - low``
    (start-up, imports and shutdown cancel out).  Deterministic to within a fraction of a
    percent, where CPU time on a shared machine moves by a third."""
    totals = []
    headers = _auth("test-dev-key", "test-dev-secret")
    with tempfile.TemporaryDirectory() as scratch:
        for count in (low, high):
            out = Path(scratch) / f"callgrind.{count}"
            with child_server(name, callgrind=out) as (_pid, port, _calls):
                load("127.0.0.1", port, headers, 1, 0, base, requests=100)  # warm up
                run = load("127.0.0.1", port, headers, 1, 0, base + 500_000, requests=count)
            base += 1_000_000
            if run.errors:
                raise RuntimeError(f"{name}: {run.errors} answers were not 200")
            totals.append(_callgrind_total(out))
    return (totals[1] - totals[0]) / (high - low)


def _instructions(low: int, high: int, out: dict[str, Any]) -> None:
    if shutil.which("valgrind") is None:
        print("\nInstructions per request: skipped, valgrind is not installed")
        return
    names = _children()
    counts: dict[str, float] = {}
    base = 900_000_000
    for name in names:
        counts[name] = instructions_per_request(name, low, high, base)
        base += 10_000_000
        print(f"  {name}: {counts[name]:,.0f} instructions/request", file=sys.stderr)
    out["instructions_1"] = counts
    print(
        f"\nInstructions per request in the server's process, 1 keep-alive client "
        f"(valgrind --tool=callgrind; {high} minus {low} requests)\n"
    )
    print(f"| server | instructions/request | / {FLOOR} |\n|---|---:|---:|")
    for name in names:
        print(f"| {name} | {counts[name]:,.0f} | {counts[name] / counts[FLOOR]:.2f}x |")


# -- the tables ---------------------------------------------------------------------------------


def _throughput(levels: list[int], rounds: int, seconds: float) -> dict[tuple[str, int], list[Run]]:
    results: dict[tuple[str, int], list[Run]] = {}
    base = 80_000_000
    for clients in levels:
        for round_ in range(rounds):
            order = list(CONTENDERS)
            if round_ % 2:
                order.reverse()  # alternate who goes first
            for name in order:
                with CONTENDERS[name]() as (host, port, headers):
                    load(host, port, headers, clients, 0.2, base)  # warm up
                    base += 40_000_000
                    run = load(host, port, headers, clients, seconds, base)
                    base += 40_000_000
                if run.errors:
                    raise RuntimeError(f"{name}: {run.errors} answers were not 200")
                results.setdefault((name, clients), []).append(run)
                print(
                    f"  {clients:>2} clients, {name}: {run.rps:,.0f} req/s, "
                    f"p99 {run.p99_ms:.2f} ms",
                    file=sys.stderr,
                )
    return results


def _children() -> list[str]:
    names = list(CHILDREN)
    if BASELINE in _PATHS:
        names.insert(1, BASELINE)
    return names


def _cpu(
    levels: list[int], rounds: int, requests: int
) -> tuple[dict[tuple[str, int], list[float]], dict[tuple[str, int], float]]:
    results: dict[tuple[str, int], list[float]] = {}
    counts: dict[tuple[str, int], float] = {}
    base = 10_000_000
    for clients in levels:
        for name in _children():
            counts[(name, clients)] = calls_per_request(name, clients, min(requests, 2000), base)
            base += 1_000_000 * (clients + 1)
            print(
                f"  {clients:>2} clients, {name}: {counts[(name, clients)]:.0f} calls/request",
                file=sys.stderr,
            )
        for round_ in range(rounds):
            order = _children()
            if round_ % 2:
                order.reverse()
            for name in order:
                micros, run = cpu_per_request(name, clients, requests, base)
                base += 1_000_000 * (clients + 1)
                results.setdefault((name, clients), []).append(micros)
                print(
                    f"  {clients:>2} clients, {name}: {micros:.0f} µs CPU/request "
                    f"({run.rps:,.0f} req/s)",
                    file=sys.stderr,
                )
    return results, counts


def _children_throughput(
    levels: list[int], rounds: int, seconds: float, out: dict[str, Any]
) -> None:
    """Throughput of the servers in child processes (this tree's, the baseline's, uvicorn's),
    so that an earlier checkout can be measured beside this one."""
    names = _children()
    results: dict[tuple[str, int], list[Run]] = {}
    base = 300_000_000
    for clients in levels:
        for round_ in range(rounds):
            order = names if round_ % 2 == 0 else names[::-1]
            for name in order:
                with child_contender(name)() as (host, port, headers):
                    load(host, port, headers, clients, 0.2, base)  # warm up
                    run = load(host, port, headers, clients, seconds, base + 40_000_000)
                    base += 80_000_000
                if run.errors:
                    raise RuntimeError(f"{name}: {run.errors} answers were not 200")
                results.setdefault((name, clients), []).append(run)
                print(
                    f"  {clients:>2} clients, {name} (child): {run.rps:,.0f} req/s", file=sys.stderr
                )
    print(f"\nServers in child processes: req/s, {rounds} rounds of {seconds:g} s, medians\n")
    print("| clients | " + " | ".join(names) + " |")
    print("|---:" * (len(names) + 1) + "|")
    for clients in levels:
        cells = [statistics.median(r.rps for r in results[(name, clients)]) for name in names]
        out[f"child_rps_{clients}"] = dict(zip(names, cells, strict=True))
        print(f"| {clients} | " + " | ".join(f"{cell:,.0f}" for cell in cells) + " |")


def _one_process_rps(path: str, clients: int, seconds: float, base: int) -> float:
    """``otp_server``'s req/s in a fresh process importing pytest_engagelab from ``path``,
    its clients threads of that process (as the throughput table measures it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = path  # this file is loaded by its path: only the package differs
    code = (
        "import importlib.util, json, os, sys\n"
        f"spec = importlib.util.spec_from_file_location('bench_here', {__file__!r})\n"
        "bench = sys.modules['bench_here'] = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(bench)\n"
        "otp_server, load = bench.otp_server, bench.load\n"
        f"with otp_server() as (host, port, headers):\n"
        f"    load(host, port, headers, {clients}, 0.2, {base})\n"
        f"    run = load(host, port, headers, {clients}, {seconds}, {base + 40_000_000})\n"
        "assert not run.errors, run.errors\n"
        "print(json.dumps(run.rps))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code + _CHECK_PACKAGE],
        env=env,
        capture_output=True,
        text=True,
        cwd=path,  # "python -c" puts its working directory first on sys.path
    )
    if done.returncode:
        raise RuntimeError(f"otp_server from {path} failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


def _against_baseline(levels: list[int], rounds: int, seconds: float, out: dict[str, Any]) -> None:
    """The throughput table's measurement (server and clients in one process), for this
    tree and for ``--baseline``, each in a fresh process, taking turns."""
    paths = {"this tree": str(_ROOT), "baseline": _PATHS[BASELINE]}
    results: dict[tuple[str, int], list[float]] = {}
    base = 600_000_000
    for clients in levels:
        for round_ in range(rounds):
            order = list(paths) if round_ % 2 == 0 else list(paths)[::-1]
            for name in order:
                rps = _one_process_rps(paths[name], clients, seconds, base)
                base += 80_000_000
                results.setdefault((name, clients), []).append(rps)
                print(
                    f"  {clients:>2} clients, {name} (in-process): {rps:,.0f} req/s",
                    file=sys.stderr,
                )
    print(
        f"\nIn-process throughput against --baseline {paths['baseline']}: req/s, "
        f"{rounds} rounds of {seconds:g} s, medians\n"
    )
    print("| clients | this tree | baseline | ratio |\n|---:|---:|---:|---:|")
    for clients in levels:
        ours = statistics.median(results[("this tree", clients)])
        theirs = statistics.median(results[("baseline", clients)])
        out[f"vs_baseline_rps_{clients}"] = (ours, theirs)
        print(f"| {clients} | {ours:,.0f} | {theirs:,.0f} | {ours / theirs:.2f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement (1.5)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell (3)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels (1,8,32)")
    parser.add_argument("--requests", type=int, default=4000, help="per CPU measurement (4000)")
    parser.add_argument("--starts", type=int, default=300, help="start/stop rounds (300)")
    parser.add_argument(
        "--only",
        default="start,throughput,baseline,children,cpu",
        help="which tables; 'instructions' (valgrind, about 10 minutes) only when named",
    )
    parser.add_argument(
        "--ir-requests",
        default="100,500",
        help="instructions: the two request counts whose difference is measured (100,500)",
    )
    parser.add_argument(
        "--baseline",
        metavar="PATH",
        help="a checkout of an earlier commit (git worktree add PATH REF): its otp_server "
        "joins the child-process tables",
    )
    args = parser.parse_args(argv)
    if args.baseline:
        _PATHS[BASELINE] = str(Path(args.baseline).resolve())
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    levels = [int(n) for n in args.clients.split(",")]
    only = set(args.only.split(","))
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    if "start" in only:
        start_ms, stop_ms = start_stop(args.starts)
        out["start_ms"], out["stop_ms"] = start_ms, stop_ms
        print(f"\nStart and stop, median of {args.starts}:\n")
        print("| OTPServer(Emulator()) + start() | stop() |\n|---:|---:|")
        print(f"| {start_ms:.3f} ms | {stop_ms:.3f} ms |")
    if "throughput" in only:
        results = _throughput(levels, args.rounds, args.seconds)
        print(f"\n{args.rounds} rounds of {args.seconds:g} s per cell, medians\n")
        print(
            "| clients | otp_server req/s | p99 ms | httpserver threaded req/s | p99 ms "
            "| httpserver default req/s | p99 ms | ratio vs threaded | vs default |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for clients in levels:
            cells = {
                name: (
                    statistics.median(r.rps for r in results[(name, clients)]),
                    statistics.median(r.p99_ms for r in results[(name, clients)]),
                )
                for name in CONTENDERS
            }
            ours = cells["otp_server"]
            threaded = cells["httpserver (threaded)"]
            default = cells["httpserver (default)"]
            out[f"rps_{clients}"] = ours[0]
            print(
                f"| {clients} | {ours[0]:,.0f} | {ours[1]:.2f} | {threaded[0]:,.0f} | "
                f"{threaded[1]:.2f} | {default[0]:,.0f} | {default[1]:.2f} | "
                f"{ours[0] / threaded[0]:.2f} | {ours[0] / default[0]:.2f} |"
            )
    if "baseline" in only and BASELINE in _PATHS:
        _against_baseline(levels, args.rounds, args.seconds, out)
    if "children" in only:
        _children_throughput(levels, args.rounds, args.seconds, out)
    if "instructions" in only:
        low, high = (int(n) for n in args.ir_requests.split(","))
        _instructions(low, high, out)
    if "cpu" in only:
        cpu, counts = _cpu(levels, args.rounds, args.requests)
        names = _children()
        floor = FLOOR
        print(
            f"\nServer CPU per request, {args.requests} requests, median of {args.rounds}; "
            "function calls per request beside it\n"
        )
        print(
            "| clients | "
            + " | ".join(f"{name} µs CPU/request" for name in names)
            + " | otp_server / "
            + floor
            + " |"
        )
        print("|---:" * (len(names) + 2) + "|")
        for clients in levels:
            cells = {name: statistics.median(cpu[(name, clients)]) for name in names}
            out[f"cpu_{clients}"] = cells
            out[f"calls_{clients}"] = {name: counts[(name, clients)] for name in names}
            print(
                f"| {clients} | "
                + " | ".join(
                    f"{cells[name]:.0f} ({counts[(name, clients)]:.0f} calls)" for name in names
                )
                + f" | {cells['otp_server'] / cells[floor]:.2f}x |"
            )
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
