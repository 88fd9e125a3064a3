"""Benchmark 5, memory: peak RSS of 100,000 sends through ``otp_mock`` in one test.

Each case is its own pytest process running one generated test: it notes its
resident set before the first send and its peak (``VmHWM``, this process's own high-water
mark; not ``getrusage``, whose figure a child inherits from the process that started it)
after the last.
With the default ``journal_limit`` (10,000) the growth must not depend on how
many messages were sent, so the default is measured at 20,000 and at 100,000
sends; ``journal_limit=None`` (keep everything) is the contrast.

The cost-per-send row shows, beside its CPU times, the calls per send (``count_pytest_calls``,
runs of their own after the timed ones): 500 sends minus 250, over 250, with the default
limit and, for the late sends, with ``journal_limit=100`` so that every send drops one.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench._common import Row, count_pytest_calls, micro, run_pytest, verdict, write_files

#: Growth allowed between 20,000 and 100,000 sends with the default limit.
SLACK_MB = 8.0
#: How much dearer the last 1,000 sends may be than sends 1,000 to 2,000.
FLAT = 1.3
#: Sends per call count: the calls of 2 x COUNTED sends minus those of COUNTED, over COUNTED.
COUNTED = 250
#: The journal limit under which the late sends are counted: past it every send drops the
#: oldest entry (a ``deque(maxlen=...)``, the same calls at any limit), as past 10,000.
DROPPING = 100

_TEST = """
import json
import os
import resource
import time

import httpx
import pytest

N = int(os.environ["BENCH_SENDS"])
LIMIT = json.loads(os.environ["BENCH_LIMIT"])


def _rss_mb():
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb():
    # VmHWM is this process's own peak.  getrusage's ru_maxrss survives exec: a child of
    # a large parent (bench.run after the replay rows) would report the parent's size.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_many_sends(request):
    if LIMIT != "default":
        request.applymarker(pytest.mark.engagelab(journal_limit=LIMIT))
    otp_mock = request.getfixturevalue("otp_mock")
    before = _rss_mb()
    auth = (otp_mock.dev_key, otp_mock.dev_secret)
    # The CPU time per send of WINDOW sends from the 1,000th, and of the last WINDOW:
    # 10,000 each, so that the garbage collector's full passes (one can take 50 ms in a
    # pytest process) are averaged as they are over a whole test, not caught in one window.
    first, window = min(1_000, N // 4), min(10_000, N // 4)
    windows = {}
    with httpx.Client(base_url=otp_mock.base_url, auth=auth) as client:
        for i in range(N):
            if i in (first, N - window):
                started = time.thread_time()
            body = {"to": f"+6590{i:07d}", "template": {"id": "login"}}
            response = client.post("/v1/messages", json=body)
            assert response.status_code == 200, response.text
            if i in (first + window - 1, N - 1):
                late = i == N - 1
                windows["late" if late else "early"] = (time.thread_time() - started) / window
    kept = len(otp_mock.sent)
    assert kept == (N if LIMIT is None else min(N, 10_000 if LIMIT == "default" else LIMIT))
    with open(os.environ["BENCH_OUT"], "w") as out:
        json.dump({"before": before, "peak": _peak_mb(), "kept": kept, **windows}, out)
"""


def _case(root: Path, sends: int, limit: int | str | None) -> dict[str, float]:
    out = root / f"memory-{sends}-{limit}.json"
    run_pytest(
        ["-q", "-p", "no:cacheprovider", "test_memory.py"],
        root,
        env={"BENCH_OUT": str(out), "BENCH_SENDS": str(sends), "BENCH_LIMIT": json.dumps(limit)},
        expect="1 passed",
    )
    result: dict[str, float] = json.loads(out.read_text())
    return result


def _calls_per_send(root: Path, limits: tuple[int | str, ...]) -> dict[int | str, float]:
    """Function calls per send through ``otp_mock`` (``count_pytest_calls``) for each journal
    limit: the test of ``2 * COUNTED`` sends minus that of ``COUNTED``, over ``COUNTED``.
    Start-up cancels out, so the plugin is the only one loaded (a counted process then takes
    a second, not four), and the processes run two at a time (a count does not depend on
    what else runs)."""
    args = ["-q", "-p", "no:cacheprovider", "-p", "pytest_engagelab.plugin", "test_memory.py"]

    def count(limit: int | str, n: int) -> int:
        env = {
            "BENCH_OUT": str(root / f"calls-{limit}-{n}.json"),
            "BENCH_LIMIT": json.dumps(limit),
            "BENCH_SENDS": str(n),
            "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        }
        return count_pytest_calls(args, root, env=env, expect="1 passed")

    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = {
            (limit, n): pool.submit(count, limit, n)
            for limit in limits
            for n in (2 * COUNTED, COUNTED)
        }
        return {
            limit: (runs[(limit, 2 * COUNTED)].result() - runs[(limit, COUNTED)].result()) / COUNTED
            for limit in limits
        }


def measure(sends: int = 100_000) -> list[Row]:
    """Peak RSS with the default journal limit (at 1/5 and all of ``sends``) and with none."""
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        write_files(root, {"test_memory.py": _TEST})
        small = _case(root, sends // 5, "default")
        default = _case(root, sends, "default")
        unbounded = _case(root, sends, None)
        # In runs of their own, after the timed ones (which cached the bytecode): the calls
        # per send before the journal is full, and once every send drops the oldest entry.
        began = time.perf_counter()
        counts = _calls_per_send(root, ("default", DROPPING))
        early_calls, late_calls = counts["default"], counts[DROPPING]
        print(f"  calls counted in {time.perf_counter() - began:.0f} s", file=sys.stderr)

    def grown(case: dict[str, float]) -> float:
        return case["peak"] - case["before"]

    extra = grown(default) - grown(small)
    first, window = min(1_000, sends // 4), min(10_000, sends // 4)
    return [
        Row(
            "5",
            f"Memory: {sends:,} sends in one test, peak RSS (growth during the sends)",
            f"default journal_limit=10,000: {default['peak']:.0f} MB (+{grown(default):.0f} MB; "
            f"+{grown(small):.0f} MB at {sends // 5:,} sends)",
            f"journal_limit=None (keep all): {unbounded['peak']:.0f} MB "
            f"(+{grown(unbounded):.0f} MB)",
            f"{default['peak'] / unbounded['peak']:.2f}x",
            f"bounded: growth from {sends // 5:,} to {sends:,} sends < {SLACK_MB:.0f} MB",
            f"{verdict(extra < SLACK_MB)} ({extra:+.1f} MB)",
        ),
        Row(
            "5",
            f"Cost per send through `otp_mock`: the last {window:,} of {sends:,} against "
            f"{window:,} from the {first:,}th (CPU time of the sending thread); calls per send "
            f"(cProfile, a run of its own: {2 * COUNTED:,} sends minus {COUNTED:,}), the late "
            f"ones with journal_limit={DROPPING} so that every send drops one, as past 10,000",
            f"last {window:,}: {micro(default['late'])} per send, {late_calls:,.0f} calls",
            f"{window:,} from the {first:,}th: {micro(default['early'])} per send, "
            f"{early_calls:,.0f} calls",
            f"{default['late'] / default['early']:.2f}x ({late_calls / early_calls:.2f}x calls)",
            f"flat: at most {FLAT}x",
            verdict(default["late"] <= FLAT * default["early"]),
        ),
    ]


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
