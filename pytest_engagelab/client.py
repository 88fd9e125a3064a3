"""A typed httpx client for the EngageLab OTP API, sync (:class:`OTPClient`) and async
(:class:`AsyncOTPClient`).

It is the client the ``otp_client`` fixture hands to tests, and one a downstream
project can use in production::

    with OTPClient(dev_key, dev_secret) as client:
        sent = client.send("+6591234567", "login-code", language="en")
        result = client.verify(sent.message_id, "123456")

Every call validates its arguments before anything is sent (bad ones raise
:class:`ValueError`), sends only the fields the caller gave, and turns every
failure into an :class:`~pytest_engagelab.errors.EngageLabError`:

* a 4xx/5xx answer raises :meth:`EngageLabError.from_response` (a subclass
  carrying ``code``, ``message``, ``http_status`` and ``retryable``);
* a 2xx answer that is not the documented JSON raises a plain
  :class:`~pytest_engagelab.errors.EngageLabError`;
* a timeout raises :class:`~pytest_engagelab.errors.RequestTimeout` and any other
  connection failure :class:`~pytest_engagelab.errors.TransportError`, both
  chained (``raise ... from``) to the httpx exception.

The dev secret is kept only inside the prepared ``Authorization`` header, which
no repr shows, and it (if six characters or longer) and the header are scrubbed
from the text of every exception the client raises, even when a server echoes them.

Why this module is long: :class:`OTPClient` and :class:`AsyncOTPClient` mirror each
other method for method (one sync, one async) over one shared base that builds
requests and reads answers; keeping them side by side keeps them in step.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import httpx

from pytest_engagelab._version import __version__
from pytest_engagelab.emulator.auth import basic_authorization
from pytest_engagelab.emulator.settings import api_root
from pytest_engagelab.errors import EngageLabError, RequestTimeout, TransportError

__all__ = [
    "DEFAULT_BASE_URL",
    "LANGUAGES",
    "AsyncOTPClient",
    "OTPClient",
    "SendResult",
    "VerifyResult",
]

#: Where EngageLab serves the OTP API.
DEFAULT_BASE_URL: Final = "https://otp.api.engagelab.cc"

#: The template languages EngageLab documents for ``template.language``.
LANGUAGES: Final[frozenset[str]] = frozenset({"default", "zh_CN", "zh_HK", "en", "ja", "th", "es"})

_USER_AGENT: Final = f"pytest-engagelab/{__version__}"
_SNIPPET_LIMIT: Final = 200
_REDACTED: Final = "***"
#: Secrets shorter than this are not scrubbed from text: they would mangle ordinary words
#: (a test secret "s" is in "https").  Real EngageLab secrets are far longer.
_MIN_SCRUBBED_SECRET: Final = 6

_T = TypeVar("_T")
_V = TypeVar("_V")


@dataclass(frozen=True)
class SendResult:
    """EngageLab accepted a message: its id and the channel delivery started on.

    ``send_channel`` (``whatsapp``, ``sms``, ``email`` or ``voice``) is the channel
    in use when EngageLab answered, not necessarily the one that delivers.
    """

    message_id: str
    send_channel: str


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a code: ``verified`` is ``False`` for a wrong code."""

    message_id: str
    verify_code: str
    verified: bool


# --------------------------------------------------------------------------- validation


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a non-empty string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{name} must be a non-empty string, not {value!r}")
    return value


def _check_to(to: object, *, allow_list: bool = False) -> str | list[str]:
    if allow_list and isinstance(to, list):
        if not to:
            raise ValueError("to must not be an empty list; give at least one recipient")
        return [_check_text(f"to[{index}]", item) for index, item in enumerate(to)]
    if not isinstance(to, str) or not to.strip():
        allowed = "a phone number or e-mail address string"
        if allow_list:
            allowed += ", or a non-empty list of them"
        raise ValueError(f"to must be {allowed}, not {to!r}")
    return to


def _check_language(language: object) -> str:
    if not isinstance(language, str) or language not in LANGUAGES:
        allowed = ", ".join(sorted(LANGUAGES))
        raise ValueError(
            f"language {language!r} is not one EngageLab supports; use one of: {allowed}"
        )
    return language


def _check_params(params: object) -> dict[str, str]:
    if not isinstance(params, dict):
        raise ValueError(f"params must be a dict of str to str, not {type(params).__name__}")
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"params must be a dict of str to str; entry {key!r}: {value!r} is not"
            )
    return dict(params)


def _template(
    template_id: object, language: object | None, params: object | None
) -> dict[str, Any]:
    template: dict[str, Any] = {"id": _check_text("template_id", template_id)}
    if language is not None:
        template["language"] = _check_language(language)
    if params is not None:
        template["params"] = _check_params(params)
    return template


# --------------------------------------------------------------------------- responses


class _MalformedAnswer(Exception):
    """A 2xx answer is not the documented JSON; the text says how."""


def _snippet(content: bytes) -> str:
    flat = " ".join(content.decode("utf-8", errors="replace").split())
    if len(flat) > _SNIPPET_LIMIT:
        return flat[: _SNIPPET_LIMIT - 3] + "..."
    return flat or "(empty body)"


def _field(payload: Mapping[str, object], name: str, kind: type[_V]) -> _V:
    if name not in payload:
        raise _MalformedAnswer(f"{name!r} is missing")
    value = payload[name]
    if not isinstance(value, kind):
        raise _MalformedAnswer(
            f"{name!r} should be {kind.__name__}, not {type(value).__name__} {value!r}"
        )
    return value


def _parse_send(payload: Mapping[str, object]) -> SendResult:
    return SendResult(
        message_id=_field(payload, "message_id", str),
        send_channel=_field(payload, "send_channel", str),
    )


def _parse_verify(payload: Mapping[str, object]) -> VerifyResult:
    return VerifyResult(
        message_id=_field(payload, "message_id", str),
        verify_code=_field(payload, "verify_code", str),
        verified=_field(payload, "verified", bool),
    )


@dataclass(frozen=True)
class _Call(Generic[_T]):
    """One validated API call: where to POST, what to send and how to read the answer."""

    path: str
    body: dict[str, Any]
    parse: Callable[[Mapping[str, object]], _T]


def _send_call(
    to: object, template_id: object, language: object | None, params: object | None
) -> _Call[SendResult]:
    body: dict[str, Any] = {"to": _check_to(to)}
    body["template"] = _template(template_id, language, params)
    return _Call("/v1/messages", body, _parse_send)


def _send_code_call(
    to: object,
    code: object,
    template_id: object,
    language: object | None,
    params: object | None,
) -> _Call[SendResult]:
    body: dict[str, Any] = {"to": _check_to(to), "code": _check_text("code", code)}
    body["template"] = _template(template_id, language, params)
    return _Call("/v1/codes", body, _parse_send)


def _custom_message_call(
    to: object, template_id: object, params: object | None
) -> _Call[SendResult]:
    body: dict[str, Any] = {"to": _check_to(to, allow_list=True)}
    body["template"] = _template(template_id, None, params)
    return _Call("/v1/custom-messages", body, _parse_send)


def _verify_call(message_id: object, code: object) -> _Call[VerifyResult]:
    body = {
        "message_id": _check_text("message_id", message_id),
        "verify_code": _check_text("code", code),
    }
    return _Call("/v1/verifications", body, _parse_verify)


# --------------------------------------------------------------------------- shared base


class _Credentials:
    """The prepared ``Authorization`` header; the secret is never kept in plain text."""

    __slots__ = ("_header", "_key_length")

    def __init__(self, dev_key: str, dev_secret: str) -> None:
        __tracebackhide__ = True  # -l must not show dev_secret
        self._header = basic_authorization(dev_key, dev_secret)
        self._key_length = len(dev_key)

    @property
    def header(self) -> str:
        return self._header

    def scrub(self, text: str) -> str:
        """``text`` with the secret, the token and the header replaced by ``***``.

        A secret shorter than six characters is left alone: replacing it would mangle
        the rest of the text, and it is guessable anyway.
        """
        token = self._header.removeprefix("Basic ")
        try:
            secret = base64.b64decode(token).decode()[self._key_length + 1 :]
        except (binascii.Error, UnicodeDecodeError):  # pragma: no cover - we encoded it
            secret = ""
        if len(secret) < _MIN_SCRUBBED_SECRET:
            secret = ""
        for sensitive in (self._header, token, secret):
            if sensitive:
                text = text.replace(sensitive, _REDACTED)
        return text

    def __repr__(self) -> str:
        return "<credentials redacted>"


class _BaseOTPClient:
    """Everything the sync and async clients share but the I/O itself."""

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        base_url: str,
        timeout: float | httpx.Timeout,
        owns_http_client: bool,
    ) -> None:
        __tracebackhide__ = True  # -l must not show dev_secret
        if not isinstance(dev_key, str) or not isinstance(dev_secret, str):
            raise ValueError("dev_key and dev_secret must be strings")
        self._dev_key = dev_key
        self._credentials = _Credentials(dev_key, dev_secret)
        self._base_url = api_root(base_url)  # the API's root: a trailing /v1 is dropped
        self._timeout = timeout
        self._owns_http_client = owns_http_client

    @property
    def base_url(self) -> str:
        """The API root every path is joined to, without a trailing slash."""
        return self._base_url

    @property
    def dev_key(self) -> str:
        """The dev key the client authenticates with (the secret is not exposed)."""
        return self._dev_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, dev_key={self._dev_key!r})"

    def _url(self, call: _Call[Any]) -> str:
        return self._base_url + call.path

    def _request(self, call: _Call[Any]) -> dict[str, Any]:
        """The keyword arguments for ``http_client.request`` that make ``call``."""
        return {
            "method": "POST",
            "url": self._url(call),
            "content": json.dumps(call.body, ensure_ascii=False, separators=(",", ":")).encode(),
            # httpx.Headers, not a dict: its repr masks Authorization, so a traceback that
            # shows this frame's locals (pytest -l, --tb=long) does not show the secret.
            "headers": httpx.Headers(
                {
                    "Authorization": self._credentials.header,
                    "Content-Type": "application/json",
                    "Accept": "application/json",
                    "User-Agent": _USER_AGENT,
                }
            ),
            "timeout": self._timeout,
        }

    def _request_failed(self, call: _Call[Any], exc: httpx.RequestError) -> EngageLabError:
        """The exception for a request that got no usable answer (raise it ``from exc``)."""
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        url = self._url(call)
        # A request that never left (no connection) is safe to send again; one that may
        # have reached EngageLab (read or write failure) might already have sent the OTP.
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
        if isinstance(exc, httpx.TimeoutException):
            message = self._credentials.scrub(f"timed out reaching {url}: {detail}")
            return RequestTimeout(message, retryable=never_sent)
        if isinstance(exc, httpx.TransportError):
            message = self._credentials.scrub(f"could not reach {url}: {detail}")
            return TransportError(message, retryable=never_sent)
        return EngageLabError(self._credentials.scrub(f"request to {url} failed: {detail}"))

    def _result(self, call: _Call[_T], response: httpx.Response) -> _T:
        """The parsed answer, or raise the :class:`EngageLabError` it calls for."""
        status = response.status_code
        if status >= 400:
            error = EngageLabError.from_response(response)
            scrubbed = self._credentials.scrub(error.message)
            if scrubbed != error.message:
                error.message = scrubbed
                error.args = (scrubbed,)
            raise error
        try:
            if not 200 <= status < 300:
                raise _MalformedAnswer(f"expected a 2xx answer, got HTTP {status}")
            try:
                payload: Any = json.loads(response.content)
            except (ValueError, UnicodeDecodeError):
                raise _MalformedAnswer("the body is not JSON") from None
            if not isinstance(payload, dict):
                raise _MalformedAnswer(f"the body is JSON {type(payload).__name__}, not an object")
            return call.parse(payload)
        except _MalformedAnswer as malformed:
            message = (
                f"unexpected answer from POST {self._url(call)} (HTTP {status}): {malformed}; "
                f"body: {_snippet(response.content)}"
            )
            raise EngageLabError(self._credentials.scrub(message), http_status=status) from None


# --------------------------------------------------------------------------- clients


class OTPClient(_BaseOTPClient):
    """A synchronous client for the EngageLab OTP API.

    ``dev_key`` and ``dev_secret`` are sent as HTTP Basic auth.  ``timeout`` (seconds,
    or an ``httpx.Timeout``) applies to every request, including ones made through a
    caller's ``http_client``.  When ``http_client`` is given, requests go through it
    to absolute URLs built from ``base_url``, and :meth:`close` leaves it open: the
    client closes only what it opened.  Use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | httpx.Timeout = 10.0,
        http_client: httpx.Client | None = None,
    ) -> None:
        __tracebackhide__ = True  # -l must not show dev_secret
        super().__init__(
            dev_key,
            dev_secret,
            base_url=base_url,
            timeout=timeout,
            owns_http_client=http_client is None,
        )
        self._http = httpx.Client(timeout=timeout) if http_client is None else http_client

    def close(self) -> None:
        """Close the underlying httpx client if this client created it."""
        if self._owns_http_client:
            self._http.close()

    def __enter__(self) -> OTPClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, call: _Call[_T]) -> _T:
        try:
            response = self._http.request(**self._request(call))
        except httpx.RequestError as exc:
            raise self._request_failed(call, exc) from exc
        return self._result(call, response)

    def send(
        self,
        to: str,
        template_id: str,
        *,
        language: str | None = None,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Have EngageLab generate a code and deliver it to ``to`` (``POST /v1/messages``).

        ``to`` is an E.164 phone number or an e-mail address; ``language`` is one of
        :data:`LANGUAGES`; ``params`` fills the template's custom variables.  Fields
        left as ``None`` are not sent.
        """
        return self._call(_send_call(to, template_id, language, params))

    def send_code(
        self,
        to: str,
        code: str,
        template_id: str,
        *,
        language: str | None = None,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Deliver a code the caller generated (``POST /v1/codes``); no verify call follows."""
        return self._call(_send_code_call(to, code, template_id, language, params))

    def send_custom_message(
        self,
        to: str | list[str],
        template_id: str,
        *,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Send a custom-template message to one or more recipients (``POST /v1/custom-messages``).

        Custom messages take no ``language``; a verification-code template needs
        ``params["code"]``.
        """
        return self._call(_custom_message_call(to, template_id, params))

    def verify(self, message_id: str, code: str) -> VerifyResult:
        """Check ``code`` against the message ``send`` returned (``POST /v1/verifications``).

        A wrong code is not an error: it answers ``verified=False``.
        """
        return self._call(_verify_call(message_id, code))


class AsyncOTPClient(_BaseOTPClient):
    """The asynchronous form of :class:`OTPClient`, on an ``httpx.AsyncClient``.

    Same arguments, validation, results and exceptions; use it as an async context
    manager or call :meth:`aclose`.
    """

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float | httpx.Timeout = 10.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        __tracebackhide__ = True  # -l must not show dev_secret
        super().__init__(
            dev_key,
            dev_secret,
            base_url=base_url,
            timeout=timeout,
            owns_http_client=http_client is None,
        )
        self._http = httpx.AsyncClient(timeout=timeout) if http_client is None else http_client

    async def aclose(self) -> None:
        """Close the underlying httpx client if this client created it."""
        if self._owns_http_client:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncOTPClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _call(self, call: _Call[_T]) -> _T:
        try:
            response = await self._http.request(**self._request(call))
        except httpx.RequestError as exc:
            raise self._request_failed(call, exc) from exc
        return self._result(call, response)

    async def send(
        self,
        to: str,
        template_id: str,
        *,
        language: str | None = None,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Async :meth:`OTPClient.send` (``POST /v1/messages``)."""
        return await self._call(_send_call(to, template_id, language, params))

    async def send_code(
        self,
        to: str,
        code: str,
        template_id: str,
        *,
        language: str | None = None,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Async :meth:`OTPClient.send_code` (``POST /v1/codes``)."""
        return await self._call(_send_code_call(to, code, template_id, language, params))

    async def send_custom_message(
        self,
        to: str | list[str],
        template_id: str,
        *,
        params: dict[str, str] | None = None,
    ) -> SendResult:
        """Async :meth:`OTPClient.send_custom_message` (``POST /v1/custom-messages``)."""
        return await self._call(_custom_message_call(to, template_id, params))

    async def verify(self, message_id: str, code: str) -> VerifyResult:
        """Async :meth:`OTPClient.verify` (``POST /v1/verifications``)."""
        return await self._call(_verify_call(message_id, code))
