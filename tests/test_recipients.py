"""One recipient parser: what the emulator accepts (5011), what a cassette redacts and
how ``phone_validation="strict"`` and ``mainland_china=False`` read numbers.

Validation runs through the HTTP door (``otp_server`` and httpx); redaction through a
cassette recorded against a loopback server, and through ``redact_recipients`` on the
bodies each JSON encoder writes (``ensure_ascii`` on, as ``requests`` and the official
SDK send, and off, as httpx sends).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator

import httpx
import pytest

from pytest_engagelab.emulator import recipients
from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.settings import EngageLabSettings, SettingsError
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS, WHATSAPP_FALLBACK_NUMBER
from pytest_engagelab.server import OTPServer

#: Addresses the emulator accepts, each with the part that must not survive redaction.
ADDRESSES = [
    ("user@example.com", "user"),
    ("josé@exämple.com", "jos"),
    ("o'brien@example.ie", "brien"),
    ('"john doe"@example.com', "john"),
    ("用户@例子.广告", "用户"),
    ("first.last+tag@sub.example.co.uk", "first"),
]


@pytest.fixture
def api(otp_server: OTPServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=otp_server.url, auth=(otp_server.dev_key, otp_server.dev_secret), timeout=10
    ) as client:
        yield client


def send(api: httpx.Client, to: str, template: str = "login") -> httpx.Response:
    return api.post("/v1/messages", json={"to": to, "template": {"id": template}})


# -------------------------------------------------------------------- one reading


@pytest.mark.parametrize(("address", "private"), ADDRESSES)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_every_address_the_emulator_accepts_is_redacted_whole(
    address: str, private: str, ensure_ascii: bool
) -> None:
    assert recipients.is_email(address)
    body = json.dumps({"to": address, "template": {"id": "login"}}, ensure_ascii=ensure_ascii)
    redacted = recipients.redact_recipients(body)
    assert private not in redacted
    assert json.loads(redacted)["to"] == recipients.redact_recipients(address)
    assert json.loads(redacted)["to"].endswith("@example.invalid")


@pytest.mark.parametrize("text", ["not-an-address", "a@b", "@example.com", "user@", "+65 9123"])
def test_what_is_not_a_recipient_is_5011_and_left_alone(api: httpx.Client, text: str) -> None:
    answer = send(api, text)
    assert (answer.status_code, answer.json()["code"]) == (400, 5011)
    assert recipients.redact_recipients(text) == text


def test_the_emulator_accepts_what_the_cassette_redacts(
    otp_server: OTPServer, api: httpx.Client
) -> None:
    otp_server.add_template("mail", strategy="email")
    for address, _ in ADDRESSES:
        assert send(api, address, "mail").status_code == 200, address
    assert {m.to for m in otp_server.sent} == {a for a, _ in ADDRESSES}


KEY = "rec-key-4b9d2f"
SECRET = "rec-secret-Wq7e3R-Lp"


def test_a_recorded_cassette_holds_no_recipient_however_the_client_encoded_it(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    recording_with: Callable[[str, str], None],
) -> None:
    recording_with(KEY, SECRET)
    emulator = Emulator(dev_key=KEY, dev_secret=SECRET, rate_limit=False)
    emulator.add_template("mail", strategy="email")
    pytester.makeini("[pytest]\nengagelab_redact_recipients = true\n")
    pytester.makepyfile(
        test_rec="""
        import json, os
        import httpx
        import pytest

        @pytest.mark.engagelab_cassette
        def test_send(otp_client):
            auth = (os.environ["ENGAGELAB_DEV_KEY"], os.environ["ENGAGELAB_DEV_SECRET"])
            url = os.environ["ENGAGELAB_BASE_URL"] + "/v1/messages"
            for to in ["josé@exämple.com", "o'brien@example.ie", '"john doe"@example.com']:
                body = json.dumps({"to": to, "template": {"id": "mail"}})  # ensure_ascii
                answer = httpx.post(url, content=body, auth=auth,
                                    headers={"content-type": "application/json"})
                assert answer.status_code == 200, answer.text
            assert otp_client.send("ana.maría@exämple.com", "mail").send_channel == "email"
        """
    )
    with OTPServer(emulator) as live:
        given = os.environ.get("PYTEST_ADDOPTS", "")
        inner = "-p no:hypothesispytest -p no:cacheprovider -p no:schemathesis"
        monkeypatch.setenv("PYTEST_ADDOPTS", f"{given} {inner}")
        monkeypatch.setenv("ENGAGELAB_DEV_KEY", KEY)
        monkeypatch.setenv("ENGAGELAB_DEV_SECRET", SECRET)
        monkeypatch.setenv("ENGAGELAB_BASE_URL", live.url)
        result = pytester.runpytest("--engagelab-record-mode=once")
    result.assert_outcomes(passed=1)
    (cassette,) = pytester.path.rglob("*.yaml")
    text = cassette.read_text(encoding="utf-8")
    for private in ("jos", "brien", "john", "mar\\u00eda", "maría", "ex\\u00e4mple", "exämple"):
        assert private not in text
    assert text.count("@example.invalid") >= 4
    assert len(emulator.journal) == 4


# -------------------------------------------------------------------- strict phone numbers


@pytest.mark.engagelab(phone_validation="strict")
def test_strict_validation_answers_5011_for_a_number_invalid_for_its_region(
    api: httpx.Client,
) -> None:
    assert send(api, "+6591234567").status_code == 200
    answer = send(api, "+6511234567")  # E.164-shaped, but no Singapore number starts with 1
    assert (answer.status_code, answer.json()) == (
        400,
        {
            "code": 5011,
            "message": "invalid phone number format: '+6511234567' is not a valid number "
            "for region SG (+65)",
        },
    )
    unknown = send(api, "+999123456789")
    assert unknown.json()["message"] == (
        "invalid phone number format: '+999123456789' starts with no country calling code "
        "libphonenumber knows"
    )


def test_the_default_validation_reads_the_e164_shape_only(api: httpx.Client) -> None:
    assert send(api, "+6511234567").status_code == 200


@pytest.mark.engagelab(phone_validation="strict")
def test_strict_validation_leaves_the_magic_numbers_and_fail_for_alone(
    api: httpx.Client, otp_server: OTPServer
) -> None:
    for number, code in DELIVERY_ERROR_NUMBERS.items():
        assert send(api, number).json()["code"] == int(code)
    otp_server.add_template("wa", strategy="whatsapp|sms")
    assert send(api, WHATSAPP_FALLBACK_NUMBER, "wa").status_code == 200
    otp_server.fail_for("+6511234567", ErrorCode.TARGET_UNREACHABLE)  # invalid for SG
    assert send(api, "+6511234567").json()["code"] == 5012


@pytest.mark.engagelab(mainland_china=False)
@pytest.mark.parametrize(
    ("number", "outcome"),
    [("+8613800138000", 5017), ("+85291234567", 200), ("+886912345678", 200)],
)
def test_a_key_without_mainland_china_permission_answers_5017_for_plus_86(
    api: httpx.Client, number: str, outcome: int
) -> None:
    answer = send(api, number)
    if outcome == 200:
        assert answer.status_code == 200
    else:
        assert (answer.status_code, answer.json()["code"]) == (400, 5017)
        assert "+86 number" in answer.json()["message"]


def test_strict_without_phonenumbers_is_one_line_saying_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recipients, "phonenumbers_available", lambda: False)
    with pytest.raises(SettingsError) as raised:
        EngageLabSettings().merged({"phone_validation": "strict"}, source="the marker")
    assert str(raised.value) == (
        "the marker: phone_validation='strict' needs the phonenumbers package: "
        "pip install 'pytest-engagelab[phonenumbers]'"
    )
    with pytest.raises(SettingsError, match=r"must be 'e164' or 'strict', not 'loose'"):
        EngageLabSettings().merged({"phone_validation": "loose"}, source="the marker")


def test_phonenumbers_is_imported_by_strict_validation_only() -> None:
    script = (
        "import sys, pytest_engagelab.plugin\n"
        "from pytest_engagelab.emulator.core import Emulator\n"
        "Emulator()\n"
        "print('phonenumbers' in sys.modules)\n"
        "Emulator(phone_validation='strict')\n"
        "print('phonenumbers' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["False", "True"]
