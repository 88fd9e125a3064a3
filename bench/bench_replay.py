"""Benchmark 4, replay: one cassette of 1,000 recorded interactions, replayed through the
plugin's ``@pytest.mark.engagelab_cassette`` and through pytest-recording's
``@pytest.mark.vcr``; and 4b, the plugin's cost per replayed request for cassettes of
100, 1,000 and 10,000 interactions (flat: replay finds each answer by a dictionary
look-up, not by comparing the request with every recorded one).

The cassette is recorded for real, once, by the plugin (``--engagelab-record-mode=once``)
against a loopback ``OTPServer`` standing in for EngageLab: 1,000 ``POST
/v1/messages`` to different recipients.  Each replay then gets its own copy of
it and runs offline (server stopped, no credentials), in one pytest process:
one test per (repetition, contender), alternating, the first repetition
discarded as warm-up.  A test's time is its whole run (setup loads the
cassette, the call replays 1,000 requests from the same ``httpx.Client``,
teardown unpatches), measured by a ``pytest_runtest_protocol`` wrapper.

The code under test is the same for both; each tool replays with its own
defaults (the plugin matches method, path and JSON body; pytest-recording
vcrpy's default: method, scheme, host, port, path and query).

For 4b the cassettes of 100 and 10,000 interactions are made from the recorded
one (its first interaction, with the recipient and message id varied, so every
file has the same shape); each size is replayed ``reps`` times after a warm-up,
and a test's whole time (loading included) is divided by its number of requests.

Beside the times, calls per replayed request (``count_pytest_calls``), in pytest runs of
their own after the timed ones: one test replaying every interaction of a cassette minus
the same test replaying none, over their number (start-up, collection and loading the
cassette cancel out); both contenders on the smallest sweep size, the plugin also on the
next one, where its count per request is the same.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import (
    Row,
    alternate,
    count_pytest_calls,
    median,
    micro,
    milli,
    ratio,
    run_pytest,
    verdict,
    write_files,
)

CONTENDERS = ("engagelab_cassette", "pytest-recording")
KEY = "bench-live-key-3c9e1a"
SECRET = "bench-live-secret-Vb72Qe"

_SEND = """
import os

import httpx

URL = os.environ["BENCH_URL"] + "/v1/messages"
N = int(os.environ["BENCH_N"])


def send_all(auth, n=N):
    with httpx.Client(auth=auth) as client:
        for i in range(n):
            body = {"to": f"+6590{i:07d}", "template": {"id": "login", "language": "en"}}
            answer = client.post(URL, json=body)
            assert answer.status_code == 200, answer.text
"""

_RECORD = """
import pytest

from send import send_all


@pytest.mark.engagelab_cassette("recorded")
def test_record(engagelab_cassette):
    credentials = engagelab_cassette.credentials
    send_all((credentials.dev_key, credentials.dev_secret))
"""

_REPLAY = """
import pytest

from send import send_all

ORDER = {order!r}


def _param(rep, contender):
    if contender == "engagelab_cassette":
        mark = pytest.mark.engagelab_cassette(f"replay/engagelab-{{rep}}")
    else:
        mark = [pytest.mark.vcr, pytest.mark.default_cassette(f"pytest-recording-{{rep}}.yaml")]
    return pytest.param(rep, contender, marks=mark, id=f"{{rep}}-{{contender}}")


@pytest.mark.parametrize(("rep", "contender"), [_param(r, c) for r, c in ORDER])
def test_replay(rep, contender, request):
    if contender == "engagelab_cassette":
        credentials = request.getfixturevalue("engagelab_cassette").credentials
        send_all((credentials.dev_key, credentials.dev_secret))
    else:
        send_all(("test-dev-key", "test-dev-secret"))
"""

_SWEEP = """
import pytest

from send import send_all

ORDER = {order!r}


@pytest.mark.parametrize(
    ("rep", "size"),
    [
        pytest.param(rep, size, marks=pytest.mark.engagelab_cassette(f"sweep/{{size}}"),
                     id=f"{{rep}}-{{size}}")
        for rep, size in ORDER
    ],
)
def test_sweep(rep, size, engagelab_cassette):
    credentials = engagelab_cassette.credentials
    send_all((credentials.dev_key, credentials.dev_secret), size)
"""

#: One test replaying BENCH_N requests from cassette BENCH_CASSETTE through
#: BENCH_CONTENDER, counted under cProfile (``_calls_per_request``), never timed.
_COUNT = """
import os

import pytest

from send import send_all

CONTENDER = os.environ["BENCH_CONTENDER"]
CASSETTE = os.environ["BENCH_CASSETTE"]
if CONTENDER == "engagelab_cassette":
    MARKS = [pytest.mark.engagelab_cassette(CASSETTE)]
else:
    MARKS = [pytest.mark.vcr, pytest.mark.default_cassette(CASSETTE + ".yaml")]


@pytest.mark.parametrize("contender", [pytest.param(CONTENDER, marks=MARKS)])
def test_count(contender, request):
    n = int(os.environ["BENCH_N"])
    if contender == "engagelab_cassette":
        credentials = request.getfixturevalue("engagelab_cassette").credentials
        send_all((credentials.dev_key, credentials.dev_secret), n)
    else:
        send_all(("test-dev-key", "test-dev-secret"), n)
"""

_CONFTEST = """
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest


@pytest.fixture
def vcr_cassette_dir():
    return str(Path(__file__).parent / "cassettes" / "replay")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    start = time.perf_counter()
    try:
        return (yield)
    finally:
        if "BENCH_OUT" in os.environ and hasattr(item, "callspec"):
            elapsed = time.perf_counter() - start
            record = dict(item.callspec.params, seconds=elapsed)
            with open(os.environ["BENCH_OUT"], "a", encoding="utf-8") as out:
                out.write(json.dumps(record) + "\\n")
"""


def stable_url(url: str) -> str:
    from pytest_engagelab.cassettes.files import stable_url as stable

    return stable(url)


def _record(root: Path, interactions: int) -> Path:
    from pytest_engagelab.cassettes import read_cassette
    from pytest_engagelab.doors.server import OTPServer
    from pytest_engagelab.emulator.core import Emulator

    with OTPServer(Emulator(dev_key=KEY, dev_secret=SECRET, rate_limit=False)) as live:
        env = {
            "ENGAGELAB_DEV_KEY": KEY,
            "ENGAGELAB_DEV_SECRET": SECRET,
            "ENGAGELAB_BASE_URL": live.url,
            "BENCH_URL": live.url,
            "BENCH_N": str(interactions),
        }
        args = ["-q", "-p", "no:cacheprovider", "--engagelab-record-mode=once", "test_record.py"]
        run_pytest(args, root, env=env, expect="1 passed")
        url = live.url
    recorded = root / "cassettes" / "recorded.yaml"
    found = len(read_cassette(recorded)["interactions"])
    if found != interactions:
        raise RuntimeError(f"{recorded}: recorded {found} interactions, not {interactions}")
    if KEY in recorded.read_text() or SECRET in recorded.read_text():
        raise RuntimeError(f"{recorded}: the recording credentials were written")
    (root / "bench_url").write_text(url)
    return recorded


def _sized(recorded: Path, size: int, target: Path) -> None:
    """A cassette of ``size`` interactions shaped like the first one of ``recorded``."""
    import copy

    from pytest_engagelab.cassettes import read_cassette
    from pytest_engagelab.cassettes.files import dump_yaml

    data = read_cassette(recorded)
    first = data["interactions"][0]
    interactions = []
    for i in range(size):
        interaction = copy.deepcopy(first)
        body = json.loads(interaction["request"]["body"])
        body["to"] = f"+6590{i:07d}"
        interaction["request"]["body"] = json.dumps(body, separators=(",", ":"))
        answer = json.loads(interaction["response"]["body"]["string"])
        answer["message_id"] = str(10**18 + i)
        interaction["response"]["body"]["string"] = json.dumps(answer, separators=(",", ":"))
        interactions.append(interaction)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(dump_yaml({**data, "interactions": interactions}), encoding="utf-8")


def _calls_per_request(
    root: Path, url: str, jobs: dict[str, tuple[str, str, int]]
) -> dict[str, float]:
    """Function calls per replayed request (``count_pytest_calls``) of each job (label ->
    contender, cassette, size): the same test on the same cassette of ``size`` interactions,
    replaying all of them minus replaying none, over ``size``.  Start-up, collection and
    loading the cassette cancel out, so only the two contenders' plugins are loaded (a
    counted process then takes a second, not four), and the processes run two at a time
    (a count does not depend on what else runs, as ``count_pytest_instructions`` says)."""

    def count(job: tuple[str, str, int], n: int) -> int:
        contender, cassette, _size = job
        env = {
            "BENCH_URL": url,
            "BENCH_CONTENDER": contender,
            "BENCH_CASSETTE": cassette,
            "BENCH_N": str(n),
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        return count_pytest_calls(_COUNT_ARGS, root, env=env, expect="1 passed")

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            (label, n): pool.submit(count, job, n)
            for label, job in jobs.items()
            for n in (job[2], 0)
        }
        return {
            label: (runs[(label, size)].result() - runs[(label, 0)].result()) / size
            for label, (_contender, _cassette, size) in jobs.items()
        }


#: The counted runs' arguments: the two contenders' plugins, no other.
_COUNT_ARGS = (
    "-q",
    "-p",
    "no:cacheprovider",
    "-p",
    "pytest_engagelab.plugin",
    "-p",
    "pytest_recording.plugin",
    "test_count.py",
)


def measure(
    interactions: int = 1_000, reps: int = 5, sizes: tuple[int, ...] | None = None
) -> list[Row]:
    """Row 4: median time of a test replaying ``interactions`` requests, for each
    contender.  Row 4b: the plugin's time per replayed request for each of ``sizes``
    (default 100, 1,000 and 10,000; ten times ``interactions`` at most when it is small).
    Beside them, calls per replayed request in runs of their own: both contenders on a
    cassette of ``sizes[0]`` interactions, and the plugin on ``sizes[1]``."""
    if sizes is None:
        sizes = (100, 1_000, 10_000) if interactions >= 1_000 else (interactions, 10 * interactions)
    order = alternate(CONTENDERS, reps + 1)  # rep 0 is a warm-up
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        root = Path(tmp)
        write_files(
            root,
            {
                "pytest.ini": "[pytest]\n",
                "send.py": _SEND,
                "conftest.py": _CONFTEST,
                "test_record.py": _RECORD,
                "test_replay.py": _REPLAY.format(order=order),
            },
        )
        recorded = _record(root, interactions)
        copies = root / "cassettes" / "replay"
        copies.mkdir()
        url = (root / "bench_url").read_text()
        # The plugin writes a loopback stand-in's URL without its (ephemeral) port;
        # pytest-recording matches on the port by default, so its copies get it back.
        with_port = recorded.read_text().replace(stable_url(url) + "/", url + "/")
        for rep, contender in order:
            copy = copies / f"{contender.replace('_cassette', '')}-{rep}.yaml"
            if contender == "engagelab_cassette":
                shutil.copyfile(recorded, copy)
            else:
                copy.write_text(with_port, encoding="utf-8")
        out = root / "times.jsonl"
        env = {
            "BENCH_OUT": str(out),
            "BENCH_URL": url,
            "BENCH_N": str(interactions),
        }
        run_pytest(
            ["-q", "-p", "no:cacheprovider", "test_replay.py"],
            root,
            env=env,
            expect=f"{len(order)} passed",
        )
        times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for line in out.read_text().splitlines():
            record = json.loads(line)
            if record["rep"] > 0:
                times[record["contender"]].append(record["seconds"])

        sweep_order = [(rep, size) for rep in range(min(reps, 3) + 1) for size in sizes]
        for size in sizes:
            _sized(recorded, size, root / "cassettes" / "sweep" / f"{size}.yaml")
        (root / "test_sweep.py").write_text(_SWEEP.format(order=sweep_order), encoding="utf-8")
        out.unlink()
        run_pytest(
            ["-q", "-p", "no:cacheprovider", "test_sweep.py"],
            root,
            env=env,
            expect=f"{len(sweep_order)} passed",
        )
        per_request: dict[int, list[float]] = {size: [] for size in sizes}
        for line in out.read_text().splitlines():
            record = json.loads(line)
            if record["rep"] > 0:
                per_request[record["size"]].append(record["seconds"] / record["size"])

        # Calls, in runs of their own after the timed ones: the plugin's per request stay
        # the same from one size to the next (4b shows it), so the sizes counted are small.
        counted = sizes[:2]
        began = time.perf_counter()
        vcr_copy = copies / f"count-{counted[0]}.yaml"
        _sized(recorded, counted[0], vcr_copy)
        vcr_copy.write_text(
            vcr_copy.read_text().replace(stable_url(url) + "/", url + "/"), encoding="utf-8"
        )
        write_files(root, {"test_count.py": _COUNT})
        warm_up = {
            "BENCH_URL": url,
            "BENCH_N": "0",
            "BENCH_CONTENDER": "engagelab_cassette",
            "BENCH_CASSETTE": f"sweep/{counted[0]}",
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        # caches test_count.py's bytecode, which the counts must not include
        run_pytest(_COUNT_ARGS, root, env=warm_up, expect="1 passed")
        jobs = {str(size): ("engagelab_cassette", f"sweep/{size}", size) for size in counted}
        jobs["vcr"] = ("pytest-recording", f"count-{counted[0]}", counted[0])
        counts = _calls_per_request(root, url, jobs)
        calls = {size: counts[str(size)] for size in counted}
        vcr_calls = counts["vcr"]
        print(f"  calls counted in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    ours, theirs = median(times["engagelab_cassette"]), median(times["pytest-recording"])
    costs = {size: median(values) for size, values in per_request.items()}
    smallest, largest = costs[sizes[0]], costs[sizes[-1]]
    return [
        Row(
            "4",
            f"Replay: one cassette of {interactions:,} recorded interactions, whole test, "
            f"median of {reps}; calls per replayed request on a cassette of {counted[0]:,} "
            "(cProfile, a run of its own: replaying all minus none, over their number)",
            f"`engagelab_cassette` {milli(ours)}, {calls[counted[0]]:,.0f} calls",
            f"pytest-recording `vcr` {milli(theirs)}, {vcr_calls:,.0f} calls (more per "
            "request on a larger cassette)",
            f"{ratio(ours, theirs)} ({ratio(calls[counted[0]], vcr_calls)} calls)",
            "at most 0.2x pytest-recording",
            verdict(ours <= 0.2 * theirs),
        ),
        Row(
            "4b",
            "Replay: time per request (whole test / requests), cassettes of "
            + ", ".join(f"{size:,}" for size in sizes)
            + f" interactions, median of {min(reps, 3)}; calls per replayed request at "
            + " and ".join(f"{size:,}" for size in counted)
            + " (as in row 4)",
            ", ".join(f"{size:,}: {micro(costs[size])}" for size in sizes)
            + "; "
            + ", ".join(f"{size:,}: {calls[size]:,.0f} calls" for size in counted),
            f"the same plugin at {sizes[0]:,} interactions",
            f"{ratio(largest, smallest)} "
            f"({counted[-1]:,}: {ratio(calls[counted[-1]], calls[counted[0]])} calls)",
            f"flat: {sizes[-1]:,} within 1.5x of {sizes[0]:,}",
            verdict(largest <= 1.5 * smallest),
        ),
    ]


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
