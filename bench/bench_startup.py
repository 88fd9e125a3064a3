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

Instructions, in the first row (where valgrind is installed; ``ENGAGELAB_BENCH_VALGRIND=0``
skips them): one more run of each side under ``valgrind --tool=cachegrind
--cache-sim=no``, both at once (the count does not depend on the machine's load; about
30 s of CPU each).  On a
shared machine the paired times cannot resolve 5 ms, the instruction count can: the
verdict then judges the added instructions, converted to milliseconds at this machine's
rate in this run (the instructions of the run without the plugin over the CPU time of
its fastest timed run, the one least slowed by other load), and the row says so.
With instructions counted, the time pairs run fewer repetitions
(``reps_with_valgrind``), so that ``python -m bench.run`` stays within 5 minutes.
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

from bench._common import (
    Row,
    Timing,
    count_pytest_calls,
    count_pytest_instructions,
    median,
    medians,
    milli,
    run_pytest,
    timed_alternation,
    valgrind_available,
    verdict,
    write_files,
)

TARGET_MS = 5.0
_MODULE = "\n".join(f"def test_{n}():\n    assert {n} + 1 > {n}\n" for n in range(10))
#: The plugin the "alone" row compares with: nothing, loaded the same way (``-p``).
_EMPTY_PLUGIN = "bench_empty_plugin"


class _Pair:
    """One comparison: the paired added time, the medians of each side, the calls of one
    more run of each, and (when counted) the instructions of one more run of each."""

    def __init__(
        self,
        added: Timing,
        loaded: Timing,
        unloaded: Timing,
        calls: tuple[int, int],
        instructions: tuple[int, int] | None,
        fastest_unloaded_cpu: float,
    ) -> None:
        self.added = added
        self.fastest_unloaded_cpu = fastest_unloaded_cpu
        self.loaded = loaded
        self.unloaded = unloaded
        self.calls = calls
        self.instructions = instructions

    def instructions_ms(self) -> tuple[float, float] | None:
        """The added instructions in milliseconds at this machine's rate, and the rate:
        the instructions of the run without the plugin over the CPU time of its fastest
        timed run (the least disturbed by other load; under load every CPU time grows,
        the instruction count does not)."""
        if self.instructions is None:
            return None
        loaded, unloaded = self.instructions
        rate = unloaded / self.fastest_unloaded_cpu
        return (loaded - unloaded) / rate * 1e3, rate


def _pair(
    root: Path,
    reps: int,
    loaded: list[str],
    unloaded: list[str],
    env: dict[str, str],
    instructions: bool,
) -> _Pair:
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
    counted = None
    if instructions:
        found = count_pytest_instructions(
            {"with": [*base, *loaded], "without": [*base, *unloaded]},
            root,
            env=env,
            expect=expect,
        )
        counted = (found["with"], found["without"])
    pairs = list(zip(runs["with"], runs["without"], strict=True))  # the same repetition
    added = Timing(
        median(a.wall - b.wall for a, b in pairs), median(a.cpu - b.cpu for a, b in pairs)
    )
    return _Pair(
        added,
        medians(runs["with"]),
        medians(runs["without"]),
        (calls_with, calls_without),
        counted,
        min(t.cpu for t in runs["without"]),
    )


def measure(
    reps: int = 21, *, instructions: bool | None = None, reps_with_valgrind: int | None = None
) -> list[Row]:
    """Two rows: the plugin among the installed ones, and the plugin alone.

    ``instructions``: count them under valgrind (default: when it is installed and
    ``ENGAGELAB_BENCH_VALGRIND`` is not ``0``); then the time pairs run
    ``reps_with_valgrind`` repetitions (default ``reps``)."""
    if instructions is None:
        instructions = valgrind_available()
    if instructions and reps_with_valgrind is not None:
        reps = reps_with_valgrind
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        root = Path(tmp)
        write_files(root, {f"test_small_{m}.py": _MODULE for m in range(3)})
        write_files(root, {f"{_EMPTY_PLUGIN}.py": '"""Nothing: what -p costs by itself."""\n'})
        among = _pair(root, reps, [], ["-p", "no:engagelab"], {}, instructions)
        alone = _pair(
            root,
            reps,
            ["-p", "pytest_engagelab.plugin"],
            ["-p", _EMPTY_PLUGIN],
            # both sides: the empty module must import where the call counter runs too
            {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONPATH": str(root)},
            False,  # a row for context: its calls say enough, and bench.run has 5 minutes
        )
    return [
        _row(among, "all installed plugins", reps, "`-p no:engagelab`", judged=True),
        _row(alone, "this plugin alone", reps, "autoload off, `-p` of an empty module"),
    ]


def _row(pair: _Pair, label: str, reps: int, without: str, *, judged: bool = False) -> Row:
    calls, calls_without = pair.calls
    added_ms = pair.added.cpu * 1e3
    ours = (
        f"loaded: {added_ms:+.1f} ms CPU ({pair.added.wall * 1e3:+.1f} ms wall); "
        f"{calls - calls_without:+,} calls"
    )
    theirs = (
        f"{without}: {milli(pair.unloaded.cpu)} CPU ({milli(pair.unloaded.wall)} wall); "
        f"{calls_without:,} calls"
    )
    ratio = f"{pair.loaded.cpu / pair.unloaded.cpu:.2f}x CPU; {calls / calls_without:.3f}x calls"
    judged_ms = added_ms
    how = f"median of {reps} paired differences"
    converted = pair.instructions_ms()
    if converted is not None and pair.instructions is not None:
        instructions, instructions_without = pair.instructions
        judged_ms, rate = converted
        ours += (
            f"; {(instructions - instructions_without) / 1e6:+.1f} M instructions "
            f"(= {judged_ms:+.1f} ms at {rate / 1e9:.2f} G instructions per CPU second, the "
            "rate of the fastest run without)"
        )
        theirs += f"; {instructions / 1e6:,.1f} M instructions"
        ratio += f"; {instructions / instructions_without:.4f}x instructions"
        how += "; instructions: valgrind, one run each"
    if judged:
        target = f"<= {TARGET_MS:.0f} ms added" + (
            " (judged on the instructions)" if converted is not None else ""
        )
        met = verdict(judged_ms <= TARGET_MS)
    else:
        target, met = "(context: httpx, respx imported later, by the fixtures)", "-"
    return Row("3", f"Start-up: `--collect-only` of 30 tests, {label}, {how}", ours, theirs,
               ratio, target, met)


if __name__ == "__main__":
    from bench._common import table

    print(table(measure()))
