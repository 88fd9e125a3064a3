"""Reliability at the issue's scale, through both doors (``OTPMock`` and ``OTPServer``).

* Concurrency: 1,000 async sends in flight at once, and 8 threads of 500 sends:
  every answer a 200, every message journaled exactly once, no message id
  repeated, and every test bounded by a timeout so a deadlock fails instead of
  hanging.
* Memory: once the journal drops a message, nothing still holds its request.
* Soak: 50,000 requests from 32 keep-alive clients against one ``OTPServer``: no
  error, and the open file descriptors and threads are the same after the last
  ten thousand as after the first ten thousand.

Smaller concurrency checks (races on one recipient, one code) are in
``test_concurrency.py``.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import http.client
import json
import os
import ssl
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from pytest_engagelab.doors.controls import EmulatorControls
from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.emulator.core import Emulator

TIMEOUT = 60.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server_log() -> list[str]:
    """The loopback server's log lines: one per request, starting with the client's address."""
    return []


@pytest.fixture(params=["otp_mock", "otp_server"])
def door(request: pytest.FixtureRequest, server_log: list[str]) -> Iterator[EmulatorControls]:
    """A fresh emulator keeping every message, behind the respx door or a loopback server."""
    emulator = Emulator(journal_limit=None)
    controls: OTPMock | OTPServer = (
        OTPMock(emulator)
        if request.param == "otp_mock"
        else OTPServer(emulator, log=server_log.append)
    )
    with controls:
        yield controls


def recipient(worker: int, index: int) -> str:
    return f"+65{worker:03d}{index:06d}"


def send_body(to: str) -> dict[str, object]:
    return {"to": to, "template": {"id": "login", "language": "en"}}


def assert_each_delivered_once(
    door: EmulatorControls, answers: list[httpx.Response], recipients: list[str]
) -> None:
    """Nothing lost, nothing doubled: one 200 and one journal entry per recipient, and the
    ids the clients were given are exactly the journal's, with no repeats."""
    failed = [(a.status_code, a.text) for a in answers if a.status_code != 200]
    assert failed == []
    assert len(answers) == len(recipients)
    given = [a.json()["message_id"] for a in answers]
    journal = door.sent
    assert sorted(m.to for m in journal) == sorted(recipients)
    assert len(set(given)) == len(given)
    assert sorted(m.message_id for m in journal) == sorted(given)


@pytest.mark.anyio
async def test_1000_async_sends_in_flight(door: EmulatorControls, server_log: list[str]) -> None:
    """1,000 sends started before any is sent.  httpx's async pool slows quadratically with
    requests queued on one client, so they are spread over 100 clients of 10, each request on
    its own connection: against the server, up to 1,000 sockets are open at once."""
    sends, clients = 1_000, 100
    recipients = [recipient(0, i) for i in range(sends)]
    everyone_started = asyncio.Event()
    started = 0

    async def send(client: httpx.AsyncClient, to: str) -> httpx.Response:
        nonlocal started
        started += 1
        if started == sends:
            everyone_started.set()
        await everyone_started.wait()
        return await client.post("/v1/messages", json=send_body(to))

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    tls = ssl.create_default_context()  # one, not one per client
    pool = [
        httpx.AsyncClient(
            base_url=door.base_url,
            auth=(door.dev_key, door.dev_secret),
            limits=limits,
            timeout=TIMEOUT,
            verify=tls,
        )
        for _ in range(clients)
    ]
    try:
        answers = await asyncio.wait_for(
            asyncio.gather(*(send(pool[i % clients], to) for i, to in enumerate(recipients))),
            TIMEOUT,
        )
    finally:
        for client in pool:
            await client.aclose()
    assert_each_delivered_once(door, list(answers), recipients)
    if isinstance(door, OTPServer):
        connections = {line.split(" ", 1)[0] for line in server_log}
        assert len(connections) > sends // 2, f"only {len(connections)} connections were used"


def test_8_threads_of_500_sends(door: EmulatorControls) -> None:
    workers, per_worker = 8, 500
    start = threading.Barrier(workers)
    auth = (door.dev_key, door.dev_secret)

    def worker(index: int) -> list[httpx.Response]:
        with httpx.Client(base_url=door.base_url, auth=auth, timeout=TIMEOUT) as client:
            start.wait(TIMEOUT)
            return [
                client.post("/v1/messages", json=send_body(recipient(index, i)))
                for i in range(per_worker)
            ]

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(worker, index) for index in range(workers)]
        answers = [answer for future in futures for answer in future.result(TIMEOUT)]
    recipients = [recipient(w, i) for w in range(workers) for i in range(per_worker)]
    assert_each_delivered_once(door, answers, recipients)


def test_verifying_2000_codes_from_8_threads(door: EmulatorControls) -> None:
    """Sends and verifications interleaved from 8 threads: every code verifies once."""
    workers, per_worker = 8, 250
    auth = (door.dev_key, door.dev_secret)

    def worker(index: int) -> list[bool]:
        outcomes = []
        with httpx.Client(base_url=door.base_url, auth=auth, timeout=TIMEOUT) as client:
            for i in range(per_worker):
                to = recipient(index, i)
                sent = client.post("/v1/messages", json=send_body(to)).json()
                body = {"message_id": sent["message_id"], "verify_code": door.last_code(to)}
                outcomes.append(client.post("/v1/verifications", json=body).json()["verified"])
        return outcomes

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(worker, index) for index in range(workers)]
        outcomes = [ok for future in futures for ok in future.result(TIMEOUT)]
    assert outcomes == [True] * (workers * per_worker)


def test_requests_beyond_the_journal_limit_are_not_kept_anywhere() -> None:
    """A long test's memory is bounded: once the journal drops a message, nothing (respx
    included) still holds the request that sent it."""
    limit, sends = 100, 1_000
    alive: list[weakref.ref[httpx.Request]] = []

    def remember(request: httpx.Request) -> None:
        alive.append(weakref.ref(request))

    with OTPMock(Emulator(journal_limit=limit)) as otp:
        auth = (otp.dev_key, otp.dev_secret)
        hooks = {"request": [remember]}
        with httpx.Client(base_url=otp.base_url, auth=auth, event_hooks=hooks) as client:
            for i in range(sends):
                assert client.post("/v1/messages", json=send_body(recipient(0, i))).is_success
        gc.collect()
        kept = sum(ref() is not None for ref in alive)
        assert len(alive) == sends
        assert kept <= limit, f"{kept} of {sends} requests are still in memory"
        assert (len(otp.sent), otp.emulator.journal.dropped) == (limit, sends - limit)


# -- soak ------------------------------------------------------------------------------

SOAK_REQUESTS = 50_000
SOAK_CLIENTS = 32
SOAK_PHASES = 5  # of 10,000 requests; resources are compared after the first and the last


@dataclass
class Soak:
    """What the soak's clients saw, and the process's resources after each phase."""

    errors: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _soak_client(server: OTPServer, index: int, soak: Soak, phase_done: threading.Barrier) -> None:
    token = base64.b64encode(f"{server.dev_key}:{server.dev_secret}".encode()).decode()
    headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
    per_phase = SOAK_REQUESTS // SOAK_PHASES
    mine = range(index, per_phase, SOAK_CLIENTS)  # this client's share of each phase
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    ids, errors = [], []
    try:
        for phase in range(SOAK_PHASES):
            for n in mine:
                to = recipient(phase, n)
                try:
                    conn.request("POST", "/v1/messages", json.dumps(send_body(to)), headers)
                    response = conn.getresponse()
                    body = response.read()
                except (OSError, http.client.HTTPException) as error:
                    errors.append(f"{to}: {type(error).__name__}: {error}")
                    conn.close()  # http.client reconnects on the next request
                    continue
                if response.status != 200:
                    errors.append(f"{to}: HTTP {response.status} {body[:200]!r}")
                else:
                    ids.append(json.loads(body)["message_id"])
            phase_done.wait(TIMEOUT)  # the main thread samples while every client is idle
            phase_done.wait(TIMEOUT)
    finally:
        conn.close()
        with soak.lock:
            soak.ids.extend(ids)
            soak.errors.extend(errors)


def test_soak_50000_requests_from_32_keep_alive_clients() -> None:
    soak = Soak()
    phase_done = threading.Barrier(SOAK_CLIENTS + 1)
    started = time.perf_counter()
    connections: set[str] = set()
    with OTPServer(log=lambda line: connections.add(line.split(" ", 1)[0])) as server:
        clients = [
            threading.Thread(target=_soak_client, args=(server, i, soak, phase_done), daemon=True)
            for i in range(SOAK_CLIENTS)
        ]
        for thread in clients:
            thread.start()
        for _ in range(SOAK_PHASES):
            phase_done.wait(TIMEOUT)
            soak.fds.append(_open_fds())
            soak.threads.append(threading.active_count())
            phase_done.wait(TIMEOUT)
        for thread in clients:
            thread.join(TIMEOUT)
        assert not any(thread.is_alive() for thread in clients), "a soak client hung"
        journal = server.emulator.journal
        delivered = len(journal) + journal.dropped
    elapsed = time.perf_counter() - started
    assert soak.errors[:10] == []
    assert len(soak.ids) == SOAK_REQUESTS
    assert len(set(soak.ids)) == SOAK_REQUESTS
    assert delivered == SOAK_REQUESTS
    assert len(connections) == SOAK_CLIENTS  # every client kept its one connection alive
    # 32 client sockets + 32 server ends + listener and waker, from the first phase on.
    assert soak.fds[-1] <= soak.fds[0], f"open fds per phase grew: {soak.fds}"
    assert soak.threads[-1] <= soak.threads[0], f"threads per phase grew: {soak.threads}"
    print(f"soak: {elapsed:.1f} s; fds {soak.fds}; threads {soak.threads}")
