"""Run every benchmark and print one markdown table of ratios, with the machine it ran on.

    .venv/bin/python -m bench.run            # everything, under 5 minutes on 2 cores
    .venv/bin/python -m bench.run --quick    # smaller sizes: a smoke test of the benchmarks
    .venv/bin/python -m bench.run --only 1,3

Every ratio is pytest-engagelab over the alternative, both measured in this run
(medians of several repetitions, the contenders alternating).  Progress goes to
stderr, the table to stdout.  See bench/README.md for what each row measures.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bench_memory, bench_replay, bench_requests, bench_startup, bench_suite
from bench._common import INSTRUCTIONS_ENV, Row, machine, median, table

SERVER_CLIENTS = 32
#: Requests per call count of row 6 (after 200 unprofiled ones): 16 per client.  The count
#: includes opening the 32 connections, spread over 512 requests (a few percent of
#: pytest-httpserver's threaded count, which starts a thread per connection).
COUNTED_REQUESTS = 512


def _server(quick: bool) -> list[Row]:
    """The loopback server against pytest-httpserver, from ``bench/bench_server.py``:
    its ``measure()`` if it has one (returning rows), else its contenders and load loop;
    beside each rate, the server's calls per request (``bench_server.calls_per_request``:
    the same server in a child process under cProfile, a run of its own)."""
    label = f"Loopback server: {SERVER_CLIENTS} keep-alive clients, requests/s"
    try:
        from bench import bench_server
    except Exception as error:  # not written yet, or its dependencies are missing
        return [Row.not_measured("6", label, "-", f"bench/bench_server.py: {error}")]
    measure: Callable[..., object] | None = getattr(bench_server, "measure", None)
    if measure is not None:
        rows = measure()
        if isinstance(rows, list) and all(isinstance(row, Row) for row in rows):
            return rows
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no log line per request
    rounds, seconds = (1, 0.5) if quick else (3, 1.5)
    names = list(bench_server.CONTENDERS)
    rates: dict[str, list[float]] = {name: [] for name in names}
    p99: dict[str, list[float]] = {name: [] for name in names}
    base, step = 80_000_000, 40_000_000  # each load's recipients: base + client * 1,000,000 + n
    for round_ in range(rounds):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            with bench_server.CONTENDERS[name]() as (host, port, headers):
                bench_server.load(host, port, headers, SERVER_CLIENTS, 0.2, base)
                run = bench_server.load(host, port, headers, SERVER_CLIENTS, seconds, base + step)
                base += 2 * step
            if run.errors:
                raise RuntimeError(f"bench_server {name}: {run.errors} answers were not 200")
            rates[name].append(run.rps)
            p99[name].append(run.p99_ms)
    calls = {
        name: bench_server.calls_per_request(
            name, SERVER_CLIENTS, COUNTED_REQUESTS, base + index * 40_000_000
        )
        for index, name in enumerate(names)
    }
    ours = median(rates["otp_server"])
    return [
        Row(
            "6",
            f"{label}, median of {rounds} x {seconds:g} s; the server's calls per request over "
            f"{COUNTED_REQUESTS} more (cProfile, a run of its own)",
            f"`otp_server` {ours:,.0f}/s (p99 {median(p99['otp_server']):.1f} ms), "
            f"{calls['otp_server']:,.0f} calls",
            f"{name} {median(rates[name]):,.0f}/s (p99 {median(p99[name]):.1f} ms), "
            f"{calls[name]:,.0f} calls",
            f"{ours / median(rates[name]):.2f}x",
            "(context: throughput, higher is better)",
            "-",
        )
        for name in names
        if name != "otp_server"
    ]


def _smpp(quick: bool) -> list[Row]:
    """Row 7: the SMPP door at 1 and 8 binds, from ``bench/bench_smpp.py``."""
    try:
        from bench import bench_smpp
    except ImportError as error:  # smpplib missing: pip install -e '.[smpp]'
        return [Row.not_measured("7", "SMPP door: submit_sm/s", "-", str(error))]
    return bench_smpp.measure(seconds=0.5, rounds=1) if quick else bench_smpp.measure()


def _benchmarks(quick: bool) -> dict[str, Callable[[], list[Row]]]:
    if quick:
        return {
            "1": lambda: bench_requests.measure(sends=200, reps=3),
            "2": lambda: bench_suite.measure(tests=50, reps=1),
            # valgrind's instruction counts take a minute: only when asked for (=1)
            "3": lambda: bench_startup.measure(
                reps=3, instructions=os.environ.get(INSTRUCTIONS_ENV) == "1"
            ),
            "4": lambda: bench_replay.measure(interactions=50, reps=1),
            "5": lambda: bench_memory.measure(sends=1_000),
            "6": lambda: _server(quick=True),
            "7": lambda: _smpp(quick=True),
        }
    return {
        "1": bench_requests.measure,
        "2": bench_suite.measure,
        # 11 time pairs, or 5 beside valgrind's instruction counts (about 60 s more): the
        # whole run stays within 5 minutes
        "3": lambda: bench_startup.measure(reps=11, reps_with_valgrind=5),
        # medians of 3: pytest-recording's replay of 1,000 interactions takes 7 to 17 s a run
        "4": lambda: bench_replay.measure(reps=3),
        "5": bench_memory.measure,
        "6": lambda: _server(quick=False),
        "7": lambda: _smpp(quick=False),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="pytest-engagelab benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke test")
    parser.add_argument("--only", default="", help="comma-separated benchmark numbers (1-7)")
    args = parser.parse_args(argv)
    chosen = _benchmarks(args.quick)
    if args.only:
        wanted = [part.strip() for part in args.only.split(",")]
        unknown = [n for n in wanted if n not in chosen]
        if unknown:
            parser.error(f"no benchmark {', '.join(unknown)}; choose from {', '.join(chosen)}")
        chosen = {n: chosen[n] for n in wanted}
    rows: list[Row] = []
    started = time.perf_counter()
    for number, benchmark in chosen.items():
        began = time.perf_counter()
        print(f"benchmark {number} ...", file=sys.stderr, flush=True)
        rows.extend(benchmark())
        print(f"benchmark {number}: {time.perf_counter() - began:.0f} s", file=sys.stderr)
    elapsed = time.perf_counter() - started
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"pytest-engagelab benchmarks, {when}{' (--quick)' if args.quick else ''}\n")
    print(machine())
    print()
    print(table(rows))
    print(f"\nWhole run: {elapsed:.0f} s. Ratio = pytest-engagelab / the alternative.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
