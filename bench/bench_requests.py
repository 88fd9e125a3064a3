"""Benchmark 1, per request: N sends through ``otp_mock`` against the floor (a bare
``httpx.MockTransport`` handler answering a prebuilt body), respx (its default,
httpcore-level mocker, and ``using="httpx"``, the level ``otp_mock`` intercepts at) and
pytest-httpx's ``httpx_mock``, sync and async.

Everything runs in one pytest process, through the fixtures as users meet them.  One
test per (repetition, contender), the contenders alternating and starting one further
along each repetition; each test warms up, then times N sends from one client (a
different recipient each, so the emulator's frequency limit never answers 3004) and
checks every answer is 200.  Times are the test thread's CPU time
(``time.thread_time``), which other load on the machine disturbs far less than the
wall clock.  Beside each time: the function calls per request, counted with
``cProfile`` over 200 more sends (deterministic: they do not move with machine noise),
and the objects the garbage collector tracks that each send leaves behind (the
``len(gc.get_objects())`` after a full collection, after the N sends minus before them,
over N): what every later collection of the older generations has to walk.
Setting up and tearing down the fixture is not timed: that is benchmark 2.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from bench._common import (
    SEND_URL,
    STATIC_ANSWER,
    Row,
    alternate,
    median,
    micro,
    run_pytest,
    verdict,
    write_files,
)

CONTENDERS = (
    "otp_mock",
    "floor",
    "respx_httpx",
    "respx",
    "httpx_mock",
    "otp_mock_async",
    "floor_async",
)
TARGET = 1.2
TITLES = {
    "floor": "floor: bare `httpx.MockTransport` handler, prebuilt body",
    "floor_async": "floor: bare `httpx.MockTransport` handler, prebuilt body (async)",
    "respx_httpx": 'respx route, `respx.mock(using="httpx")` (the level `otp_mock` patches)',
    "respx": "respx route, `respx_mock` default (httpcore level, does more work)",
    "httpx_mock": "pytest-httpx `httpx_mock`",
}

_TEST = """
import asyncio
import cProfile
import gc
import json
import os
import pstats
import time

import httpx
import pytest
import respx

URL = {url!r}
ANSWER = {answer!r}
BODY = json.dumps(ANSWER).encode()
HEADERS = [("content-type", "application/json")]
AUTH = ("test-dev-key", "test-dev-secret")
N = {sends}
WARMUP = 200
COUNTED = 200
ORDER = {order!r}


def floor_handler(request):
    return httpx.Response(200, headers=HEADERS, content=BODY)


def _send_all(client, count, offset):
    for i in range(offset, offset + count):
        response = client.post(URL, json={{"to": f"+6590{{i:07d}}", "template": {{"id": "login"}}}})
        assert response.status_code == 200, response.text


async def _asend_all(client, count, offset):
    for i in range(offset, offset + count):
        body = {{"to": f"+6590{{i:07d}}", "template": {{"id": "login"}}}}
        response = await client.post(URL, json=body)
        assert response.status_code == 200, response.text


def _tracked():
    gc.collect()
    return len(gc.get_objects())


def _measure(client):
    _send_all(client, WARMUP, 0)
    tracked = _tracked()
    start = time.thread_time()
    _send_all(client, N, WARMUP)
    elapsed = time.thread_time() - start
    kept = (_tracked() - tracked) / N
    profile = cProfile.Profile()
    profile.enable()
    _send_all(client, COUNTED, WARMUP + N)
    profile.disable()
    return elapsed, pstats.Stats(profile).total_calls / COUNTED, kept


async def _ameasure(client):
    await _asend_all(client, WARMUP, 0)
    tracked = _tracked()
    start = time.thread_time()
    await _asend_all(client, N, WARMUP)
    elapsed = time.thread_time() - start
    kept = (_tracked() - tracked) / N
    profile = cProfile.Profile()
    profile.enable()
    await _asend_all(client, COUNTED, WARMUP + N)
    profile.disable()
    return elapsed, pstats.Stats(profile).total_calls / COUNTED, kept


async def _async_run(**kwargs):
    async with httpx.AsyncClient(auth=AUTH, **kwargs) as client:
        return await _ameasure(client)


@pytest.mark.parametrize(("rep", "contender"), ORDER)
def test_requests(rep, contender, request):
    if contender == "otp_mock":
        request.getfixturevalue("otp_mock")
        with httpx.Client(auth=AUTH) as client:
            elapsed, calls, kept = _measure(client)
    elif contender == "otp_mock_async":
        request.getfixturevalue("otp_mock")
        elapsed, calls, kept = asyncio.run(_async_run())
    elif contender == "floor":
        with httpx.Client(auth=AUTH, transport=httpx.MockTransport(floor_handler)) as client:
            elapsed, calls, kept = _measure(client)
    elif contender == "floor_async":
        elapsed, calls, kept = asyncio.run(_async_run(transport=httpx.MockTransport(floor_handler)))
    elif contender == "respx":
        router = request.getfixturevalue("respx_mock")
        router.post(URL).respond(200, json=ANSWER)
        with httpx.Client(auth=AUTH) as client:
            elapsed, calls, kept = _measure(client)
    elif contender == "respx_httpx":
        with respx.mock(using="httpx") as router:
            router.post(URL).respond(200, json=ANSWER)
            with httpx.Client(auth=AUTH) as client:
                elapsed, calls, kept = _measure(client)
    else:
        httpx_mock = request.getfixturevalue("httpx_mock")
        httpx_mock.add_response(method="POST", url=URL, json=ANSWER, is_reusable=True)
        with httpx.Client(auth=AUTH) as client:
            elapsed, calls, kept = _measure(client)
    if contender.startswith("otp_mock"):
        assert len(request.getfixturevalue("otp_mock").sent) == WARMUP + N + COUNTED
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        record = {{"contender": contender, "seconds": elapsed, "calls": calls, "kept": kept}}
        out.write(json.dumps(record) + "\\n")
"""


def _kept(per_send: float) -> str:
    # A few objects freed or made by the run itself, over 2,000 sends, are no object kept:
    # shown as 0.0, not -0.0.
    return f"{per_send:.1f}" if round(per_send, 1) != 0 else "0.0"


def measure(sends: int = 2_000, reps: int = 7) -> list[Row]:
    """Run the benchmark: ``otp_mock`` (sync and async) against each other contender."""
    order = alternate(CONTENDERS, reps)
    with tempfile.TemporaryDirectory(prefix="bench-requests-") as tmp:
        root = Path(tmp)
        out = root / "times.jsonl"
        source = _TEST.format(url=SEND_URL, answer=STATIC_ANSWER, sends=sends, order=order)
        write_files(root, {"test_requests.py": source})
        run_pytest(
            ["-q", "-p", "no:cacheprovider", "test_requests.py"],
            root,
            env={"BENCH_OUT": str(out)},
            expect=f"{len(order)} passed",
        )
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        calls: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        kept: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for line in out.read_text().splitlines():
            record = json.loads(line)
            times[record["contender"]].append(record["seconds"] / sends)
            calls[record["contender"]].append(record["calls"])
            kept[record["contender"]].append(record["kept"])

    def cell(name: str, title: str) -> str:
        return (
            f"{title} {micro(median(times[name]))} CPU, {median(calls[name]):.0f} calls, "
            f"{_kept(median(kept[name]))} tracked objects kept per send"
        )

    label = f"Per request: {sends:,} sends, median of {reps}"
    rows = []
    for ours, name, target in (
        ("otp_mock", "floor", True),
        ("otp_mock_async", "floor_async", True),
        ("otp_mock", "respx_httpx", False),
        ("otp_mock", "respx", False),
        ("otp_mock", "httpx_mock", False),
    ):
        ratio = median(times[ours]) / median(times[name])
        call_ratio = median(calls[ours]) / median(calls[name])
        title = "`otp_mock` (async)" if ours.endswith("async") else "`otp_mock`"
        rows.append(
            Row(
                "1",
                label,
                cell(ours, title),
                cell(name, TITLES[name]),
                f"{ratio:.2f}x CPU ({call_ratio:.2f}x calls)",
                f"<= {TARGET}x of the floor" if target else "(context)",
                verdict(ratio <= TARGET) if target else "-",
            )
        )
    return rows


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
