"""Property-based tests of the emulator: whatever arrives, a documented answer leaves.

For every route (and two that do not exist), random JSON values, random bytes,
random but plausible payloads and random headers are sent to
:meth:`Emulator.handle`.  Every answer must be a documented error code with its
documented HTTP status, or HTTP 200 with the documented success shape; ``handle``
never raises and never answers 1000 (that code is only ever injected).

Each test runs in two profiles: ``fast`` (default, a couple of hundred examples
per route) and ``deep`` (10,000 per route, marked ``deep``, selected only with
``-m deep``).  A stateful test checks verification and the frequency limit
against a model over random sequences of sends, verifications and clock moves.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pytest_engagelab.emulator.core import (
    DEFAULT_DEV_KEY,
    DEFAULT_DEV_SECRET,
    LANGUAGES,
    Emulator,
    EmulatorResponse,
)
from pytest_engagelab.emulator.templates import CHANNELS
from pytest_engagelab.errors import ErrorCode
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS, WHATSAPP_FALLBACK_NUMBER

AUTH = "Basic " + base64.b64encode(f"{DEFAULT_DEV_KEY}:{DEFAULT_DEV_SECRET}".encode()).decode()
HEADERS = {"authorization": AUTH, "content-type": "application/json"}

SENDS = ("/v1/messages", "/v1/codes", "/v1/custom-messages")
ROUTES = [
    *(("POST", path) for path in SENDS),
    ("POST", "/v1/verifications"),
    ("POST", "/v1/template-configs"),
    ("GET", "/v1/template-configs"),
    ("GET", "/v1/template-configs/login"),
    ("DELETE", "/v1/template-configs/login"),
    ("GET", "/v1/messages"),  # wrong method: 405
    ("POST", "/v1/unknown"),  # unknown path: 404
]
ROUTE_PARAMS = [pytest.param(route, id=" ".join(route)) for route in ROUTES]
SUCCESS = {"code": 0, "message": "success"}

FAST, DEEP = 100, 10_000
PROFILES = [
    pytest.param(FAST, id="fast"),
    pytest.param(DEEP, id="deep", marks=pytest.mark.deep),
]


# --------------------------------------------------------------------------- the oracle


def check_success(method: str, path: str, body: Any) -> None:
    """A 200 answer has the documented shape for its route."""
    if path in SENDS:
        assert set(body) == {"message_id", "send_channel"}
        assert isinstance(body["message_id"], str)
        assert len(body["message_id"]) == 19
        assert body["message_id"].isdigit()
        assert body["send_channel"] in CHANNELS
    elif path == "/v1/verifications":
        assert set(body) == {"message_id", "verify_code", "verified"}
        assert isinstance(body["message_id"], str)
        assert isinstance(body["verify_code"], str)
        assert isinstance(body["verified"], bool)
    elif method == "GET" and path == "/v1/template-configs":
        assert isinstance(body, list)
        for row in body:
            check_template_document(row)
    elif method == "GET":
        assert body["template_id"] == "login"
        check_template_document(body)
    else:
        assert body == SUCCESS


#: The fields template.json lists for a template read back, with their JSON types.
TEMPLATE_FIELDS = {
    "template_id": str,
    "description": str,
    "send_channel_strategy": str,
    "brand_name": str,
    "verify_code_config": dict,
    "whatsapp_config": dict,
    "sms_config": dict,
    "voice_config": dict,
    "email_config": dict,
    "pwa_config": dict,
    "created_time": int,
    "status": int,
    "audit_remark": str,
}


def check_template_document(row: Any) -> None:
    """A template as template.json documents it: known fields of the right types, every
    channel of its strategy configured, a review status of 1, 2 or 3."""
    assert isinstance(row, dict)
    assert set(row) <= set(TEMPLATE_FIELDS), set(row) - set(TEMPLATE_FIELDS)
    for name, kind in TEMPLATE_FIELDS.items():
        if name in row:
            assert isinstance(row[name], kind), (name, row[name])
    assert {"template_id", "send_channel_strategy", "status", "created_time"} <= set(row)
    for channel in row["send_channel_strategy"].split("|"):
        assert f"{channel}_config" in row
    assert row["status"] in (1, 2, 3)
    if "verify_code_config" in row:
        assert set(row["verify_code_config"]) == {
            "verify_code_type",
            "verify_code_len",
            "verify_code_ttl",
        }


def check(answer: object, method: str, path: str) -> None:
    """The answer is documented: 200 with its shape, or an error code with its status."""
    assert isinstance(answer, EmulatorResponse), answer  # a Fault only when injected
    if answer.status == 405:  # our documented choice, with the methods the path takes
        assert answer.headers[0] == ("content-type", "application/json")
        assert answer.headers[1][0] == "allow"
    else:
        assert answer.headers == (("content-type", "application/json"),)
    body = json.loads(answer.body.decode("utf-8"))  # strict UTF-8, valid JSON
    if answer.status == 200:
        check_success(method, path, body)
        return
    assert isinstance(body, dict)
    assert set(body) == {"code", "message"}
    code = ErrorCode.lookup(body["code"])
    assert isinstance(code, ErrorCode), body
    assert code is not ErrorCode.INTERNAL_ERROR, body["message"]  # only ever injected
    assert isinstance(body["message"], str)
    assert body["message"]
    if (method, path) == ("POST", "/v1/unknown"):
        assert (answer.status, code) == (404, ErrorCode.NOT_FOUND)  # our documented choice
    elif (method, path) == ("GET", "/v1/messages"):
        assert (answer.status, code) == (405, ErrorCode.INVALID_PARAMS)  # our documented choice
    else:
        assert answer.status == code.http_status, body


# --------------------------------------------------------------------------- strategies

#: Strings, half of them with the odd lone surrogate, which JSON's "\ud800" escape parses to
#: (Hypothesis's own text() never makes one; the emulator answers such a body 3001 up front,
#: so the other half must be plain for the payloads to reach the deeper checks).
def text(**bounds: int) -> st.SearchStrategy[str]:
    surrogates = st.integers(0xD800, 0xDFFF).map(chr)
    return st.text(st.characters(), **bounds) | st.text(st.characters() | surrogates, **bounds)
long_ids = st.sampled_from(["t" * 128, "t" * 129, "t" * 300])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | text(max_size=20)
    | st.sampled_from(["login", "+6591234567", "user@example.com", "sms", "en"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

recipients = st.sampled_from(
    ["+6591234567", "+6598765432", "user@example.com", "12345", WHATSAPP_FALLBACK_NUMBER]
) | st.sampled_from(sorted(DELIVERY_ERROR_NUMBERS))


wrong_values = st.sampled_from([None, 0, -1, 1.5, True, [], {}, "", " ", ["x"], {"a": 1}])


def maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly a plausible value, sometimes a wrong one (random JSON has its own test)."""
    return st.one_of(good, good, good, wrong_values | text(max_size=6))


template_field = st.fixed_dictionaries(
    {
        "id": maybe(
            st.sampled_from(["login", "mail", "text", "ghost"]) | text(max_size=20) | long_ids
        )
    },
    optional={
        "language": maybe(st.sampled_from(sorted(LANGUAGES))),
        "params": maybe(st.dictionaries(text(max_size=8), text(max_size=8), max_size=3)),
    },
)
send_payloads = st.fixed_dictionaries(
    {
        "to": maybe(recipients | st.lists(recipients, max_size=3)),
        "template": maybe(template_field),
        "code": maybe(text(min_size=1, max_size=10)),
    }
)
verify_payloads = st.fixed_dictionaries(
    {
        "message_id": maybe(st.sampled_from(["known", "known", "1874244142495207425"])),
        "verify_code": maybe(st.sampled_from(["right", "000000"]) | text(max_size=10)),
    }
)
code_config = st.fixed_dictionaries(
    {},
    optional={
        "verify_code_type": maybe(st.integers(0, 8)),
        "verify_code_len": maybe(st.integers(3, 11)),
        "verify_code_ttl": maybe(st.integers(0, 11)),
    },
)
config_payloads = st.fixed_dictionaries(
    {
        "template_id": maybe(st.sampled_from(["login", "new"]) | text(max_size=20) | long_ids),
        "send_channel_strategy": maybe(
            st.sampled_from(["sms", "email", "whatsapp|sms", "email|sms", "fax", ""])
        ),
    },
    optional={
        "brand_name": maybe(text(max_size=12)),
        "description": maybe(text(max_size=10)),
        "verify_code_config": maybe(code_config),
        "sms_config": maybe(
            st.fixed_dictionaries(
                {"template_type": st.sampled_from([1, 2, 3, "abc"])},
                optional={
                    "template_custom_config": st.fixed_dictionaries(
                        {
                            "custom_sub_type": st.sampled_from(
                                ["authentication", "marketing", "utility", "other"]
                            ),
                            "custom_content": st.sampled_from(["{{code}}", "no code", ""]),
                        },
                        optional={"custom_country_codes": st.sampled_from(["SG,MY", ""])},
                    ),
                    "custom_content": st.sampled_from(["{{code}}", "no code", ""]),
                },
            )
        ),
        "whatsapp_config": maybe(
            st.fixed_dictionaries({"template_type": st.sampled_from([1, 2, "x"])})
            | json_values
        ),
        "email_config": maybe(
            st.fixed_dictionaries(
                {"template_name": st.sampled_from(["otp", 5, ""])},
                optional={
                    "template_custom_configs": st.lists(
                        st.fixed_dictionaries(
                            {
                                "language": st.sampled_from(["default", "en", "xx"]),
                                "pre_from_mail": st.sampled_from(["no-reply@acme.com", "x"]),
                                "pre_subject": st.just("Your code"),
                                "template_content": st.sampled_from(["{{code}}", "hi"]),
                            }
                        ),
                        max_size=2,
                    )
                },
            )
        ),
        "pwa_config": maybe(
            st.fixed_dictionaries(
                {}, optional={"pwa_platform": st.just("p"), "pwa_code": text(max_size=4)}
            )
            | json_values
        ),
    },
)
any_payload = send_payloads | verify_payloads | config_payloads


def payloads_for(path: str) -> st.SearchStrategy[dict[str, Any]]:
    """Plausible bodies for ``path``; any kind for routes that read no body."""
    if path in SENDS:
        return send_payloads
    if path == "/v1/verifications":
        return verify_payloads
    if path == "/v1/template-configs":
        return config_payloads | any_payload
    return any_payload


content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", ""]
) | text(max_size=30)
authorizations = st.sampled_from(
    [AUTH, AUTH + " ", "Basic ", "Basic " + base64.b64encode(b"test-dev-key:x").decode(), ""]
) | text(max_size=40)
headers = st.builds(
    lambda extra, known: {**extra, **known},
    st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12), text()),
    st.fixed_dictionaries(
        {}, optional={"authorization": authorizations, "content-type": content_types}
    ),
)
emulator_options = st.fixed_dictionaries(
    {
        "strict_templates": st.booleans(),
        "key_status": st.sampled_from(["active", "active", "expired", "disabled"]),
        "forbidden_endpoints": st.sampled_from([(), (), ("/v1/messages", "/v1/verifications")]),
        "rate_limit": st.booleans(),
        "max_verify_attempts": st.sampled_from([None, 1, 3]),
    }
)


# --------------------------------------------------------------------------- the runs


def fresh(**options: Any) -> tuple[Emulator, str, str]:
    """An emulator with a few templates and one verifiable message: (emulator, id, code)."""
    emulator = Emulator(seed=0, **options)
    emulator.add_template("login", strategy="whatsapp|sms")
    emulator.add_template("mail", strategy="email")
    emulator.add_template("text", strategy="sms", code_length=4, code_type=7)
    sent = emulator.handle(
        "POST", "/v1/messages", HEADERS, b'{"to":"+6500000001","template":{"id":"login"}}'
    )
    if not (isinstance(sent, EmulatorResponse) and sent.status == 200):
        return emulator, "", ""  # a key that is expired or may not send
    return emulator, sent.json()["message_id"], emulator.last_code("+6500000001") or ""


def encode(payload: Any, message_id: str, code: str) -> bytes:
    """JSON bytes; the placeholders "known" and "right" become the real id and code."""
    if isinstance(payload, dict):
        if payload.get("message_id") == "known":
            payload = {**payload, "message_id": message_id}
        if payload.get("verify_code") == "right":
            payload = {**payload, "verify_code": code}
    return json.dumps(payload).encode()


def explore(
    examples: int, strategy: st.SearchStrategy[Any], test: Any, *, derandomize: bool = False
) -> None:
    """Run ``test`` on ``examples`` values drawn from ``strategy``."""

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=derandomize,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def run(value: Any) -> None:
        test(value)

    run()


@pytest.mark.parametrize("examples", PROFILES)
@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_random_json_bodies_get_documented_answers(examples: int, route: tuple[str, str]) -> None:
    method, path = route

    def test(value: Any) -> None:
        emulator, message_id, code = fresh()
        check(emulator.handle(method, path, HEADERS, encode(value, message_id, code)), *route)

    explore(examples, json_values, test)


@pytest.mark.parametrize("examples", PROFILES)
@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_random_bytes_get_documented_answers(examples: int, route: tuple[str, str]) -> None:
    method, path = route

    def test(raw: bytes) -> None:
        check(fresh()[0].handle(method, path, HEADERS, raw), *route)

    explore(examples, st.binary(max_size=300), test)


@pytest.mark.parametrize("examples", PROFILES)
@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_plausible_payloads_get_documented_answers(examples: int, route: tuple[str, str]) -> None:
    method, path = route

    def test(payload: dict[str, Any]) -> None:
        emulator, message_id, code = fresh()
        for _ in range(2):  # the second time meets the frequency limit and "already verified"
            check(emulator.handle(method, path, HEADERS, encode(payload, message_id, code)), *route)

    explore(examples, payloads_for(path), test)


@pytest.mark.parametrize("examples", PROFILES)
@pytest.mark.parametrize("route", ROUTE_PARAMS)
def test_random_headers_and_settings_get_documented_answers(
    examples: int, route: tuple[str, str]
) -> None:
    method, path = route

    def test(drawn: tuple[dict[str, str], dict[str, Any], dict[str, Any]]) -> None:
        request_headers, options, payload = drawn
        emulator, message_id, code = fresh(**options)
        body = encode(payload, message_id, code)
        check(emulator.handle(method, path, request_headers, body), *route)

    explore(examples, st.tuples(headers, emulator_options, payloads_for(path)), test)


def test_the_fuzzers_reach_success_and_every_stage_of_validation() -> None:
    """The plausible payloads are not all bounced at the door: they reach deep codes."""
    seen: set[int] = set()

    def test(drawn: tuple[str, dict[str, Any]]) -> None:
        path, payload = drawn
        emulator, message_id, code = fresh(strict_templates="ghost" in json.dumps(payload))
        for _ in range(2):
            answer = emulator.handle("POST", path, HEADERS, encode(payload, message_id, code))
            assert isinstance(answer, EmulatorResponse)
            seen.add(200 if answer.status == 200 else answer.json()["code"])

    paths = st.sampled_from([*SENDS, "/v1/verifications", "/v1/template-configs"])
    drawn = paths.flatmap(lambda path: st.tuples(st.just(path), payloads_for(path)))
    explore(300, drawn, test, derandomize=True)  # the same examples every run: never flaky
    assert {200, 3002, 3003, 3004, 4001, 5011} <= seen, sorted(seen)
    assert seen & {5001, *range(5012, 5021)}, sorted(seen)  # a magic number


# --------------------------------------------------------------------------- stateful model

RECIPIENTS = ("+6591234567", "+6598765432", "me@example.com")
TEMPLATES = {"sms60": 60, "mail120": 120, "voice300": 300}
STRATEGIES = {"sms60": "sms", "mail120": "email", "voice300": "voice|sms"}


class VerificationModel(RuleBasedStateMachine):
    """Sends, verifications and clock moves, checked against a small model."""

    @initialize(rate_limit=st.booleans(), attempts=st.sampled_from([None, 2]))
    def setup(self, rate_limit: bool, attempts: int | None) -> None:
        self.emulator = Emulator(seed=1, rate_limit=rate_limit, max_verify_attempts=attempts)
        for template_id, ttl in TEMPLATES.items():
            self.emulator.add_template(template_id, strategy=STRATEGIES[template_id], ttl=ttl)
        self.now = 0.0
        self.limits: dict[tuple[str, str], float] = {}
        # message_id -> [code, expires_at, verified, wrong_attempts]
        self.messages: dict[str, list[Any]] = {}
        self.journaled = 0

    def post(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        answer = self.emulator.handle("POST", path, HEADERS, json.dumps(payload).encode())
        assert isinstance(answer, EmulatorResponse)
        check(answer, "POST", path)
        body: dict[str, Any] = answer.json()
        return answer.status, body

    @rule(to=st.sampled_from(RECIPIENTS), template_id=st.sampled_from(sorted(TEMPLATES)))
    def send(self, to: str, template_id: str) -> None:
        status, body = self.post("/v1/messages", {"to": to, "template": {"id": template_id}})
        if ("@" in to) != (template_id == "mail120"):
            assert body["code"] == 3003
            return
        until = self.limits.get((template_id, to))
        if self.emulator.rate_limit and until is not None and self.now < until:
            assert body["code"] == 3004
            return
        assert status == 200, body
        self.limits[(template_id, to)] = self.now + TEMPLATES[template_id]
        code = self.emulator.last_code(to)
        self.messages[body["message_id"]] = [code, self.now + TEMPLATES[template_id], False, 0]
        self.journaled += 1

    @precondition(lambda self: self.messages)
    @rule(data=st.data(), right=st.booleans())
    def verify(self, data: st.DataObject, right: bool) -> None:
        message_id = data.draw(st.sampled_from(sorted(self.messages)))
        state = self.messages[message_id]
        code, expires_at, verified, wrong = state
        given_code = code if right else code + "x"
        status, body = self.post(
            "/v1/verifications", {"message_id": message_id, "verify_code": given_code}
        )
        limit = self.emulator.max_verify_attempts
        if verified or self.now >= expires_at or (limit is not None and wrong >= limit):
            assert body["code"] == 3003
            return
        assert (status, body["verified"]) == (200, right)
        if right:
            state[2] = True
        else:
            state[3] += 1

    @rule(seconds=st.sampled_from([1, 30, 59, 60, 61, 119, 300]))
    def advance(self, seconds: int) -> None:
        self.now += seconds
        self.emulator.advance(seconds)

    @invariant()
    def journal_matches(self) -> None:
        if hasattr(self, "emulator"):
            assert len(self.emulator.journal) == self.journaled


@pytest.mark.parametrize("examples", [pytest.param(60, id="fast"), *PROFILES[1:]])
def test_verification_and_frequency_limit_follow_the_model(examples: int) -> None:
    run = settings(max_examples=examples, stateful_step_count=25, deadline=None)
    VerificationModel.TestCase.settings = run
    VerificationModel.TestCase().runTest()
