"""Benchmark 2, per test: a generated suite of 500 tests, each sending one OTP, written
three times, as users of each tool would write it (``otp_mock``, pytest-httpx's
``httpx_mock``, respx's ``respx_mock``), each run as a whole
``python -m pytest -q -p no:cacheprovider`` process.  The runs alternate, the
first contender moving along each repetition; the table shows the median wall
time of each suite, process start-up included (the same installed plugins load
in every run).

The code under test is the same module for all three: a shared ``httpx.Client``
posting to ``/v1/messages``.  Each test checks the answer and that exactly one
request was made, with the tool's own assertion.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from bench._common import (
    SEND_URL,
    STATIC_ANSWER,
    Row,
    Timing,
    medians,
    run_pytest,
    timed_alternation,
    timing,
    timing_ratio,
    verdict,
    write_files,
)

CONTENDERS = ("otp_mock", "httpx_mock", "respx_mock")
MODULES = 10

_APP = f"""
import httpx

URL = {SEND_URL!r}
CLIENT = httpx.Client(auth=("test-dev-key", "test-dev-secret"))


def send_otp(to):
    response = CLIENT.post(URL, json={{"to": to, "template": {{"id": "login", "language": "en"}}}})
    response.raise_for_status()
    return response.json()["message_id"]
"""

_HEADER = f"""
from app import URL, send_otp

ANSWER = {STATIC_ANSWER!r}
"""

_BODIES = {
    "otp_mock": """
def test_send_{n}(otp_mock):
    assert send_otp("{to}")
    otp_mock.assert_sent_once(to="{to}", template_id="login")
""",
    "httpx_mock": """
def test_send_{n}(httpx_mock):
    httpx_mock.add_response(method="POST", url=URL, json=ANSWER)
    assert send_otp("{to}") == "1"
    assert len(httpx_mock.get_requests()) == 1
""",
    "respx_mock": """
def test_send_{n}(respx_mock):
    route = respx_mock.post(URL).respond(json=ANSWER)
    assert send_otp("{to}") == "1"
    assert route.call_count == 1
""",
}


def _suite(root: Path, contender: str, tests: int) -> None:
    per_module = tests // MODULES
    files = {"app.py": _APP}
    for module in range(MODULES):
        parts = [_HEADER]
        for index in range(per_module):
            n = module * per_module + index
            parts.append(_BODIES[contender].format(n=f"{n:04d}", to=f"+659100{n:04d}"))
        files[f"test_send_{module:02d}.py"] = "\n".join(parts)
    write_files(root, files)


def measure(tests: int = 500, reps: int = 3) -> list[Row]:
    """Median CPU and wall time of each suite; rows compare ``otp_mock`` with the others."""
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        roots = {name: Path(tmp) / name for name in CONTENDERS}
        for name, root in roots.items():
            _suite(root, name, tests)

        def runner(name: str) -> Timing:
            args = ["-q", "-p", "no:cacheprovider"]
            return run_pytest(args, roots[name], expect=f"{tests} passed")

        for name in CONTENDERS:  # one unmeasured run each: warm the caches
            runner(name)
        runs = timed_alternation({name: partial(runner, name) for name in CONTENDERS}, reps)
    times = {name: medians(found) for name, found in runs.items()}
    ours = times["otp_mock"]
    rows = []
    label = f"Per test: {tests} tests sending one OTP, whole pytest run, median of {reps}"
    for name, title, target in (
        ("httpx_mock", "pytest-httpx `httpx_mock`", "no slower than pytest-httpx"),
        ("respx_mock", "respx `respx_mock`", "(context)"),
    ):
        theirs = times[name]
        met = verdict(ours.cpu <= theirs.cpu) if name == "httpx_mock" else "-"
        rows.append(
            Row(
                "2",
                label,
                f"`otp_mock` {timing(ours)}",
                f"{title} {timing(theirs)}",
                timing_ratio(ours, theirs),
                target,
                met,
            )
        )
    return rows


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
