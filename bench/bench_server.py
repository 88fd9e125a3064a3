"""Throughput and p99 latency of ``OTPServer`` against pytest-httpserver.

Run: ``.venv/bin/python bench/bench_server.py`` (about a minute on 2 cores).

N keep-alive clients (threads, one ``http.client.HTTPConnection`` each, in this
process) send valid ``POST /v1/messages`` requests for a fixed time.  The
contenders, measured in turn (alternating, several rounds, medians reported):

* ``otp_server``: the emulator behind :class:`pytest_engagelab.doors.server.OTPServer`:
  authentication, JSON and parameter validation, code generation, rate-limit
  bookkeeping and the journal, for every request.  Each client uses its own
  recipients, so no request hits the frequency limit (the bench checks that
  every answer is a 200).
* ``httpserver (threaded)``: ``pytest_httpserver.HTTPServer(threaded=True)``
  answering a static JSON body: HTTP/1.1 with keep-alive, like ``otp_server``.
* ``httpserver (default)``: its default, single-threaded, HTTP/1.0: one
  connection per request.

werkzeug's per-request log line is switched off so that it does not pay for
printing.  It prints a markdown table.  Options: ``--seconds``, ``--rounds``,
``--clients 1,8,32``.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import logging
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from pytest_httpserver import HTTPServer

from pytest_engagelab.doors.server import OTPServer

_BODY_TEMPLATE = '{"to":"+65%d","template":{"id":"login","language":"en","params":{}}}'


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


@contextmanager
def otp_server() -> Iterator[tuple[str, int, dict[str, str]]]:
    with OTPServer() as server:
        token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        yield "127.0.0.1", server.port, headers


def _httpserver(threaded: bool) -> Contender:
    @contextmanager
    def contender() -> Iterator[tuple[str, int, dict[str, str]]]:
        server = HTTPServer(host="127.0.0.1", port=0, threaded=threaded)
        server.expect_request("/v1/messages", method="POST").respond_with_json(
            {"message_id": "1725407449772531712", "send_channel": "sms"}
        )
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
    host: str, port: int, headers: dict[str, str], clients: int, seconds: float, base: int
) -> Run:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        number = base + index * 1_000_000
        mine = latencies[index]
        start.wait()
        while True:
            begin = time.perf_counter()
            if begin >= deadline[0]:
                break
            number += 1
            conn.request("POST", "/v1/messages", _BODY_TEMPLATE % number, headers)
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - begin)
            if response.status != 200:
                errors[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement (1.5)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell (3)")
    parser.add_argument("--clients", default="1,8,32", help="concurrency levels (1,8,32)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    levels = [int(n) for n in args.clients.split(",")]
    results: dict[tuple[str, int], list[Run]] = {}
    base = 80_000_000
    for clients in levels:
        for round_ in range(args.rounds):
            order = list(CONTENDERS)
            if round_ % 2:
                order.reverse()  # alternate who goes first
            for name in order:
                with CONTENDERS[name]() as (host, port, headers):
                    load(host, port, headers, clients, 0.2, base)  # warm up
                    base += 40_000_000
                    run = load(host, port, headers, clients, args.seconds, base)
                    base += 40_000_000
                if run.errors:
                    print(f"{name}: {run.errors} answers were not 200", file=sys.stderr)
                    return 1
                results.setdefault((name, clients), []).append(run)
                print(
                    f"  {clients:>2} clients, {name}: {run.rps:,.0f} req/s, "
                    f"p99 {run.p99_ms:.2f} ms",
                    file=sys.stderr,
                )
    print(
        f"\n{args.rounds} rounds of {args.seconds:g} s per cell, medians; "
        "ratio = otp_server / other\n"
    )
    print(
        "| clients | otp_server req/s | p99 ms | httpserver threaded req/s | p99 ms "
        "| httpserver default req/s | p99 ms | req/s ratio vs threaded | vs default |"
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
        print(
            f"| {clients} | {ours[0]:,.0f} | {ours[1]:.2f} | {threaded[0]:,.0f} | "
            f"{threaded[1]:.2f} | {default[0]:,.0f} | {default[1]:.2f} | "
            f"{ours[0] / threaded[0]:.2f} | {ours[0] / default[0]:.2f} |"
        )
    print(json.dumps({"python": sys.version.split()[0]}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
