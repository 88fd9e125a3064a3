"""Benchmark 3, start-up: ``pytest --collect-only -q`` on a small suite (3 modules of
10 tests that do not use the plugin) with pytest-engagelab loaded against
``-p no:engagelab``, alternating, many repetitions; the row is the difference of
the medians.  Every plugin installed loads in both (with ``pip install -e
'.[dev,bench]'``: pytest-httpx, anyio, xdist, hypothesis, respx, pytest-recording,
pytest-httpserver).  Beside the times, the function calls of one more run of each
(deterministic: they do not move with other load on the machine).

A second row measures the plugin alone: with ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``
and ``-p pytest_engagelab.plugin`` against nothing.  Loading the plugin imports
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
    medians,
    milli,
    run_pytest,
    timed_alternation,
    verdict,
    write_files,
)

TARGET_MS = 5.0
_MODULE = "\n".join(f"def test_{n}():\n    assert {n} + 1 > {n}\n" for n in range(10))


def _pair(
    root: Path, reps: int, loaded: list[str], unloaded: list[str], env: dict[str, str]
) -> tuple[Timing, Timing, int, int]:
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
    return medians(runs["with"]), medians(runs["without"]), calls_with, calls_without


def measure(reps: int = 21) -> list[Row]:
    """Two rows: the plugin among the installed ones, and the plugin alone."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        write_files(root, {f"test_small_{m}.py": _MODULE for m in range(3)})
        among = _pair(root, reps, [], ["-p", "no:engagelab"], {})
        alone = _pair(
            root,
            reps,
            ["-p", "pytest_engagelab.plugin"],
            [],
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        )
    rows = []
    for label, (loaded, unloaded, calls, calls_without), without, target in (
        ("all installed plugins", among, "`-p no:engagelab`", f"<= {TARGET_MS:.0f} ms added"),
        (
            "this plugin alone",
            alone,
            "autoload off, no plugin",
            "(context: httpx, respx imported later, by the fixtures)",
        ),
    ):
        added, added_wall = loaded.cpu - unloaded.cpu, loaded.wall - unloaded.wall
        rows.append(
            Row(
                "3",
                f"Start-up: `--collect-only` of 30 tests, {label}, median of {reps}",
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
