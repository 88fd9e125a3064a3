"""What every benchmark shares: rows of the table, medians, timed pytest runs, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Final, TypeVar

#: The EngageLab URL every contender answers.
SEND_URL: Final = "https://otp.api.engagelab.cc/v1/messages"
#: The static answer respx and pytest-httpx give (what the emulator answers, minus the real id).
STATIC_ANSWER: Final = {"message_id": "1", "send_channel": "sms"}
T = TypeVar("T")
#: Where the benchmarks' pytest processes cache bytecode (not in the project tree).
PYCACHE: Final = str(Path(tempfile.gettempdir()) / "pytest-engagelab-bench-pycache")

PACKAGES: Final = (
    "pytest-engagelab",
    "pytest",
    "httpx",
    "respx",
    "pytest-httpx",
    "vcrpy",
    "pytest-recording",
    "pytest-httpserver",
)


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    number: str
    benchmark: str
    ours: str
    theirs: str
    ratio: str
    target: str
    met: str

    @classmethod
    def not_measured(cls, number: str, benchmark: str, target: str, why: str) -> Row:
        return cls(number, benchmark, f"not measured: {why}", "-", "-", target, "-")


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def alternate(contenders: Sequence[str], reps: int) -> list[tuple[int, str]]:
    """(rep, contender) in the order to run them: every rep runs each contender once,
    starting one further along each time, so no contender always goes first."""
    order: list[tuple[int, str]] = []
    for rep in range(reps):
        shift = rep % len(contenders)
        rotated = [*contenders[shift:], *contenders[:shift]]
        order.extend((rep, name) for name in rotated)
    return order


def timed_alternation(contenders: Mapping[str, Callable[[], T]], reps: int) -> dict[str, list[T]]:
    """Call each contender ``reps`` times, alternating; collect what each measured."""
    times: dict[str, list[T]] = {name: [] for name in contenders}
    for _, name in alternate(list(contenders), reps):
        times[name].append(contenders[name]())
    return times


def medians(timings: Sequence[Timing]) -> Timing:
    """The median wall time and the median CPU time of several runs."""
    return Timing(median(t.wall for t in timings), median(t.cpu for t in timings))


def env_for_pytest(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    env.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    # Cache bytecode as users' machines do, but outside the project tree.  Some
    # environments (this project's CI and sandboxes among them) set
    # PYTHONDONTWRITEBYTECODE=1: then every child process would compile every module
    # again, and pytest would rewrite the asserts of the plugin and test modules again
    # (about 9,000 calls for plugin.py alone), which is not what a developer's machine
    # does.  So the variable is removed for the children, and a warm-up run before the
    # measured ones fills the cache.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE
    env["PYTHONHASHSEED"] = "0"
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class Timing:
    """How long a child process took: wall clock, and the CPU time it used (user +
    system), which other load on the machine disturbs far less."""

    wall: float
    cpu: float


def run_pytest(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    expect: str | None = None,
) -> Timing:
    """Run ``python -m pytest ARGS`` in ``cwd``; return its wall-clock and CPU seconds.

    Fails loudly if pytest fails or ``expect`` is not in its output: a benchmark
    of a broken run measures nothing.
    """
    command = [sys.executable, "-m", "pytest", *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        child = subprocess.Popen(command, cwd=cwd, env=env_for_pytest(env), stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if child.returncode != 0 or (expect is not None and expect not in stdout):
        raise RuntimeError(
            f"{' '.join(command)} in {cwd} exited {child.returncode}"
            + (f" without {expect!r}" if expect else "")
            + f":\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return Timing(elapsed, usage.ru_utime + usage.ru_stime)


_COUNTER = """
import cProfile, pstats, sys
import pytest

profile = cProfile.Profile()
profile.enable()
code = pytest.main(sys.argv[2:])
profile.disable()
with open(sys.argv[1], "w") as out:
    out.write(str(pstats.Stats(profile).total_calls))
sys.exit(code)
"""


def count_pytest_calls(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    expect: str | None = None,
) -> int:
    """The Python function calls (``cProfile``'s count, C functions included) of one
    ``pytest ARGS`` run in ``cwd``, in a child process set up as :func:`run_pytest`'s.

    Unlike a time, the count does not move with other load on the machine: with the
    same files, bytecode already cached and ``PYTHONHASHSEED=0`` it is the same from run
    to run within a few calls, so a larger difference is real.  Run the same command once before,
    so that compiling and caching bytecode is not counted.
    """
    with tempfile.TemporaryDirectory(prefix="bench-calls-") as tmp:
        out = Path(tmp) / "calls"
        script = Path(tmp) / "count.py"
        script.write_text(_COUNTER, encoding="utf-8")
        command = [sys.executable, str(script), str(out), *args]
        child = subprocess.run(
            command, cwd=cwd, env=env_for_pytest(env), capture_output=True, text=True
        )
        if child.returncode != 0 or (expect is not None and expect not in child.stdout):
            raise RuntimeError(
                f"{' '.join(command)} in {cwd} exited {child.returncode}"
                + (f" without {expect!r}" if expect else "")
                + f":\n{child.stdout[-3000:]}\n{child.stderr[-3000:]}"
            )
        return int(out.read_text())


#: Set to ``0`` to skip the instruction counts (they need valgrind and take about a minute).
INSTRUCTIONS_ENV: Final = "ENGAGELAB_BENCH_VALGRIND"


def valgrind_available() -> bool:
    """Whether instruction counts are wanted (``ENGAGELAB_BENCH_VALGRIND`` is not ``0``) and
    ``valgrind`` is on the PATH."""
    import shutil

    return os.environ.get(INSTRUCTIONS_ENV, "1") != "0" and shutil.which("valgrind") is not None


def count_pytest_instructions(
    runs: Mapping[str, Sequence[str]],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    expect: str | None = None,
) -> dict[str, int]:
    """The instructions each ``pytest ARGS`` of ``runs`` executes (label -> args), counted
    by ``valgrind --tool=cachegrind --cache-sim=no``: its "I refs", the same count as
    callgrind's, at a third of callgrind's cost (about 25 s of CPU for a second of pytest).

    Like a call count, and unlike a time, it does not move with other load on the
    machine: with the same files, bytecode cached and ``PYTHONHASHSEED=0``, two runs of
    the same command differ by well under 0.1%.  The runs go in parallel (the count does
    not depend on what else runs), each in a child set up as :func:`run_pytest`'s.  Run
    each command once before, so that compiling and caching bytecode is not counted.
    """
    children: dict[str, tuple[list[str], subprocess.Popen[bytes], IO[str], Path]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp,
        contextlib.ExitStack() as files,
    ):
        for label, args in runs.items():
            log = Path(tmp) / f"{len(children)}.log"
            command = [
                "valgrind",
                "--tool=cachegrind",
                "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
                f"--log-file={log}",
                sys.executable,
                "-m",
                "pytest",
                *args,
            ]
            stdout: IO[str] = files.enter_context(tempfile.TemporaryFile("w+"))
            child = subprocess.Popen(
                command, cwd=cwd, env=env_for_pytest(env), stdout=stdout, stderr=subprocess.STDOUT
            )
            children[label] = (command, child, stdout, log)
        counts = {}
        for label, (command, child, stdout, log) in children.items():
            child.wait()
            stdout.seek(0)
            output = stdout.read()
            report = log.read_text(encoding="utf-8", errors="replace")
            refs = [line for line in report.splitlines() if "I   refs:" in line]
            if child.returncode != 0 or not refs or (expect is not None and expect not in output):
                raise RuntimeError(
                    f"{' '.join(command)} in {cwd} exited {child.returncode}"
                    + (f" without {expect!r}" if expect else "")
                    + f":\n{output[-3000:]}\n{report[-3000:]}"
                )
            counts[label] = int(refs[-1].split("I   refs:")[1].replace(",", "").strip())
    return counts


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One paragraph: CPU, cores, OS, Python and the versions of every contender."""
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    return (
        f"CPU: {cpu_model()}, {os.cpu_count()} cores; {platform.system()} "
        f"{platform.release()}; Python {platform.python_version()} "
        f"({platform.python_implementation()})\n\nPackages: {', '.join(versions)}"
    )


def table(rows: Sequence[Row]) -> str:
    head = ["#", "Benchmark", "pytest-engagelab", "Compared with", "Ratio", "Target", "Met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for row in rows:
        cells = [row.number, row.benchmark, row.ours, row.theirs, row.ratio, row.target, row.met]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def micro(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def milli(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}x"


def timing(t: Timing) -> str:
    return f"{milli(t.cpu)} CPU ({milli(t.wall)} wall)"


def timing_ratio(ours: Timing, theirs: Timing) -> str:
    return f"{ours.cpu / theirs.cpu:.2f}x CPU ({ours.wall / theirs.wall:.2f}x wall)"
