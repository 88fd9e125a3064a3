"""Many sends at once, through real httpx clients: nothing lost, nothing repeated.

Each test is bounded by a timeout so a deadlock fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import DEFAULT_BASE_URL, Emulator

TIMEOUT = 30.0
TOKEN = base64.b64encode(b"test-dev-key:test-dev-secret").decode()
HEADERS = {"Authorization": f"Basic {TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def otp() -> Iterator[OTPMock]:
    with OTPMock(Emulator(journal_limit=None)) as mock:
        yield mock


def number(worker: int, index: int) -> str:
    return f"+65{worker:03d}{index:05d}"


def assert_all_delivered(otp: OTPMock, answers: list[httpx.Response], recipients: set[str]) -> None:
    """Every answer a 200, every message journaled once, every id unique."""
    assert [a.status_code for a in answers] == [200] * len(recipients)
    answered_ids = {a.json()["message_id"] for a in answers}
    sent = otp.sent
    assert len(sent) == len(recipients)
    assert {m.to for m in sent} == recipients
    assert {m.message_id for m in sent} == answered_ids
    assert len(answered_ids) == len(recipients)
    assert otp.emulator.journal.dropped == 0


@pytest.mark.anyio
async def test_500_concurrent_async_sends_on_one_client(otp: OTPMock) -> None:
    recipients = [number(0, i) for i in range(500)]

    async def send(client: httpx.AsyncClient, to: str) -> httpx.Response:
        return await client.post(
            "/v1/messages", json={"to": to, "template": {"id": "login"}}, headers=HEADERS
        )

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=DEFAULT_BASE_URL, limits=limits) as client:
        answers = await asyncio.wait_for(
            asyncio.gather(*(send(client, to) for to in recipients)), TIMEOUT
        )
    assert_all_delivered(otp, list(answers), set(recipients))


def test_racing_sends_to_one_recipient_deliver_exactly_once(otp: OTPMock) -> None:
    workers = 16
    start = threading.Barrier(workers)

    def worker(_: int) -> int:
        start.wait(TIMEOUT)
        answer = httpx.post(
            f"{DEFAULT_BASE_URL}/v1/messages",
            json={"to": "+6591234567", "template": {"id": "login"}},
            headers=HEADERS,
        )
        code: int = 0 if answer.status_code == 200 else answer.json()["code"]
        return code

    with ThreadPoolExecutor(workers) as pool:
        codes = sorted(pool.map(worker, range(workers), timeout=TIMEOUT))
    assert codes == [0] + [3004] * (workers - 1)  # the frequency limit holds under a race
    otp.assert_sent_once(to="+6591234567")


def test_racing_verifications_of_one_code_succeed_exactly_once(otp: OTPMock) -> None:
    sent = httpx.post(
        f"{DEFAULT_BASE_URL}/v1/messages",
        json={"to": "+6591234567", "template": {"id": "login"}},
        headers=HEADERS,
    )
    message_id = sent.json()["message_id"]
    body = {"message_id": message_id, "verify_code": otp.last_code("+6591234567")}
    workers = 16
    start = threading.Barrier(workers)

    def worker(_: int) -> str:
        start.wait(TIMEOUT)
        answer = httpx.post(f"{DEFAULT_BASE_URL}/v1/verifications", json=body, headers=HEADERS)
        return "verified" if answer.status_code == 200 else str(answer.json()["code"])

    with ThreadPoolExecutor(workers) as pool:
        outcomes = sorted(pool.map(worker, range(workers), timeout=TIMEOUT))
    assert outcomes == ["3003"] * (workers - 1) + ["verified"]


def test_a_bounded_journal_under_concurrency_counts_every_message() -> None:
    emulator = Emulator(journal_limit=100, rate_limit=False)
    workers, per_worker = 4, 150

    def worker(index: int) -> None:
        for i in range(per_worker):
            answer = emulator.handle(
                "POST",
                "/v1/messages",
                {"authorization": HEADERS["Authorization"], "content-type": "application/json"},
                b'{"to": "%s", "template": {"id": "t"}}' % number(index, i).encode(),
            )
            assert getattr(answer, "status", None) == 200

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker, i) for i in range(workers)]:
            future.result(TIMEOUT)
    journal = emulator.journal
    assert (len(journal), journal.dropped) == (100, workers * per_worker - 100)
    assert len({m.message_id for m in journal}) == 100
