"""OTPMock, the respx door: real httpx clients in, emulator answers out.

Checks that every httpx client (sync or async, built before or after the mock
started, built by the code under test) reaches the emulator, that requests to
any other URL go where they would have gone (a real 127.0.0.1 server, respx_mock,
pytest-httpx), that failures are injected as documented, and that nothing stays
patched once the mock stops.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
import respx

from pytest_engagelab import errors
from pytest_engagelab.client import AsyncOTPClient, OTPClient
from pytest_engagelab.doors.mock import OTPMock
from pytest_engagelab.emulator.core import DEFAULT_BASE_URL, Emulator
from pytest_engagelab.errors import DeliveryError, ErrorCode, RequestTimeout

PHONE = "+6591234567"
MESSAGE = {"to": PHONE, "template": {"id": "login"}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _Echo(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        text = f"real server: {self.command} {self.path} {body.decode()}".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that echoes what it got; yields its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def otp() -> Iterator[OTPMock]:
    with OTPMock(Emulator(seed=1)) as mock:
        yield mock


def auth(mock: OTPMock) -> dict[str, str]:
    token = base64.b64encode(f"{mock.dev_key}:{mock.dev_secret}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def app_sends_code(to: str) -> str:
    """Code under test: builds its own client, as an application would."""
    token = base64.b64encode(b"test-dev-key:test-dev-secret").decode()
    with httpx.Client(base_url=DEFAULT_BASE_URL, headers={"Authorization": f"Basic {token}"}) as c:
        response = c.post("/v1/messages", json={"to": to, "template": {"id": "login"}})
        response.raise_for_status()
        message_id: str = response.json()["message_id"]
        return message_id


async def app_verifies(message_id: str, code: str) -> bool:
    """Code under test, async flavour."""
    token = base64.b64encode(b"test-dev-key:test-dev-secret").decode()
    async with httpx.AsyncClient(headers={"Authorization": f"Basic {token}"}) as client:
        response = await client.post(
            f"{DEFAULT_BASE_URL}/v1/verifications",
            json={"message_id": message_id, "verify_code": code},
        )
        verified: bool = response.json()["verified"]
        return verified


# --------------------------------------------------------------------------- interception


@pytest.mark.anyio
async def test_clients_built_by_the_code_under_test_reach_the_emulator(otp: OTPMock) -> None:
    message_id = app_sends_code(PHONE)
    sent = otp.assert_sent_once(to=PHONE, template_id="login", endpoint="/v1/messages")
    assert sent.message_id == message_id
    assert await app_verifies(message_id, "wrong") is False
    assert await app_verifies(message_id, otp.last_code(PHONE)) is True


def test_a_client_built_before_the_mock_started_is_intercepted_too() -> None:
    emulator = Emulator()
    with httpx.Client() as client:
        mock = OTPMock(emulator)
        with mock:
            response = client.post(
                f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(mock)
            )
        assert response.status_code == 200
        assert response.json()["send_channel"] == "sms"
        assert len(emulator.journal) == 1


def test_module_level_httpx_functions_are_intercepted(otp: OTPMock) -> None:
    response = httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(otp))
    assert response.status_code == 200
    assert otp.sent[0].request is not None
    assert otp.sent[0].request.url == f"{DEFAULT_BASE_URL}/v1/messages"


def test_the_journal_keeps_the_request_that_asked(otp: OTPMock) -> None:
    with httpx.Client(headers={"User-Agent": "my-app/1.0"}) as client:
        client.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(otp))
    request = otp.assert_sent(to=PHONE).request
    assert request is not None
    assert request.headers["user-agent"] == "my-app/1.0"


@pytest.mark.anyio
async def test_the_typed_clients_work_end_to_end(otp: OTPMock) -> None:
    with OTPClient(otp.dev_key, otp.dev_secret, base_url=otp.base_url) as client:
        sent = client.send(PHONE, "login", language="en")
        assert client.verify(sent.message_id, otp.last_code(PHONE)).verified is True
    async with AsyncOTPClient(otp.dev_key, otp.dev_secret) as async_client:
        other = await async_client.send_code("+6598765432", "9911", "login")
        assert otp.last_code("+6598765432") == "9911"
        assert other.send_channel == "sms"
    otp.assert_sent_count(2, template_id="login")


def test_error_answers_reach_the_client_as_documented(otp: OTPMock) -> None:
    response = httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == 2001
    unknown = httpx.get(f"{DEFAULT_BASE_URL}/v1/unknown")
    assert (unknown.status_code, unknown.json()["code"]) == (404, 4001)


# --------------------------------------------------------------------------- other hosts


@pytest.mark.anyio
async def test_other_hosts_pass_through_untouched(otp: OTPMock, server: str) -> None:
    assert httpx.get(f"{server}/health").text == "real server: GET /health "
    with httpx.Client() as client:
        echoed = client.post(f"{server}/v1/messages", content=b"hi")
    assert echoed.text == "real server: POST /v1/messages hi"
    async with httpx.AsyncClient() as async_client:
        answer = await async_client.post(f"{server}/async", content=b"yo")
    assert answer.text == "real server: POST /async yo"
    assert otp.sent == []


def test_a_base_url_with_a_path_owns_only_that_path(server: str) -> None:
    with OTPMock(base_url=f"{server}/engagelab/") as mock:
        ours = httpx.post(f"{server}/engagelab/v1/messages", json=MESSAGE, headers=auth(mock))
        prefix_only = httpx.post(f"{server}/engagelabx/v1/messages", content=b"x")
        with pytest.raises(httpx.ConnectError):  # another port: the network, refused
            httpx.get("http://127.0.0.1:1/engagelab/v1/messages")
    assert ours.status_code == 200
    assert mock.sent[0].endpoint == "/v1/messages"
    assert prefix_only.text == "real server: POST /engagelabx/v1/messages x"


def test_respx_mock_routes_for_other_hosts_keep_working(
    respx_mock: respx.MockRouter, otp: OTPMock
) -> None:
    route = respx_mock.get("https://api.other.example/users").respond(200, json=["ann"])
    assert httpx.get("https://api.other.example/users").json() == ["ann"]
    response = httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(otp))
    assert response.status_code == 200
    assert route.call_count == 1
    otp.assert_sent_once(to=PHONE)


def test_a_respx_router_started_after_the_mock_also_coexists(otp: OTPMock) -> None:
    with respx.mock(assert_all_called=True) as router:
        router.post("https://hooks.example/notify").respond(204)
        assert httpx.post("https://hooks.example/notify").status_code == 204
        answer = httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(otp))
        assert answer.status_code == 200
    assert len(otp.sent) == 1


def test_pytest_httpx_responses_for_other_hosts_keep_working(
    request: pytest.FixtureRequest,
) -> None:
    pytest.importorskip("pytest_httpx")
    httpx_mock: Any = request.getfixturevalue("httpx_mock")
    httpx_mock.add_response(url="https://api.other.example/users", json=["bob"])
    with OTPMock() as otp:
        assert httpx.get("https://api.other.example/users").json() == ["bob"]
        answer = httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(otp))
    assert answer.status_code == 200
    otp.assert_sent_once(to=PHONE)


# --------------------------------------------------------------------------- start and stop


def patched_methods() -> tuple[Any, ...]:
    """What respx (using="httpx") patches, and what pytest-httpx patches."""
    return (
        httpx.Client._transport_for_url,
        httpx.AsyncClient._transport_for_url,
        httpx.HTTPTransport.handle_request,
        httpx.AsyncHTTPTransport.handle_async_request,
    )


@pytest.mark.anyio
async def test_nothing_stays_patched_after_stop(server: str) -> None:
    before = patched_methods()
    mock = OTPMock(base_url=server)
    assert not mock.started
    try:
        mock.start()
        mock.start()  # idempotent
        assert mock.started
        assert patched_methods() != before
        intercepted = httpx.post(f"{server}/v1/messages", content=b"{}")
        assert intercepted.json()["code"] == 2001
    finally:
        mock.stop()
    mock.stop()
    assert not mock.started
    assert patched_methods() == before
    assert httpx.post(f"{server}/v1/messages", content=b"{}").text.startswith("real server")
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{server}/v1/messages", content=b"{}")
        assert answer.text.startswith("real server")


def test_the_context_manager_stops_even_when_the_block_raises(server: str) -> None:
    before = patched_methods()
    with pytest.raises(RuntimeError, match="boom"), OTPMock(base_url=server):
        raise RuntimeError("boom")
    assert patched_methods() == before
    assert httpx.get(f"{server}/x").text.startswith("real server")


def test_a_stopped_mock_can_start_again_and_keeps_its_journal(server: str) -> None:
    mock = OTPMock(base_url=server)
    answers = []
    for _ in range(2):
        with mock:
            body = {**MESSAGE, "code": "1234"}
            answers.append(httpx.post(f"{server}/v1/codes", json=body, headers=auth(mock)))
    assert answers[0].status_code == 200
    assert answers[1].json()["code"] == 3004  # the same emulator: the frequency limit holds
    assert [m.code for m in mock.sent] == ["1234"]
    assert httpx.get(f"{server}/x").text.startswith("real server")


def test_two_mocks_for_two_base_urls_each_answer_their_own(server: str) -> None:
    with OTPMock() as first, OTPMock(base_url=server) as second:
        httpx.post(f"{DEFAULT_BASE_URL}/v1/messages", json=MESSAGE, headers=auth(first))
        httpx.post(f"{server}/v1/messages", json=MESSAGE, headers=auth(second))
    assert (len(first.sent), len(second.sent)) == (1, 1)


def test_mocks_stopped_out_of_order_leave_the_others_answering(server: str) -> None:
    before = patched_methods()
    first, second = OTPMock(), OTPMock(base_url=server)
    first.start()
    second.start()
    first.stop()  # the first started stops first: the second still answers
    assert patched_methods() != before
    answer = httpx.post(f"{server}/v1/messages", json=MESSAGE, headers=auth(second))
    assert answer.status_code == 200
    second.stop()
    assert patched_methods() == before
    assert httpx.get(f"{server}/x").text.startswith("real server")
    assert (len(first.sent), len(second.sent)) == (0, 1)


def test_a_respx_router_outliving_the_mock_keeps_working_then_unpatches(server: str) -> None:
    before = patched_methods()
    mock = OTPMock(base_url=server)
    mock.start()  # patches httpx first
    router = respx.mock(assert_all_called=False)
    router.start()
    router.get("https://api.other.example/users").respond(200, json=["cy"])
    mock.stop()  # respx's router still needs the patch
    try:
        assert httpx.get("https://api.other.example/users").json() == ["cy"]
        with pytest.raises(respx.models.AllMockedAssertionError):
            httpx.post(f"{server}/v1/messages", json=MESSAGE, headers=auth(mock))
    finally:
        router.stop()
    assert patched_methods() == before
    assert httpx.get(f"{server}/x").text.startswith("real server")
    assert len(mock.sent) == 0


def test_repr_names_the_base_url_and_never_the_secret() -> None:
    mock = OTPMock(Emulator(dev_secret="hush-hush-secret"))
    assert repr(mock) == (
        "OTPMock(base_url='https://otp.api.engagelab.cc', dev_key='test-dev-key', sent=0)"
    )


# --------------------------------------------------------------------------- injection


def post(mock: OTPMock, path: str = "/v1/messages") -> httpx.Response:
    return httpx.post(f"{mock.base_url}{path}", json=MESSAGE, headers=auth(mock))


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: str(int(c)))
def test_an_injected_error_code_reaches_the_client(otp: OTPMock, code: ErrorCode) -> None:
    otp.fail_next(code)
    response = post(otp)
    assert response.status_code == code.http_status
    assert response.json() == {"code": int(code), "message": code.default_message}
    assert post(otp).status_code == 200


def test_an_injected_response_factory_reaches_the_client(otp: OTPMock) -> None:
    otp.fail_next(errors.frequency_limited(message="wait 60s"), endpoint="/v1/codes")
    otp.fail_next(httpx.Response(503, text="maintenance", headers={"Retry-After": "30"}))
    unavailable = post(otp, "/v1/verifications")  # the 503 is not bound to an endpoint
    assert (unavailable.status_code, unavailable.text) == (503, "maintenance")
    assert unavailable.headers["retry-after"] == "30"
    limited = httpx.post(
        f"{DEFAULT_BASE_URL}/v1/codes", json={**MESSAGE, "code": "1"}, headers=auth(otp)
    )
    assert (limited.status_code, limited.json()) == (400, {"code": 3004, "message": "wait 60s"})


@pytest.mark.parametrize(
    "exception",
    [
        httpx.ConnectTimeout("connect timed out"),
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectError("connection refused"),
        httpx.RemoteProtocolError("peer closed"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.anyio
async def test_an_injected_exception_is_raised_to_sync_and_async_clients(
    otp: OTPMock, exception: httpx.RequestError
) -> None:
    otp.fail_next(exception, times=2)
    with pytest.raises(type(exception), match=str(exception)) as sync_raised:
        post(otp)
    assert sync_raised.value.request.url == f"{DEFAULT_BASE_URL}/v1/messages"
    async with httpx.AsyncClient() as client:
        with pytest.raises(type(exception)) as async_raised:
            await client.post(f"{DEFAULT_BASE_URL}/v1/verifications", json={})
    assert async_raised.value.request.url == f"{DEFAULT_BASE_URL}/v1/verifications"
    assert post(otp).status_code == 200


def test_typed_clients_map_injected_failures(otp: OTPMock) -> None:
    otp.fail_next(httpx.ConnectTimeout("slow network"))
    otp.fail_for("+6500000000", ErrorCode.BLACKLISTED)
    with OTPClient(otp.dev_key, otp.dev_secret) as client:
        with pytest.raises(RequestTimeout) as timeout:
            client.send(PHONE, "login")
        assert isinstance(timeout.value.__cause__, httpx.ConnectTimeout)
        with pytest.raises(DeliveryError) as delivery:
            client.send("+6500000000", "login")
        assert delivery.value.code is ErrorCode.BLACKLISTED
        assert client.send(PHONE, "login").send_channel == "sms"
    assert otp.unfired_report() is None


def test_unfired_injections_are_reported(otp: OTPMock) -> None:
    otp.fail_next(ErrorCode.SEND_FAILED, times=2)
    post(otp)
    report = otp.unfired_report()
    assert report is None  # fired once: not "unfired"
    otp.fail_for("+6511111111", httpx.ReadTimeout("late"))
    report = otp.unfired_report()
    assert report is not None
    assert report.splitlines()[:2] == [
        "1 injected failure(s) never fired:",
        "  fail_for('+6511111111', ReadTimeout('late')) (fired 0 times)",
    ]


# -- misuse gets one clear message -------------------------------------------------------------


def test_fail_next_refuses_an_endpoint_it_could_never_match() -> None:
    otp = OTPMock()
    with pytest.raises(
        ValueError,
        match=r"fail_next\(endpoint='messages'\) would never fire: use one of /v1/messages, ",
    ):
        otp.fail_next(ErrorCode.SEND_FAILED, endpoint="messages")
    assert otp.emulator.injections == []


def test_fail_for_needs_a_recipient_string() -> None:
    with pytest.raises(
        ValueError, match="fail_for\\(\\) needs the recipient as a non-empty string, not 12345"
    ):
        OTPMock().fail_for(12345, ErrorCode.BLACKLISTED)  # type: ignore[arg-type]


def test_assert_sent_count_needs_a_count_of_zero_or_more() -> None:
    with pytest.raises(TypeError, match=r"assert_sent_count\(\) needs a count >= 0, not -1"):
        OTPMock().assert_sent_count(-1)


def test_a_finished_test_lets_go_of_its_otp_mock(pytester: pytest.Pytester) -> None:
    """The item outlives its test (pytest keeps every item until the session ends):
    once its reports are made it no longer holds the mock, its journal and requests,
    which a long suite would otherwise keep, and the garbage collector walk, to the end."""
    pytester.makepyfile(
        """
        import gc
        import weakref

        import httpx

        MOCKS = []

        def test_sends(otp_mock):
            MOCKS.append(weakref.ref(otp_mock))
            answer = httpx.post(
                "https://otp.api.engagelab.cc/v1/messages",
                json={"to": "+6591234567", "template": {"id": "login"}},
                auth=("test-dev-key", "test-dev-secret"),
            )
            assert answer.status_code == 200

        def test_the_mock_is_gone():
            gc.collect()
            assert len(MOCKS) == 1
            assert MOCKS[0]() is None
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)
