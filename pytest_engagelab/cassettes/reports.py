"""What a failing cassette test reports: a replay miss without library frames, scrubbed text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_engagelab.cassettes.scrub import Scrubber


def miss_report(excinfo: Any, test_file: Path) -> str:
    """A failure report for a :class:`CassetteMiss`: its message and where the test made
    the request, without the frames of httpx and vcrpy."""
    lines = [str(excinfo.value)]
    for entry in reversed(excinfo.traceback):
        if Path(str(entry.path)) == test_file:
            lines.append(f"(the request was made at {test_file.name}:{entry.lineno + 1})")
            break
    return "\n".join(lines)


def scrub_report(report: Any, scrubber: Scrubber) -> None:
    """Scrub a pytest report's failure text and captured sections, in place, when they
    hold a secret (a repr, a print, an exception message of the code under test)."""
    if report.longrepr is not None:
        text = str(report.longrepr)
        if scrubber.leaks(text):
            report.longrepr = scrubber.text(text)
    report.sections = [(title, scrubber.text(content)) for title, content in report.sections]
