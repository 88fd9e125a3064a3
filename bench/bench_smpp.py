"""Submits per second through the SMPP door, at 1 and 8 binds.

Run: ``.venv/bin/python bench/bench_smpp.py`` (about 20 s on 2 cores), or as row 7 of
``python -m bench.run``.

N ``smpplib.client.Client`` sessions (threads in this process, one bound transceiver
each) send valid ``submit_sm`` PDUs (service_type MSG, UCS2 JSON, a new recipient every
time, so the frequency limit never answers) back to back, each waiting for its
``submit_sm_resp``, for a fixed time; the bench checks that every answer is
``ESME_ROK``.  For context, ``otp_server`` (the HTTP door over the same emulator work)
is loaded the same way by as many keep-alive ``http.client`` connections
(``bench_server.load``).  Contenders alternate, several rounds, medians.  Beside each
rate, the server's calls per request: each server alone in a child process under cProfile
(``bench_server.calls_per_request``), 512 requests after 200, a run of its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import smpplib.client

from bench._common import Row
from bench.bench_server import SMPP_CHILD, Run, calls_per_request, load, otp_server, run_threads
from pytest_engagelab.doors.smpp import DEFAULT_PASSWORD, DEFAULT_SYSTEM_ID, OTPSMPPServer

BINDS = (1, 8)


class _Account(NamedTuple):
    """Where an SMPP door in another process listens, and its account."""

    host: str
    port: int
    system_id: str
    password: str


def load_smpp(
    server: OTPSMPPServer | _Account,
    binds: int,
    seconds: float,
    base: int,
    *,
    requests: int | None = None,
) -> Run:
    """``binds`` sessions submitting back to back for ``seconds`` (or ``requests`` in all)."""
    latencies: list[list[float]] = [[] for _ in range(binds)]
    errors = [0] * binds
    start = threading.Barrier(binds + 1)
    deadline = [0.0]
    each = None if requests is None else max(1, requests // binds)

    def session(index: int) -> None:
        client = smpplib.client.Client(
            server.host, server.port, timeout=10, allow_unknown_opt_params=True
        )
        client.connect()
        client.bind_transceiver(system_id=server.system_id, password=server.password)
        number = base + index * 1_000_000
        mine = latencies[index]
        body = json.dumps({"id": "login", "language": "en"}).encode("utf-16-be")
        start.wait()
        while True:
            begin = time.perf_counter()
            if (each is None and begin >= deadline[0]) or (each is not None and len(mine) >= each):
                break
            number += 1
            client.send_message(
                service_type="MSG",
                destination_addr=f"+65{number}",
                data_coding=0x08,
                short_message=body,
            )
            resp = client.read_pdu()
            mine.append(time.perf_counter() - begin)
            if resp.status != 0:
                errors[index] += 1
        client.unbind()
        client.disconnect()

    return run_threads(session, binds, seconds, start, deadline, latencies, errors)


#: Requests per call count (after 200 unprofiled ones): a multiple of 1 and 8 binds.  The
#: count includes binding and unbinding the sessions, spread over the 512 requests.
COUNTED = 512


def calls_per_submit(binds: int, requests: int, base: int) -> float:
    """The SMPP door's calls per ``submit_sm``, ``binds`` sessions, in a child process of its
    own under cProfile (``bench_server.calls_per_request``, which counts HTTP requests)."""

    def drive(port: int, count: int, first: int) -> Run:
        account = _Account("127.0.0.1", port, DEFAULT_SYSTEM_ID, DEFAULT_PASSWORD)
        return load_smpp(account, binds, 0, first, requests=count)

    return calls_per_request(SMPP_CHILD, binds, requests, base, drive=drive)


def measure(seconds: float = 1.5, rounds: int = 3) -> list[Row]:
    """Row 7: SMPP submits/s at 1 and 8 binds, against otp_server at as many clients; beside
    each, the server's calls per request over ``COUNTED`` more, in a run of its own."""
    smpp_runs: dict[int, list[Run]] = {n: [] for n in BINDS}
    http_runs: dict[int, list[Run]] = {n: [] for n in BINDS}
    base = 80_000_000
    for binds in BINDS:
        for round_ in range(rounds):
            order = ["smpp", "http"] if round_ % 2 == 0 else ["http", "smpp"]
            for name in order:
                if name == "smpp":
                    with OTPSMPPServer() as server:
                        load_smpp(server, binds, 0.2, base)  # warm up
                        run = load_smpp(server, binds, seconds, base + 40_000_000)
                    smpp_runs[binds].append(run)
                else:
                    with otp_server() as (host, port, headers):
                        load(host, port, headers, binds, 0.2, base)
                        run = load(host, port, headers, binds, seconds, base + 40_000_000)
                    http_runs[binds].append(run)
                base += 80_000_000
                if run.errors:
                    raise RuntimeError(f"bench_smpp {name}: {run.errors} submits were refused")
                print(
                    f"  {binds} bind(s), {name}: {run.rps:,.0f}/s, p99 {run.p99_ms:.2f} ms",
                    file=sys.stderr,
                )
    calls: dict[tuple[str, int], float] = {}
    for binds in BINDS:
        calls[("smpp", binds)] = calls_per_submit(binds, COUNTED, base)
        calls[("http", binds)] = calls_per_request("otp_server", binds, COUNTED, base + 40_000_000)
        base += 80_000_000
    rows = []
    for binds in BINDS:
        ours = statistics.median(r.rps for r in smpp_runs[binds])
        ours_p99 = statistics.median(r.p99_ms for r in smpp_runs[binds])
        theirs = statistics.median(r.rps for r in http_runs[binds])
        theirs_p99 = statistics.median(r.p99_ms for r in http_runs[binds])
        rows.append(
            Row(
                "7",
                f"SMPP door: submit_sm/s, {binds} smpplib bind(s), median of {rounds} x "
                f"{seconds:g} s; the server's calls per request over {COUNTED} more (cProfile, "
                "a run of its own)",
                f"`otp_smpp_server` {ours:,.0f}/s (p99 {ours_p99:.1f} ms), "
                f"{calls[('smpp', binds)]:,.0f} calls",
                f"`otp_server` HTTP, {binds} keep-alive client(s): {theirs:,.0f}/s "
                f"(p99 {theirs_p99:.1f} ms), {calls[('http', binds)]:,.0f} calls",
                f"{ours / theirs:.2f}x",
                "(context: throughput, higher is better)",
                "-",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement (1.5)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per cell (3)")
    args = parser.parse_args(argv)
    for row in measure(args.seconds, args.rounds):
        print(f"| {row.benchmark} | {row.ours} | {row.theirs} | {row.ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
