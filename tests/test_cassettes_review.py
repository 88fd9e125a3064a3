"""Teams that re-record: the review of what a re-record changed (terminal summary, JSON,
``python -m pytest_engagelab cassettes diff``), stable files, cassettes written by 0.1,
and the staleness warning.

Recording is against a real HTTP server on loopback (an ``OTPServer`` that
``ENGAGELAB_BASE_URL`` points to), each run a pytester run of a scratch project, as
users meet it; "EngageLab changed" is an ``OTPServer`` answering differently.
"""

from __future__ import annotations

import datetime
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml  # noqa: F401  # imported once: pytester's in-process runs must not re-import it

from pytest_engagelab import Emulator
from pytest_engagelab.cassettes import read_cassette
from pytest_engagelab.doors.server import OTPServer
from pytest_engagelab.errors import ErrorCode

pytest_plugins = ["pytester"]

KEY = "review-key-4d8b2f"
SECRET = "review-secret-Wq3r9T-Lm"
DATA = Path(__file__).resolve().parent / "data" / "cassettes_0_1"

BLACKLISTED = """
import httpx, pytest

@pytest.mark.engagelab_cassette
def test_blacklisted(engagelab_cassette):
    c = engagelab_cassette.credentials
    auth = (c.dev_key, c.dev_secret)
    httpx.post(c.base_url + "/v1/messages", json={"to": "+6591234567", "template": {"id": "login"}}, auth=auth)
    httpx.post(c.base_url + "/v1/messages", json={"to": "+6598765432", "template": {"id": "login"}}, auth=auth)
"""  # noqa: E501
NAME = "cassettes/test_signup/test_blacklisted.yaml"


@pytest.fixture(autouse=True)
def _quick_inner_runs(cassette_inner_runs: None) -> None:
    """Every test here runs pytest inside: see ``cassette_inner_runs`` in conftest."""


@pytest.fixture
def endpoint(
    monkeypatch: pytest.MonkeyPatch, recording_with: Callable[[str, str], None]
) -> Iterator[Callable[..., OTPServer]]:
    """Starts "EngageLab" (a fresh OTPServer on a new port) for one recording run."""
    recording_with(KEY, SECRET)
    started: list[OTPServer] = []

    def start(*, seed: int | None = 0) -> OTPServer:
        for old in started:
            old.stop()
        live = OTPServer(Emulator(dev_key=KEY, dev_secret=SECRET, rate_limit=False, seed=seed))
        live.start()
        started.append(live)
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", KEY)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", SECRET)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        return live

    yield start
    for live in started:
        live.stop()


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ENGAGELAB_DEV_KEY", "ENGAGELAB_DEV_SECRET"):
        monkeypatch.delenv(name, raising=False)


def review_section(result: pytest.RunResult) -> list[str]:
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if "engagelab cassette review" in line)
    last = re.compile(r"\d+ cassettes? \(")  # the review's summary line ends it
    end = next(i for i in range(start + 1, len(lines)) if last.match(lines[i]))
    return [line for line in lines[start + 1 : end + 1] if line]


# -- the review ---------------------------------------------------------------------------


def test_the_review_says_what_engagelab_changed_and_nothing_else(
    pytester: pytest.Pytester, endpoint: Callable[..., OTPServer]
) -> None:
    pytester.makepyfile(test_signup=BLACKLISTED)
    live = endpoint()
    live.fail_for("+6591234567", ErrorCode.BLACKLISTED)
    first = pytester.runpytest("--engagelab-record-mode=once")
    first.assert_outcomes(passed=1)
    assert review_section(first) == [
        f"{NAME}: new cassette, 2 interactions",
        "1 cassette (1 new): No change in EngageLab's answers",
    ]

    live = endpoint()  # EngageLab now answers 5001, with a new field, and WhatsApp
    live.fail_for(
        "+6591234567",
        httpx.Response(400, json={"code": 5001, "message": "sms send fail", "channel": "sms"}),
    )
    live.add_template("login", strategy="whatsapp|sms")
    review = pytester.path / "review.json"
    second = pytester.runpytest("--engagelab-record-mode=rewrite", f"--engagelab-review={review}")
    second.assert_outcomes(passed=1)
    assert review_section(second) == [
        f'{NAME}: /v1/messages answer: code 5013 -> 5001; field "channel" new',
        f"{NAME}: /v1/messages answer #2: send_channel sms -> whatsapp",
        "1 cassette (1 changed): EngageLab's answers changed, see above",
    ]
    data = json.loads(review.read_text())
    assert data["changed"] is True
    assert data["summary"] == "1 cassette (1 changed): EngageLab's answers changed, see above"
    (cassette,) = data["cassettes"]
    assert cassette["cassette"] == NAME
    assert cassette["status"] == "changed"
    assert [(c["request"], c["occurrence"], c["what"], c["name"], c["old"], c["new"])
            for c in cassette["changes"]] == [
        ("POST /v1/messages", 1, "code", "", 5013, 5001),
        ("POST /v1/messages", 1, "field", "channel", None, "string"),
        ("POST /v1/messages", 2, "send_channel", "", "sms", "whatsapp"),
    ]  # fmt: skip

    live = endpoint(seed=None)  # the same answers, new message ids: nothing to review
    live.fail_for(
        "+6591234567",
        httpx.Response(400, json={"code": 5001, "message": "sms send fail", "channel": "sms"}),
    )
    live.add_template("login", strategy="whatsapp|sms")
    third = pytester.runpytest("--engagelab-record-mode=rewrite", f"--engagelab-review={review}")
    third.assert_outcomes(passed=1)
    assert review_section(third) == [
        f"{NAME}: no change in EngageLab's answers",
        "1 cassette (1 unchanged): No change in EngageLab's answers",
    ]
    assert json.loads(review.read_text())["changed"] is False


def test_new_episodes_reviews_the_requests_it_added(
    pytester: pytest.Pytester, endpoint: Callable[..., OTPServer]
) -> None:
    pytester.makepyfile(test_signup=BLACKLISTED.replace("+6598765432", "+6591234567"))
    endpoint()
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    pytester.makepyfile(
        test_signup=BLACKLISTED
        + '    httpx.get(c.base_url + "/v1/template-configs/login", auth=auth)\n'
    )
    endpoint()
    result = pytester.runpytest("--engagelab-record-mode=new_episodes")
    result.assert_outcomes(passed=1)
    assert review_section(result) == [
        f"{NAME}: /v1/messages #3: new request",
        f"{NAME}: /v1/template-configs/login: new request",
        "1 cassette (1 changed): EngageLab's answers changed, see above",
    ]


def test_the_review_reaches_the_summary_under_xdist(
    pytester: pytest.Pytester, endpoint: Callable[..., OTPServer]
) -> None:
    pytester.makepyfile(
        test_many="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        @pytest.mark.parametrize("n", range(4))
        def test_send(engagelab_cassette, n):
            c = engagelab_cassette.credentials
            body = {"to": f"+659123456{n}", "template": {"id": "login"}}
            httpx.post(c.base_url + "/v1/messages", json=body, auth=(c.dev_key, c.dev_secret))
        """
    )
    endpoint()
    result = pytester.runpytest("-n", "2", "--engagelab-record-mode=once")
    result.assert_outcomes(passed=4)
    assert review_section(result) == [
        *(
            f"cassettes/test_many/test_send[{n}].yaml: new cassette, 1 interaction"
            for n in range(4)
        ),
        "4 cassettes (4 new): No change in EngageLab's answers",
    ]


def test_replaying_prints_no_review(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                    endpoint: Callable[..., OTPServer]) -> None:  # fmt: skip
    pytester.makepyfile(test_signup=BLACKLISTED)
    endpoint()
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    offline(monkeypatch)
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "engagelab cassette review" not in result.stdout.str()


# -- python -m pytest_engagelab cassettes diff ----------------------------------------------


def run_diff(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest_engagelab", "cassettes", "diff", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_the_diff_command_compares_two_directories(
    pytester: pytest.Pytester, endpoint: Callable[..., OTPServer]
) -> None:
    pytester.makepyfile(
        test_signup=BLACKLISTED,
        test_other="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette
        def test_codes(engagelab_cassette):
            c = engagelab_cassette.credentials
            body = {"to": "+6591234567", "code": "123456", "template": {"id": "login"}}
            httpx.post(c.base_url + "/v1/codes", json=body, auth=(c.dev_key, c.dev_secret))
        """,
    )
    live = endpoint()
    live.fail_for("+6591234567", ErrorCode.BLACKLISTED)
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=2)
    main = pytester.path / "main"  # what a git worktree of main would hold
    shutil.copytree(pytester.path / "cassettes", main / "cassettes")
    (pytester.path / "cassettes" / "test_other" / "test_codes.yaml").unlink()
    live = endpoint(seed=None)
    live.fail_for("+6591234567", ErrorCode.SEND_FAILED)
    pytester.runpytest("test_signup.py", "--engagelab-record-mode=rewrite").assert_outcomes(
        passed=1
    )

    result = run_diff(main / "cassettes", pytester.path / "cassettes")
    new = pytester.path / "cassettes"
    assert result.stdout.splitlines() == [
        f"{new}/test_other/test_codes.yaml: cassette removed",
        f"{new}/test_signup/test_blacklisted.yaml: /v1/messages answer: code 5013 -> 5001",
        "2 cassettes (1 changed, 1 removed): EngageLab's answers changed, see above",
    ]
    assert result.returncode == 1
    assert result.stderr == ""

    same = run_diff(main / "cassettes", main / "cassettes")
    assert same.stdout.splitlines()[-1] == (
        "2 cassettes (2 unchanged): No change in EngageLab's answers"
    )
    assert same.returncode == 0

    file_to_file = run_diff(
        main / "cassettes" / "test_signup" / "test_blacklisted.yaml",
        new / "test_signup" / "test_blacklisted.yaml",
        "--json",
        pytester.path / "diff.json",
    )
    assert file_to_file.stdout.splitlines()[0] == (
        f"{new}/test_signup/test_blacklisted.yaml: /v1/messages answer: code 5013 -> 5001"
    )
    data = json.loads((pytester.path / "diff.json").read_text())
    assert [c["what"] for c in data["cassettes"][0]["changes"]] == ["code"]


def test_the_diff_command_names_an_unreadable_cassette(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    shutil.copy(DATA / "written_by_0_1.yaml", tmp_path / "old" / "a.yaml")
    (tmp_path / "new" / "a.yaml").write_text("version: 1\ninteractions: [\n")
    result = run_diff(tmp_path / "old", tmp_path / "new")
    assert result.returncode == 2
    assert result.stdout.splitlines()[0].startswith(
        f"{tmp_path / 'new' / 'a.yaml'}: unreadable: not valid YAML ("
    )
    missing = run_diff(tmp_path / "nowhere", tmp_path / "neither")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "python -m pytest_engagelab cassettes diff: no such file or directory: "
        f"{tmp_path / 'nowhere'}, {tmp_path / 'neither'}"
    )


# -- stable files ---------------------------------------------------------------------------


def test_a_re_record_of_the_same_answers_writes_the_same_file(
    pytester: pytest.Pytester, endpoint: Callable[..., OTPServer]
) -> None:
    """Two recordings against stand-ins on different ports, answering the same: the files
    are byte for byte the same (no port, no Date header, the recording date by day)."""
    pytester.makepyfile(test_signup=BLACKLISTED)
    first_url = endpoint().url
    pytester.runpytest("--engagelab-record-mode=once").assert_outcomes(passed=1)
    path = pytester.path / NAME
    first = path.read_text()
    second_url = endpoint().url
    assert first_url != second_url
    pytester.runpytest("--engagelab-record-mode=rewrite").assert_outcomes(passed=1)
    assert path.read_text() == first
    port = first_url.rsplit(":", 1)[1]
    assert port not in first
    assert "date:" not in first.lower().replace("recorded_at", "")
    assert f"recorded_at: '{datetime.datetime.now(datetime.UTC).date().isoformat()}'" in first
    assert "uri: http://127.0.0.1/v1/messages" in first

    endpoint(seed=None)  # unseeded: new message ids, and only they change
    pytester.runpytest("--engagelab-record-mode=rewrite").assert_outcomes(passed=1)
    changed = [
        (old, new)
        for old, new in zip(first.splitlines(), path.read_text().splitlines(), strict=True)
        if old != new
    ]
    assert changed
    assert all('"message_id":' in old and '"message_id":' in new for old, new in changed)


def test_a_cassette_written_by_0_1_still_replays_and_is_rewritten_in_the_new_form(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, endpoint: Callable[..., OTPServer]
) -> None:
    """tests/data/cassettes_0_1/written_by_0_1.yaml was recorded by pytest-engagelab 0.1.0
    against a loopback stand-in: port in every URL, Date headers, no recorded_at."""
    old = (DATA / "written_by_0_1.yaml").read_text()
    assert ":43739/v1/messages" in old
    assert "recorded_at" not in old
    pytester.makepyfile(
        test_compat="""
        import httpx, pytest

        @pytest.mark.engagelab_cassette("compat/today")
        def test_send_and_verify(otp_client, engagelab_cassette):
            sent = otp_client.send("+6591234567", "login", language="en")
            assert sent.send_channel == "sms"
            assert otp_client.verify(sent.message_id, "000000").verified is False
            c = engagelab_cassette.credentials
            answer = httpx.get(c.base_url + "/v1/template-configs/login",
                               auth=(c.dev_key, c.dev_secret))
            assert answer.status_code == 200
        """
    )
    target = pytester.path / "cassettes" / "compat" / "today.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(old)
    pytester.makeini("[pytest]\nengagelab_cassette_max_age = 1d\n")
    replayed = pytester.runpytest("-W", "error::pytest_engagelab.StaleCassetteWarning")
    replayed.assert_outcomes(passed=1)  # and no staleness warning: 0.1 did not say when
    assert target.read_text() == old  # replay writes nothing

    live = endpoint()
    live.add_template("login")
    pytester.runpytest("--engagelab-record-mode=rewrite").assert_outcomes(passed=1)
    new = target.read_text()
    assert "recorded_at:" in new
    assert ":43739" not in new
    assert len(read_cassette(target)["interactions"]) == 3
    offline(monkeypatch)
    pytester.runpytest().assert_outcomes(passed=1)


# -- staleness ------------------------------------------------------------------------------


def _age(text: str, days: int) -> str:
    day = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=days)
    return text.replace(
        "  source: recorded\n", f"  recorded_at: '{day.isoformat()}'\n  source: recorded\n"
    )


STALE_TEST = """
import pytest

@pytest.mark.engagelab_cassette("compat/today")
def test_send(otp_client):
    otp_client.send("+6591234567", "login", language="en")
"""


@pytest.mark.parametrize(("days", "stale"), [(120, True), (90, False), (3, False)])
def test_a_cassette_older_than_the_max_age_warns_with_the_re_record_command(
    pytester: pytest.Pytester, days: int, stale: bool
) -> None:
    pytester.makeini("[pytest]\nengagelab_cassette_max_age = 90d\n")
    pytester.makepyfile(test_old=STALE_TEST)
    target = pytester.path / "cassettes" / "compat" / "today.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(_age((DATA / "written_by_0_1.yaml").read_text(), days))
    result = pytester.runpytest()
    if stale:
        result.assert_outcomes(passed=1, warnings=1)
        day = datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=days)
        result.stdout.fnmatch_lines(
            [
                "*StaleCassetteWarning: pytest-engagelab: cassette cassettes/compat/today.yaml "
                f"was recorded on {day.isoformat()}, {days} days ago, longer ago than "
                "engagelab_cassette_max_age (90d); EngageLab may answer differently now. "
                "Record it again (needs ENGAGELAB_DEV_KEY and ENGAGELAB_DEV_SECRET):",
                "*  pytest test_old.py::test_send --engagelab-record-mode=rewrite",
            ]
        )
        strict = pytester.runpytest("-W", "error::pytest_engagelab.StaleCassetteWarning")
        strict.assert_outcomes(errors=1)  # CI can make it an error...
        with pytest.raises(httpx.ConnectError):  # ...and the cassette is stopped all the same
            httpx.get("http://127.0.0.1:9/v1/messages", timeout=2)
    else:
        result.assert_outcomes(passed=1)
        assert "StaleCassetteWarning" not in result.stdout.str()
    pytester.makeini("[pytest]\n")  # off by default
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)
    assert "StaleCassetteWarning" not in result.stdout.str()


def test_a_wrong_max_age_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nengagelab_cassette_max_age = three months\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pytest-engagelab: ini option engagelab_cassette_max_age = 'three months' "
            "is not an age; use a number and a unit, such as 90d, 12w, 36h (or off)"
        ]
    )
