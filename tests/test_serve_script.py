"""The ``engagelab-emulator`` console script, started as a user starts it, and which of
its lines go to stdout and which to stderr (the README shows them apart)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).with_name("engagelab-emulator")

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the console script is installed with the package (pip install)"
)


def test_the_console_script_serves_with_stdout_and_stderr_split() -> None:
    process = subprocess.Popen(
        [str(SCRIPT), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.fullmatch(
            r"pytest-engagelab emulator listening on (http://127\.0\.0\.1:\d+)\n", first
        )
        assert found, first
        url = found[1]
        request = urllib.request.Request(
            url + "/v1/messages",
            data=json.dumps({"to": "+6591234567", "template": {"id": "signup"}}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        request.add_unredirected_header(
            "Authorization", "Basic dGVzdC1kZXYta2V5OnRlc3QtZGV2LXNlY3JldA=="
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.load(answer)["send_channel"] == "sms"
        process.send_signal(signal.SIGINT)
        rest, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0
    assert rest == ""  # stdout holds the one line a harness waits for, nothing else
    lines = stderr.splitlines()
    assert lines[0] == f"dev_key test-dev-key; control API at {url}/_emulator/; Ctrl-C stops"
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1:\d+ POST /v1/messages -> 200 \(\d+\.\d ms\)",
        lines[1],
    ), lines[1]
    assert lines[-1] == "pytest-engagelab emulator stopped"
    assert len(lines) == 3


def test_the_console_script_names_itself_in_usage_errors() -> None:
    done = subprocess.run(
        [str(SCRIPT), "serve", "--port", "http"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines()[-1] == (
        "engagelab-emulator serve: error: argument --port: 'http' is not an integer"
    )
