"""``python -m pytest_engagelab serve``, started as users start it: a subprocess."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import engagelab_otp  # type: ignore[import-untyped]
import pytest

SECRET = "cli-secret-3f9a"
PHONE = "+6598765432"


@contextmanager
def serve(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the CLI; yield it and its URL; kill it if the test did not stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest_engagelab", "serve", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("pytest-engagelab emulator listening on http://127.0.0.1:"), line
        yield process, line.split()[-1]
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI to completion (for the cases that exit at once)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest_engagelab", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    return process.returncode, stderr


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def post_json(url: str, payload: Any) -> Any:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def sdk_for(url: str, key: str = "test-dev-key", secret: str = SECRET) -> engagelab_otp.OTPClient:
    client = engagelab_otp.OTPClient(key, secret, timeout=5)
    client.BASE_URL = url + "/v1"
    return client


def test_serve_answers_the_sdk_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    templates = tmp_path / "templates.json"
    templates.write_text(
        json.dumps(
            [
                {"template_id": "login", "strategy": "whatsapp|sms", "code_length": 8},
                {
                    "template_id": "mail",
                    "send_channel_strategy": "email",
                    "brand_name": "Acme",
                    "email_config": {"template_name": "otp"},
                    "verify_code_config": {
                        "verify_code_type": 1,
                        "verify_code_len": 6,
                        "verify_code_ttl": 5,
                    },
                },
            ]
        )
    )
    with serve("--templates", str(templates), "--dev-secret", SECRET, "--seed", "3") as (
        process,
        url,
    ):
        sdk = sdk_for(url)
        sent = sdk.send(PHONE, "login")
        assert sent["send_channel"] == "whatsapp"
        code = get_json(f"{url}/_emulator/last-code?to=%2B6598765432")["code"]
        assert len(code) == 8
        assert sdk.verify(sent["message_id"], code)["verified"] is True
        post_json(f"{url}/_emulator/fail-next", {"code": 5001})
        with pytest.raises(engagelab_otp.EngagelabError) as caught:
            sdk.send("+6591111111", "login")
        assert (caught.value.code, caught.value.http_status) == (5001, 400)
        with pytest.raises(engagelab_otp.EngagelabError) as denied:
            sdk_for(url, secret="wrong").send(PHONE, "login")
        assert denied.value.code == 2001
        assert [m["to"] for m in get_json(f"{url}/_emulator/sent")["sent"]] == [PHONE]
        returncode, stderr = stop(process, signal.SIGINT)
    assert returncode == 0
    lines = stderr.splitlines()
    assert lines[0] == f"dev_key test-dev-key; control API at {url}/_emulator/; Ctrl-C stops"
    requests_logged = lines[1:-1]
    for line in requests_logged:  # 2026-11-27T12:59:18Z 127.0.0.1:36658 POST /v1/... (0.5 ms)
        assert re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1:\d+ .* \(\d+\.\d ms\)", line
        )
    paths = [line.split()[2:6] for line in requests_logged]
    assert paths == [
        ["POST", "/v1/messages", "->", "200"],
        ["GET", "/_emulator/last-code", "->", "200"],
        ["POST", "/v1/verifications", "->", "200"],
        ["POST", "/_emulator/fail-next", "->", "200"],
        ["POST", "/v1/messages", "->", "400"],
        ["POST", "/v1/messages", "->", "401"],
        ["GET", "/_emulator/sent", "->", "200"],
    ]
    assert "code=5001" in requests_logged[4]
    assert lines[-1] == "pytest-engagelab emulator stopped"
    token = base64.b64encode(f"test-dev-key:{SECRET}".encode()).decode()
    for secret in (SECRET, token, "Basic", code, "6598765432", "wrong"):
        assert secret not in stderr
    assert "Traceback" not in stderr


def test_sigterm_stops_it_cleanly_with_connections_open() -> None:
    with serve("--quiet") as (process, url):
        host, port = url.removeprefix("http://").split(":")
        idle = socket.create_connection((host, int(port)), timeout=5)
        idle.sendall(b"GET /_emulator/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200 OK")
        returncode, stderr = stop(process, signal.SIGTERM)
        assert idle.recv(10) == b""
        idle.close()
    assert returncode == 0
    assert stderr.splitlines()[-1] == "pytest-engagelab emulator stopped"
    assert "/_emulator/health" not in stderr  # --quiet


def test_seed_makes_codes_repeat_and_the_clock_runs() -> None:
    codes, clocks = [], []
    for _ in range(2):
        with serve("--seed", "42", "--dev-secret", SECRET) as (process, url):
            sdk_for(url).send(PHONE, "login")
            codes.append(get_json(f"{url}/_emulator/last-code?to=%2B6598765432")["code"])
            first = get_json(f"{url}/_emulator/health")["now"]
            moved = post_json(f"{url}/_emulator/advance", {"seconds": 300})["now"]
            clocks.append((first, moved))
            assert stop(process, signal.SIGINT)[0] == 0
    assert codes[0] == codes[1]
    for first, moved in clocks:
        assert 1_735_689_600 <= first < 1_735_689_600 + 60  # seeded epoch, running
        assert moved - first >= 300


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "--templates {path}: not valid JSON: Expecting property name"),
        ('[{"template_id": "a", "ttl": 0}]', "--templates {path}: template #1 ('a'): ttl must"),
        ('[{"id": "a"}]', "--templates {path}: template #1: unknown field(s) id; use template_id"),
    ],
)
def test_bad_templates_file_is_one_clear_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "templates.json"
    path.write_text(content)
    done = run_cli("serve", "--templates", str(path))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("python -m pytest_engagelab serve: " + message.format(path=path))
    assert len(done.stderr.splitlines()) == 1


def test_missing_templates_file_and_busy_port(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        results = [
            run_cli("serve", *args)
            for args in (["--templates", str(missing)], ["--port", str(port)])
        ]
    assert [r.returncode for r in results] == [2, 2]
    assert results[0].stderr == (
        f"python -m pytest_engagelab serve: --templates {missing}: No such file or directory\n"
    )
    assert results[1].stderr == (
        f"python -m pytest_engagelab serve: OTPServer cannot listen on 127.0.0.1:{port}: "
        "Address already in use\n"
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--port", "99999"], "argument --port: 99999 is out of range: use 0 to 65535"),
        (["--port", "-1"], "argument --port: -1 is out of range: use 0 to 65535"),
        (["--seed", "-3"], "argument --seed: -3 is out of range: use 0 or more"),
        (["--port", "http"], "argument --port: 'http' is not an integer"),
    ],
)
def test_out_of_range_numbers_exit_2_with_one_line(args: list[str], error: str) -> None:
    done = run_cli("serve", *args)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == f"python -m pytest_engagelab serve: error: {error}"
    assert "Traceback" not in done.stderr


def test_without_a_command_it_shows_help() -> None:
    done = run_cli()
    assert done.returncode == 2
    assert "serve" in done.stderr
    assert done.stderr.startswith("usage: python -m pytest_engagelab")


def test_control_api_errors_over_the_cli(tmp_path: Path) -> None:
    with serve() as (process, url):
        with pytest.raises(urllib.error.HTTPError) as caught:
            post_json(f"{url}/_emulator/fail-next", {"code": 9999})
        assert caught.value.code == 400
        assert json.load(caught.value)["code"] == 3002
        assert stop(process, signal.SIGINT)[0] == 0
