"""The drift check: recorded answers replayed through the emulator, differences reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_engagelab import Emulator, EmulatorResponse, Fault
from pytest_engagelab.cassettes import check_drift

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "cassettes"
SEND = {"to": "+6591234567", "template": {"id": "login"}}


@pytest.fixture(autouse=True)
def _quick_inner_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    given = os.environ.get("PYTEST_ADDOPTS", "")  # the suite's own inner-run options stay
    monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} -p no:hypothesispytest -p no:cacheprovider")


def interaction(body: Any, status: int, answer: Any, path: str = "/v1/messages") -> Any:
    return {
        "request": {
            "method": "POST",
            "uri": "https://otp.api.engagelab.cc" + path,
            "body": json.dumps(body),
            "headers": {
                "authorization": ["<ENGAGELAB_AUTHORIZATION>"],
                "content-type": ["application/json"],
            },
        },
        "response": {
            "status": {"code": status, "message": ""},
            "headers": {},
            "body": {"string": json.dumps(answer)},
        },
    }


def write(directory: Path, name: str, *interactions: Any) -> Path:
    path = directory / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "interactions": list(interactions)}))
    return path


class RenamingEmulator(Emulator):
    """An emulator changed the way the test wants to catch: ``send_channel`` renamed."""

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request: Any = None,
    ) -> EmulatorResponse | Fault:
        answer = super().handle(method, path, headers, body, request=request)
        if isinstance(answer, EmulatorResponse):
            renamed = answer.body.replace(b'"send_channel"', b'"channel"')
            return EmulatorResponse(answer.status, renamed, answer.headers)
        return answer


# -- the reference cassettes ---------------------------------------------------------------


def test_the_reference_cassettes_show_no_drift() -> None:
    report = check_drift(REFERENCE)
    assert report.errors == []
    assert report.drifted == [], report.format()
    cassettes = {i.cassette.relative_to(REFERENCE).as_posix() for i in report.interactions}
    assert {
        "messages/send_sms.yaml",
        "codes/send_code.yaml",
        "custom_messages/send.yaml",
        "verifications/verify_success.yaml",
        "template_configs/lifecycle.yaml",
        "errors/auth_failed.yaml",
        "errors/sms_send_fail.yaml",
    } <= cassettes
    paths = {(i.method, i.path.rsplit("/", 1)[0]) for i in report.interactions}
    assert paths >= {
        ("POST", "/v1"),
        ("GET", "/v1"),
        ("GET", "/v1/template-configs"),
        ("DELETE", "/v1/template-configs"),
    }


def test_every_reference_cassette_says_it_was_built_from_documentation() -> None:
    files = sorted(REFERENCE.rglob("*.yaml"))
    assert len(files) >= 18
    for path in files:
        text = path.read_text()
        data = yaml.safe_load(text)
        if data.get("engagelab", {}).get("source") == "recorded":
            continue  # re-recorded by tests/live
        assert text.startswith("# pytest-engagelab reference cassette: BUILT FROM DOCUMENTATION")
        assert data["engagelab"]["note"] == "built from documentation, not recorded"


def test_the_reference_cassettes_are_what_the_build_script_makes() -> None:
    result = subprocess.run(
        [sys.executable, str(REFERENCE / "_build_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_reference_cassettes_replay_through_the_plugin(pytester: pytest.Pytester) -> None:
    """The documented answers, replayed to the typed client through a cassette."""
    pytester.makeini(f"[pytest]\nengagelab_cassette_dir = {REFERENCE}\n")
    pytester.makepyfile(
        test_docs="""
        import pytest
        from pytest_engagelab.errors import EngageLabError

        @pytest.mark.engagelab_cassette("verifications/verify_twice")
        def test_verify_twice(otp_client):
            params = {"key1": "value1", "key2": "value2"}
            sent = otp_client.send("+6591234567", "test-template-1", language="default",
                                   params=params)
            assert sent.message_id == "1725407449772531712"
            assert otp_client.verify(sent.message_id, "667090").verified is True
            with pytest.raises(EngageLabError) as error:
                otp_client.verify(sent.message_id, "667090")
            assert error.value.code == 3003

        @pytest.mark.engagelab_cassette("errors/sms_send_fail")
        def test_send_fail(otp_client):
            params = {"key1": "value1", "key2": "value2"}
            with pytest.raises(EngageLabError, match="sms send fail"):
                otp_client.send("+6591234567", "test-template-1", language="default",
                                params=params)
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


# -- what drift looks like -------------------------------------------------------------------


def test_a_renamed_response_field_is_reported() -> None:
    report = check_drift(
        REFERENCE, emulator_factory=lambda: RenamingEmulator(strict_templates=True, seed=0)
    )
    drifted = {i.cassette.relative_to(REFERENCE).as_posix(): i for i in report.drifted}
    assert "messages/send_sms.yaml" in drifted
    assert "verifications/unknown_message.yaml" not in drifted  # error answers are unchanged
    assert drifted["messages/send_sms.yaml"].differences == (
        "shape: $.send_channel is recorded but missing from the emulator's answer",
        "shape: $.channel is in the emulator's answer but not recorded",
    )
    assert not report.ok
    assert "messages/send_sms.yaml #1 POST /v1/messages:" in report.format()


def test_a_recorded_error_code_the_emulator_does_not_produce_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "new_code", interaction(SEND, 400, {"code": 5099, "message": "new"}))
    write(
        tmp_path,
        "other_code",
        interaction({"to": "12345", "template": {"id": "t"}}, 400, {"code": 5020, "message": "x"}),
    )
    report = check_drift(tmp_path)
    assert [i.differences for i in report.drifted] == [
        (
            "status: recorded 400, emulator 200",
            "error code: recorded 5099 (undocumented), emulator none",
        ),
        (
            "error code: recorded 5020 (NUMBER_NOT_REGISTERED), "
            "emulator 5011 (INVALID_PHONE_NUMBER)",
        ),
    ]


def test_a_changed_field_type_and_nested_shapes_are_reported(tmp_path: Path) -> None:
    write(
        tmp_path,
        "types",
        interaction(SEND, 200, {"message_id": 1725407449772531712, "send_channel": "sms"}),
        interaction(
            {"message_id": "1725407449772531712", "verify_code": "1"},
            200,
            {"message_id": "x", "verify_code": "1", "verified": "false", "extra": {"a": [1]}},
            path="/v1/verifications",
        ),
    )
    report = check_drift(tmp_path)
    assert [i.differences for i in report.interactions] == [
        ("shape: $.message_id is number in the recording, string in the emulator",),
        (
            "shape: $.extra is recorded but missing from the emulator's answer",
            "shape: $.verified is string in the recording, boolean in the emulator",
        ),
    ]


def test_list_elements_are_compared_by_their_merged_shape(tmp_path: Path) -> None:
    listing: dict[str, Any] = {
        "request": {"method": "GET", "uri": "https://x/v1/template-configs", "body": None},
        "response": {
            "status": {"code": 200},
            "body": {
                "string": json.dumps(
                    [
                        {"template_id": "a", "description": "", "send_channel_strategy": "sms"},
                        {"template_id": "b", "status": 2, "created": "2024"},
                        # what template.json documents for a template read back
                        {
                            "brand_name": "Acme",
                            "verify_code_config": {
                                "verify_code_type": 1,
                                "verify_code_len": 6,
                                "verify_code_ttl": 5,
                            },
                            "sms_config": {
                                "template_type": 1,
                                "template_default_config": {},
                                "template_parts": [{"language": "default", "content": "c"}],
                            },
                            "created_time": 1,
                            "audit_remark": "",
                        },
                    ]
                )
            },
        },
    }
    listing["request"]["headers"] = {"authorization": ["<ENGAGELAB_AUTHORIZATION>"]}
    write(tmp_path, "list", listing)
    (drift,) = check_drift(tmp_path).drifted
    assert drift.differences == (
        "shape: $[].created is recorded but missing from the emulator's answer",
    )


def test_an_unreadable_cassette_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("version: 7\ninteractions: []\n")
    report = check_drift(tmp_path)
    assert not report.ok
    assert report.errors == [
        f"pytest-engagelab: cassette {tmp_path / 'broken.yaml'}: format version 7 is not "
        "supported (this plugin reads vcrpy cassette format version 1); record it again"
    ]
    assert check_drift(tmp_path / "missing").errors == [
        f"{tmp_path / 'missing'}: no such cassette directory"
    ]


# -- pytest --engagelab-check-drift -----------------------------------------------------------


def test_check_drift_option_fails_each_drifted_interaction(pytester: pytest.Pytester) -> None:
    directory = pytester.path / "cassettes"
    write(
        directory,
        "signup/send",
        interaction(SEND, 200, {"message_id": "1", "channel": "sms"}),
        interaction(SEND, 400, {"code": 3004, "message": "frequency limit"}),
    )
    write(
        directory, "signup/fine", interaction(SEND, 200, {"message_id": "1", "send_channel": "sms"})
    )
    (directory / "broken.yaml").write_text("interactions: [\n")
    pytester.makepyfile(test_never="def test_never():\n    raise AssertionError('not run')\n")
    result = pytester.runpytest("--engagelab-check-drift", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*collected 4 items",
            "cassettes/broken.yaml::unreadable FAILED*",
            "cassettes/signup/fine.yaml::#1 POST /v1/messages PASSED*",
            "cassettes/signup/send.yaml::#1 POST /v1/messages FAILED*",
            "cassettes/signup/send.yaml::#2 POST /v1/messages PASSED*",
        ],
        consecutive=False,
    )
    result.stdout.fnmatch_lines(
        [
            "cassettes/signup/send.yaml #1 POST /v1/messages:",
            "  shape: $.channel is recorded but missing from the emulator's answer",
            "  shape: $.send_channel is in the emulator's answer but not recorded",
        ]
    )
    result.stdout.fnmatch_lines(
        [f"pytest-engagelab: cassette {directory / 'broken.yaml'}: not valid YAML*"]
    )
    result.stdout.no_fnmatch_line("*not run*")


def test_check_drift_option_passes_a_clean_directory(pytester: pytest.Pytester) -> None:
    write(
        pytester.path / "cassettes",
        "fine",
        interaction(SEND, 200, {"message_id": "1", "send_channel": "sms"}),
    )
    result = pytester.runpytest("--engagelab-check-drift")
    result.assert_outcomes(passed=1)


def test_check_drift_option_fails_when_there_is_nothing_to_check(
    pytester: pytest.Pytester,
) -> None:
    result = pytester.runpytest("--engagelab-check-drift")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            f"pytest-engagelab: no cassettes (*.yaml) under {pytester.path / 'cassettes'}; set "
            "the ini option engagelab_cassette_dir to the cassette directory"
        ]
    )


def test_check_drift_option_runs_under_xdist(pytester: pytest.Pytester) -> None:
    write(
        pytester.path / "cassettes",
        "send",
        interaction(SEND, 200, {"message_id": "1", "send_channel": "sms"}),
        interaction(SEND, 400, {"code": 3004, "message": "frequency limit"}),
        interaction(SEND, 200, {"message_id": "1", "send_channel": "sms"}),
    )
    result = pytester.runpytest("--engagelab-check-drift", "-n", "2")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cassettes/send.yaml #3 POST /v1/messages:",
            "*status: recorded 200, emulator 400",
            "*error code: recorded none, emulator 3004 (FREQUENCY_LIMITED)",
        ]
    )


def test_a_verify_without_its_send_in_the_cassette_gets_the_message_it_implies(
    tmp_path: Path,
) -> None:
    verify = {"message_id": "1725407449772531712", "verify_code": "667090"}
    ok = {**verify, "verified": True}
    write(tmp_path, "ok", interaction(verify, 200, ok, path="/v1/verifications"))
    write(
        tmp_path,
        "again",
        interaction(verify, 400, {"code": 3003, "message": "verified"}, path="/v1/verifications"),
    )
    report = check_drift(tmp_path)
    assert report.ok, report.format()
    assert len(report.interactions) == 2
