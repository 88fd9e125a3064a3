"""Benchmark 2, per test: a generated suite of 500 tests, each sending one OTP, written
three times, as users of each tool would write it (``otp_mock``, pytest-httpx's
``httpx_mock``, respx's ``respx_mock``), each run as a whole
``python -m pytest -q -p no:cacheprovider`` process.  The runs alternate, the
first contender moving along each repetition; the table shows the median CPU and
wall time of each suite, process start-up included (the same installed plugins
load in every run), and the function calls of one more run of each
(deterministic, see ``count_pytest_calls``).

The code under test is the same module for all three: a shared ``httpx.Client``
posting to ``/v1/messages``.  Each test checks the answer and that exactly one
request was made, with the tool's own assertion.

A third row compares the ``otp_mock`` suite with its floor: the same number of tests
that send nothing and use no fixture, with every installed plugin loaded (the plain
suite below, taking turns with the others), which is what pytest itself costs.

Another row runs the same tests on the least any mocking fixture can do (a conftest
fixture patching httpx's transport to a prebuilt answer and counting calls): pytest's
fixture machinery plus one httpx request, which no tool can go under.  It shows where the
0.85x target lies against what is possible at all.

A last row is a suite of 500 tests that use nothing of the kit, run with the plugin
loaded and with ``-p no:engagelab``: the calls per test (the whole run minus the
collection, which is start-up, row 3) must be the same within 1%.
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
    count_pytest_calls,
    medians,
    run_pytest,
    timed_alternation,
    timing,
    timing_ratio,
    verdict,
    write_files,
)

CONTENDERS = ("otp_mock", "httpx_mock", "respx_mock", "least")
MODULES = 10
TARGET = 0.85

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
    "least": """
def test_send_{n}(least_mock):
    assert send_otp("{to}") == "1"
    assert least_mock.calls == 1
""",
}

# The least any mocking fixture can do, written by hand: patch httpx's transport for one
# test, answer a prebuilt response, count the calls, undo the patch.  No routing, no
# matching, no journal, no check at teardown.  It measures what pytest's fixture machinery
# and one httpx request cost together, which no tool can go under.
_LEAST_CONFTEST = """
import json

import httpx
import pytest

from app import URL

BODY = json.dumps({answer!r}).encode()
HEADERS = [("content-type", "application/json")]


class Least:
    calls = 0


@pytest.fixture
def least_mock():
    least = Least()
    original = httpx.HTTPTransport.handle_request

    def handle_request(self, request):
        least.calls += 1
        return httpx.Response(200, headers=HEADERS, content=BODY)

    httpx.HTTPTransport.handle_request = handle_request
    yield least
    httpx.HTTPTransport.handle_request = original
"""


def _suite(root: Path, contender: str, tests: int) -> None:
    per_module = tests // MODULES
    files = {"app.py": _APP}
    if contender == "least":
        files["conftest.py"] = _LEAST_CONFTEST.format(answer=STATIC_ANSWER)
    for module in range(MODULES):
        parts = [_HEADER]
        for index in range(per_module):
            n = module * per_module + index
            parts.append(_BODIES[contender].format(n=f"{n:04d}", to=f"+659100{n:04d}"))
        files[f"test_send_{module:02d}.py"] = "\n".join(parts)
    write_files(root, files)


_PLAIN = "def test_plain_{n}():\n    assert {n} + 1 > {n}\n"


def _plain(root: Path, tests: int) -> None:
    per_module = tests // MODULES
    write_files(
        root,
        {
            f"test_plain_{module:02d}.py": "\n".join(
                _PLAIN.format(n=module * per_module + index) for index in range(per_module)
            )
            for module in range(MODULES)
        },
    )


def measure(tests: int = 500, reps: int = 3) -> list[Row]:
    """CPU and wall time of each suite, the calls of one run of each; rows compare
    ``otp_mock`` with the others, and a suite that never uses the kit with and without it."""
    args = ["-q", "-p", "no:cacheprovider"]
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        roots = {name: Path(tmp) / name for name in CONTENDERS}
        for name, root in roots.items():
            _suite(root, name, tests)
        plain = Path(tmp) / "plain"
        _plain(plain, tests)
        expect = f"{tests} passed"

        def runner(name: str) -> Timing:
            if name.startswith("plain"):
                extra = ["-p", "no:engagelab"] if name == "plain without" else []
                return run_pytest([*args, *extra], plain, expect=expect)
            return run_pytest(args, roots[name], expect=expect)

        names = [*CONTENDERS, "plain with", "plain without"]
        for name in names:  # one unmeasured run each: compile and cache
            runner(name)
        # The plain suite with the plugin loaded takes turns with the others: it is the
        # floor of this row (pytest and every installed plugin, 500 tests, nothing sent).
        timed = [*CONTENDERS, "plain with"]
        runs = timed_alternation({name: partial(runner, name) for name in timed}, reps)
        # The plain suite's verdict is its calls; one timed run without the plugin, for context.
        runs["plain without"] = [runner("plain without")]
        calls = {
            name: count_pytest_calls(args, roots[name], expect=expect) for name in CONTENDERS
        }
        # A test that uses nothing of the kit: the calls of the whole run minus those of
        # collecting it (start-up, which row 3 measures), per test.
        per_test = {}
        for label, extra in (("with", []), ("without", ["-p", "no:engagelab"])):
            whole = count_pytest_calls([*args, *extra], plain, expect=expect)
            collect = count_pytest_calls([*args, "--collect-only", *extra], plain)
            per_test[label] = (whole - collect) / tests
            calls[f"plain {label}"] = whole
    times = {name: medians(found) for name, found in runs.items()}
    ours = times["otp_mock"]
    rows = []
    label = f"Per test: {tests} tests sending one OTP, whole pytest run, median of {reps}"
    for name, title, target in (
        ("httpx_mock", "pytest-httpx `httpx_mock`", f"<= {TARGET}x pytest-httpx's CPU"),
        ("respx_mock", "respx `respx_mock`", "(context)"),
    ):
        theirs = times[name]
        rows.append(
            Row(
                "2",
                label,
                f"`otp_mock` {timing(ours)}; {calls['otp_mock']:,} calls",
                f"{title} {timing(theirs)}; {calls[name]:,} calls",
                f"{timing_ratio(ours, theirs)}; "
                f"{calls['otp_mock'] / calls[name]:.2f}x calls",
                target,
                verdict(ours.cpu <= TARGET * theirs.cpu) if name == "httpx_mock" else "-",
            )
        )
    floor = times["plain with"]
    budget = TARGET * times["httpx_mock"].cpu
    rows.append(
        Row(
            "2",
            label,
            f"`otp_mock` {timing(ours)}; {calls['otp_mock']:,} calls",
            f"floor: the same {tests} tests sending nothing, using no fixture (pytest and "
            f"every installed plugin alone) {timing(floor)}; {calls['plain with']:,} calls",
            f"{timing_ratio(ours, floor)}; {calls['otp_mock'] / calls['plain with']:.2f}x calls",
            f"(context: {TARGET}x pytest-httpx is {budget * 1000:.1f} ms CPU, "
            f"{budget / floor.cpu:.2f}x this floor)",
            "-",
        )
    )
    least = times["least"]
    rows.append(
        Row(
            "2",
            label,
            f"`otp_mock` {timing(ours)}; {calls['otp_mock']:,} calls",
            f"the least any mocking fixture does: one function fixture patching httpx's "
            f"transport to a prebuilt answer and counting calls, the same {tests} tests "
            f"{timing(least)}; {calls['least']:,} calls",
            f"{timing_ratio(ours, least)}; {calls['otp_mock'] / calls['least']:.2f}x calls",
            f"(context: this suite is {least.cpu / times['httpx_mock'].cpu:.2f}x "
            f"pytest-httpx's CPU, against the target's {TARGET}x)",
            "-",
        )
    )
    loaded, unloaded = per_test["with"], per_test["without"]
    rows.append(
        Row(
            "2",
            f"Per test that uses nothing of the kit: {tests} plain tests, calls per test "
            f"(whole run minus collection); times: median of {reps} loaded, one run without",
            f"loaded: {loaded:,.1f} calls per test; {timing(times['plain with'])}",
            f"`-p no:engagelab`: {unloaded:,.1f} calls per test; "
            f"{timing(times['plain without'])}",
            f"{loaded / unloaded:.3f}x calls",
            "same calls per test within 1%",
            verdict(loaded <= 1.01 * unloaded),
        )
    )
    return rows


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
