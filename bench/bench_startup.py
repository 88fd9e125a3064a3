"""Benchmark 3, start-up: ``pytest --collect-only -q`` on a small suite (3 modules of
10 tests that do not use the plugin) with pytest-engagelab loaded against
``-p no:engagelab``, alternating, many repetitions; the row is the median of the
differences of each repetition's pair (both run back to back, so a pair shares whatever
else the machine was doing; the difference of the medians of two noisy sets moved by
tens of milliseconds here).  Every plugin installed loads in both (with ``pip install -e
'.[dev,bench]'``: pytest-httpx, anyio, xdist, hypothesis, respx, pytest-recording,
pytest-httpserver).  Beside the times, the function calls of one more run of each
(deterministic: they do not move with other load on the machine).

A second row measures the plugin alone: with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``,
``-p pytest_engagelab.plugin`` against ``-p`` of an empty module (``-p NAME`` makes pytest
look through every installed entry point for NAME and register the module, about 5,000
calls that are pytest's, not the plugin's: both sides pay them).  Loading the plugin imports
its hooks, options and settings only; httpx, respx, the emulator and its doors
are imported by the first fixture that needs them.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from bench._common import (
    Row,
    Timing,
    count_pytest_calls,
    median,
    medians,
    milli,
    run_pytest,
    timed_alternation,
    verdict,
    write_files,
)

TARGET_MS = 5.0
_MODULE = "\n".join(f"def test_{n}():\n    assert {n} + 1 > {n}\n" for n in range(10))
#: The plugin the "alone" row compares with: nothing, loaded the same way (``-p``).
_EMPTY_PLUGIN = "bench_empty_plugin"


def _pair(
    root: Path, reps: int, loaded: list[str], unloaded: list[str], env: dict[str, str]
) -> tuple[Timing, Timing, Timing, int, int]:
    """The median added time of ``loaded`` over ``unloaded`` (paired), the medians of
    each side, and the calls of one more run of each."""
    base = ["--collect-only", "-q", "-p", "no:cacheprovider"]
    expect = "30 tests collected"

    def run(extra: list[str]) -> Timing:
        return run_pytest([*base, *extra], root, env=env, expect=expect)

    run(loaded)  # unmeasured: compile and cache
    run(unloaded)
    runs = timed_alternation(
        {"with": partial(run, loaded), "without": partial(run, unloaded)}, reps
    )
    calls_with = count_pytest_calls([*base, *loaded], root, env=env, expect=expect)
    calls_without = count_pytest_calls([*base, *unloaded], root, env=env, expect=expect)
    pairs = list(zip(runs["with"], runs["without"], strict=True))  # the same repetition
    added = Timing(
        median(a.wall - b.wall for a, b in pairs), median(a.cpu - b.cpu for a, b in pairs)
    )
    return added, medians(runs["with"]), medians(runs["without"]), calls_with, calls_without


def measure(reps: int = 21) -> list[Row]:
    """Two rows: the plugin among the installed ones, and the plugin alone."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        write_files(root, {f"test_small_{m}.py": _MODULE for m in range(3)})
        write_files(root, {f"{_EMPTY_PLUGIN}.py": '"""Nothing: what -p costs by itself."""\n'})
        among = _pair(root, reps, [], ["-p", "no:engagelab"], {})
        alone = _pair(
            root,
            reps,
            ["-p", "pytest_engagelab.plugin"],
            ["-p", _EMPTY_PLUGIN],
            # both sides: the empty module must import where the call counter runs too
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(root)},
        )
    rows = []
    for label, (added_time, loaded, unloaded, calls, calls_without), without, target in (
        ("all installed plugins", among, "`-p no:engagelab`", f"<= {TARGET_MS:.0f} ms added"),
        (
            "this plugin alone",
            alone,
            "autoload off, `-p` of an empty module",
            "(context: httpx, respx imported later, by the fixtures)",
        ),
    ):
        added, added_wall = added_time.cpu, added_time.wall
        rows.append(
            Row(
                "3",
                f"Start-up: `--collect-only` of 30 tests, {label}, median of {reps} paired "
                "differences",
                f"loaded: {added * 1e3:+.1f} ms CPU ({added_wall * 1e3:+.1f} ms wall); "
                f"{calls - calls_without:+,} calls",
                f"{without}: {milli(unloaded.cpu)} CPU ({milli(unloaded.wall)} wall); "
                f"{calls_without:,} calls",
                f"{loaded.cpu / unloaded.cpu:.2f}x CPU; {calls / calls_without:.3f}x calls",
                target,
                verdict(added * 1e3 <= TARGET_MS) if target.startswith("<") else "-",
            )
        )
    return rows


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
