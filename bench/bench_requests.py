"""Benchmark 1, per request: N sends through ``otp_mock`` against a bare respx route and
pytest-httpx's ``httpx_mock`` answering the same request with a static JSON body.

Everything runs in one pytest process, through the three fixtures as users meet
them.  One test per (repetition, contender), the contenders alternating and
starting one further along each repetition; each test warms up, then times N
sends from the same ``httpx.Client`` (a different recipient each, so the
emulator's frequency limit never answers 3004) and checks every answer is 200.
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
    ratio,
    run_pytest,
    verdict,
    write_files,
)

CONTENDERS = ("otp_mock", "respx", "httpx_mock")
TARGET = 1.5

_TEST = """
import json
import os
import time

import httpx
import pytest

URL = {url!r}
ANSWER = {answer!r}
N = {sends}
WARMUP = 200
ORDER = {order!r}


def _send_all(client, count, offset):
    for i in range(offset, offset + count):
        response = client.post(URL, json={{"to": f"+6590{{i:07d}}", "template": {{"id": "login"}}}})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(("rep", "contender"), ORDER)
def test_requests(rep, contender, request):
    if contender == "otp_mock":
        mock = request.getfixturevalue("otp_mock")
        auth = (mock.dev_key, mock.dev_secret)
    elif contender == "respx":
        router = request.getfixturevalue("respx_mock")
        router.post(URL).respond(200, json=ANSWER)
        auth = ("test-dev-key", "test-dev-secret")
    else:
        httpx_mock = request.getfixturevalue("httpx_mock")
        httpx_mock.add_response(method="POST", url=URL, json=ANSWER, is_reusable=True)
        auth = ("test-dev-key", "test-dev-secret")
    with httpx.Client(auth=auth) as client:
        _send_all(client, WARMUP, 0)
        start = time.perf_counter()
        _send_all(client, N, WARMUP)
        elapsed = time.perf_counter() - start
    if contender == "otp_mock":
        assert len(mock.sent) == WARMUP + N
    with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
        out.write(json.dumps({{"contender": contender, "seconds": elapsed}}) + "\\n")
"""


def measure(sends: int = 2_000, reps: int = 7) -> list[Row]:
    """Run the benchmark; one row comparing with respx, one with pytest-httpx."""
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
        for line in out.read_text().splitlines():
            record = json.loads(line)
            times[record["contender"]].append(record["seconds"] / sends)
    ours = median(times["otp_mock"])
    label = f"Per request: {sends:,} sends, median of {reps}"
    rows = []
    for name, title in (("respx", "bare respx route"), ("httpx_mock", "pytest-httpx httpx_mock")):
        theirs = median(times[name])
        rows.append(
            Row(
                "1",
                label,
                f"otp_mock {micro(ours)}",
                f"{title} {micro(theirs)}",
                ratio(ours, theirs),
                f"<= {TARGET}x of bare respx" if name == "respx" else "(context)",
                verdict(ours / theirs <= TARGET) if name == "respx" else "-",
            )
        )
    return rows


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
