"""What a test does with the emulator, whichever door it stands behind.

:class:`EmulatorControls` is the base of ``OTPMock`` (respx, in-process) and
``OTPServer`` (a loopback socket): the journal, the assertions, the last code,
failure injection, templates and the clock.

Why this module is long: it is the whole test-facing API every door inherits
(journal and request assertions, injections, templates, clock, callbacks); one base
class keeps ``otp_mock``, ``otp_server`` and the SMPP door answering alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypedDict, Unpack, cast

from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.defaults import DEFAULT_BUSINESS_ID
from pytest_engagelab.emulator.journal import SentMessage
from pytest_engagelab.emulator.model import InjectedError, Injection
from pytest_engagelab.emulator.request_log import RequestRecord
from pytest_engagelab.emulator.settings import api_root
from pytest_engagelab.emulator.templates import ReviewStatus, Template

if TYPE_CHECKING:  # callback delivery is imported by the first test that uses it
    from pytest_engagelab.callbacks import CallbackDelivery

__all__ = [
    "EmulatorControls",
    "MessageCriteria",
    "RequestCriteria",
    "VerifiedCriteria",
    "review_from_json",
]


class MessageCriteria(TypedDict, total=False):
    """The fields the assertions match on; a field left out matches anything.

    ``params`` compares the whole dict; ``params_include`` only the keys it gives.
    """

    to: str
    template_id: str
    language: str
    params: dict[str, str]
    params_include: Mapping[str, str]
    endpoint: str
    send_channel: str
    message_id: str


_CRITERIA: Final = frozenset(MessageCriteria.__annotations__)


class RequestCriteria(TypedDict, total=False):
    """The fields ``assert_requested`` matches on; a field left out matches anything.
    ``code=None`` asks for requests answered without an error code."""

    endpoint: str | None
    method: str
    path: str
    status: int | None
    code: int | None


class VerifiedCriteria(TypedDict, total=False):
    """The fields ``assert_verified`` matches on: ``code`` is the code that was accepted."""

    message_id: str
    to: str
    code: str


_REQUEST_CRITERIA: Final = frozenset(RequestCriteria.__annotations__)
_VERIFIED_CRITERIA: Final = frozenset(VerifiedCriteria.__annotations__)


def _record_fields(entry: RequestRecord) -> dict[str, Any]:
    return {
        "endpoint": entry.endpoint,
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
        "code": entry.code,
    }


def _unknown(headline: str, given: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise TypeError(
            f"{headline}() got unknown keyword(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )


def _differences(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    return [
        f"{name}: expected {value!r}, got {actual.get(name)!r}"
        for name, value in expected.items()
        if actual.get(name) != value
    ]


def _request_report(
    headline: str,
    expected: Mapping[str, Any],
    label: str,
    rows: Sequence[tuple[Mapping[str, Any], str]],
    dropped: int,
    limit: int | None,
) -> str:
    """What was expected, what arrived, and how the closest differs (as ``assert_sent``)."""
    wanted = ", ".join(f"{k}={v!r}" for k, v in expected.items()) or "any request"
    lines = [headline, f"Expected: {wanted}"]
    if not rows:
        lines.append(f"{label}: none")
    else:
        lines.append(f"{label} ({len(rows)}):")
        lines.extend(f"  {i}. {line}" for i, (_, line) in enumerate(rows, 1))
        distance, index = min(
            (len(_differences(fields, expected)), i) for i, (fields, _) in enumerate(rows, 1)
        )
        if distance:
            lines.append(f"Closest: #{index}, which differs in")
            lines.extend(f"  {d}" for d in _differences(rows[index - 1][0], expected))
    if dropped:
        lines.append(
            f"({dropped} older requests were dropped: the log keeps the last {limit}; raise "
            "journal_limit to keep more)"
        )
    return "\n".join(lines)
def _injectable(method: str, error: object) -> InjectedError:
    """``error`` as the emulator takes it: a documented code's number becomes its
    :class:`ErrorCode`; a number or a string that is not one is refused in one line."""
    __tracebackhide__ = True
    if isinstance(error, int) and not isinstance(error, ErrorCode | bool):
        member = ErrorCode.lookup(error)
        if not isinstance(member, ErrorCode):
            raise ValueError(
                f"{method}({error!r}): {error} is not an error code EngageLab documents; use "
                f"one of {_documented_codes()} (the members of ErrorCode), or an "
                "httpx.Response for any other answer"
            )
        return member
    if isinstance(error, str):
        named = _named_code(error)
        hint = f"ErrorCode.{named.name} (or {int(named)})" if named else "an ErrorCode member"
        raise TypeError(
            f"{method}({error!r}): a string is not an injectable error; use {hint}, "
            "an httpx.Response or an exception instance"
        )
    return cast(InjectedError, error)  # anything else: the emulator checks it and says why


def _named_code(text: str) -> ErrorCode | None:
    """The member a string means, by number (``"5001"``) or name (``"send_failed"``)."""
    word = text.strip()
    if word.isdigit():
        member = ErrorCode.lookup(int(word))
        return member if isinstance(member, ErrorCode) else None
    return ErrorCode.__members__.get(word.upper().removeprefix("ERRORCODE."))


def _documented_codes() -> str:
    return ", ".join(str(int(code)) for code in ErrorCode)




def review_from_json(controls: EmulatorControls, payload: Mapping[str, Any]) -> dict[str, Any]:
    """``POST /_emulator/review-template``: ``{"template_id": "login", "status":
    "rejected", "remark": "..."}`` -> the template's ``template_id``, ``status`` (1, 2, 3)
    and ``audit_remark``.  :class:`ValueError` for a bad value, :class:`LookupError` for
    an unknown template; each message says what is wrong."""
    template_id = payload.get("template_id")
    status = payload.get("status")
    remark = payload.get("remark", "")
    if not isinstance(template_id, str) or not template_id:
        raise ValueError("template_id is required: the template to review")
    if status not in ("pending", "approved", "rejected"):
        raise ValueError(f"status must be 'pending', 'approved' or 'rejected', not {status!r}")
    if not isinstance(remark, str):
        raise ValueError(f"remark must be a string, not {remark!r}")
    try:
        template = controls.review_template(template_id, status, remark=remark)
    except KeyError as error:
        raise LookupError(error.args[0]) from None
    return {
        "template_id": template.template_id,
        "status": template.status,
        "audit_remark": template.audit_remark,
    }


class EmulatorControls:
    """The journal, assertions, injection, templates and clock of one emulator."""

    def __init__(self, emulator: Emulator, base_url: str) -> None:
        self.emulator = emulator
        self.base_url = api_root(base_url)  # the API's root: a trailing /v1 is dropped

    def start(self) -> None:
        """Start answering requests (each door says how)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop answering requests and release what :meth:`start` took."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def dev_key(self) -> str:
        """The dev key the emulator accepts."""
        return self.emulator.dev_key

    @property
    def dev_secret(self) -> str:
        """The dev secret the emulator accepts."""
        return self.emulator.dev_secret

    # -- the journal ----------------------------------------------------------------

    @property
    def sent(self) -> list[SentMessage]:
        """Every message delivered so far, oldest first (a copy)."""
        return self.emulator.journal.snapshot()

    def _find(
        self, headline: str, want: int | None, criteria: MessageCriteria
    ) -> list[SentMessage]:
        __tracebackhide__ = True
        unknown = set(criteria) - _CRITERIA
        if unknown:
            raise TypeError(
                f"{headline}() got unknown field(s) {', '.join(sorted(unknown))}; "
                f"match on: {', '.join(sorted(_CRITERIA))}"
            )
        include = criteria.get("params_include")
        if include is not None and not (
            isinstance(include, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in include.items())
        ):
            raise TypeError(
                f"{headline}(params_include=...) takes a dict of strings such as "
                f"{{'code': '123456'}}, not {include!r}"
            )
        expected = dict(criteria)
        journal = self.emulator.journal
        found = journal.matching(expected)
        if want is None and not found:
            raise AssertionError(journal.report(f"{headline}: no message matched.", expected))
        if want is not None and len(found) != want:
            raise AssertionError(
                journal.report(
                    f"{headline}: expected {want} matching message(s), found {len(found)}.",
                    expected,
                )
            )
        return found

    def assert_sent(self, **criteria: Unpack[MessageCriteria]) -> SentMessage:
        """Assert that a message matching every given field was sent; return the latest.

        Fields: ``to``, ``template_id``, ``language``, ``params``, ``params_include``,
        ``endpoint``, ``send_channel``, ``message_id``.  A field not given matches
        anything; ``params`` compares as a whole dict, ``params_include={...}`` matches
        a message whose params hold at least these keys with these values.  A field
        that does not exist raises ``TypeError`` (misuse, not a failed assertion).
        """
        __tracebackhide__ = True
        return self._find("assert_sent", None, criteria)[-1]

    def assert_sent_once(self, **criteria: Unpack[MessageCriteria]) -> SentMessage:
        """Assert that exactly one message matches; return it."""
        __tracebackhide__ = True
        return self._find("assert_sent_once", 1, criteria)[0]

    def assert_not_sent(self, **criteria: Unpack[MessageCriteria]) -> None:
        """Assert that no message matches."""
        __tracebackhide__ = True
        self._find("assert_not_sent", 0, criteria)

    def assert_sent_count(
        self, count: int, **criteria: Unpack[MessageCriteria]
    ) -> list[SentMessage]:
        """Assert that exactly ``count`` messages match; return them."""
        __tracebackhide__ = True
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise TypeError(f"assert_sent_count() needs a count >= 0, not {count!r}")
        return self._find("assert_sent_count", count, criteria)

    # -- every request ----------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request that reached the emulator, answered or refused, oldest first
        (a copy; bounded by ``journal_limit`` like :attr:`sent`)."""
        return self.emulator.requests.snapshot()

    def requests_lines(self, limit: int | None = None) -> list[str]:
        """One line per request and its answer (no credentials), oldest first, for failure
        reports; at most ``limit`` requests."""
        log = self.emulator.requests
        kept = log.snapshot()[:limit]
        lines = [f"{i}. {r.describe()}" for i, r in enumerate(kept, log.dropped + 1)]
        if log.dropped:
            lines.insert(0, f"({log.dropped} older requests dropped)")
        return lines

    def assert_requested(
        self, *, times: int | None = None, **criteria: Unpack[RequestCriteria]
    ) -> list[RequestRecord]:
        """Assert that requests matching every given field arrived; return them.

        Fields: ``endpoint`` (``"/v1/messages"``), ``method``, ``path``, ``status``
        and ``code`` (the EngageLab error code answered; ``code=None`` matches
        requests answered without one).  ``times`` asks for exactly that many; without
        it, at least one.
        """
        __tracebackhide__ = True
        _unknown("assert_requested", criteria, _REQUEST_CRITERIA)
        if times is not None and (
            not isinstance(times, int) or isinstance(times, bool) or times < 0
        ):
            raise TypeError(f"assert_requested() needs times >= 0 or None, not {times!r}")
        expected: dict[str, Any] = dict(criteria)
        log = self.emulator.requests
        records = log.snapshot()
        fields = [_record_fields(r) for r in records]
        found = [r for r, f in zip(records, fields, strict=True) if not _differences(f, expected)]
        if (times is None and found) or len(found) == times:
            return found
        headline = (
            "assert_requested: no request matched."
            if times is None
            else f"assert_requested: expected {times} matching request(s), found {len(found)}."
        )
        rows = [(f, r.describe()) for f, r in zip(fields, records, strict=True)]
        raise AssertionError(
            _request_report(headline, expected, "Requests", rows, log.dropped, log.limit)
        )

    def assert_verified(self, **criteria: Unpack[VerifiedCriteria]) -> RequestRecord:
        """Assert that a verification was answered ``verified: true``; return the latest.

        Fields: ``message_id``, ``to`` (the recipient of that message) and ``code``
        (the code that was accepted).  A field not given matches anything.
        """
        __tracebackhide__ = True
        _unknown("assert_verified", criteria, _VERIFIED_CRITERIA)
        expected: dict[str, Any] = dict(criteria)
        log = self.emulator.requests
        recipients = {m.message_id: m.to for m in self.emulator.journal.snapshot()}
        rows: list[tuple[Mapping[str, Any], str]] = []
        found: list[RequestRecord] = []
        for entry in log.snapshot():
            if entry.endpoint != "/v1/verifications":
                continue
            body = entry.json if isinstance(entry.json, dict) else {}
            answer = entry.answer if isinstance(entry.answer, dict) else {}
            message_id = body.get("message_id")
            fields = {
                "message_id": message_id,
                "to": recipients.get(message_id) if isinstance(message_id, str) else None,
                "code": body.get("verify_code"),
                "verified": answer.get("verified") is True,
            }
            rows.append((fields, entry.describe()))
            if fields["verified"] and not _differences(fields, expected):
                found.append(entry)
        if found:
            return found[-1]
        wanted = {**expected, "verified": True}
        raise AssertionError(
            _request_report(
                "assert_verified: no verification was answered verified: true"
                + (" for these fields." if expected else "."),
                wanted,
                "Verifications",
                rows,
                log.dropped,
                log.limit,
            )
        )

    def last_code(self, to: str) -> str:
        """The last code delivered to ``to``, to type into a verify flow."""
        __tracebackhide__ = True
        code = self.emulator.last_code(to)
        if code is None:
            recipients = sorted({m.to for m in self.sent})
            sent_to = ", ".join(repr(r) for r in recipients) if recipients else "nobody"
            raise AssertionError(
                f"last_code({to!r}): no code was delivered to it; sent to: {sent_to}"
            )
        return code

    # -- control ----------------------------------------------------------------------

    def fail_next(
        self, error: InjectedError | int, *, times: int = 1, endpoint: str | None = None
    ) -> Injection:
        """The next ``times`` requests fail with ``error``.

        ``error`` is an :class:`~pytest_engagelab.errors.ErrorCode` (or its number,
        such as ``5001``), an ``httpx.Response`` (see the factories in
        :mod:`pytest_engagelab.errors`) or an exception instance such as
        ``httpx.ConnectTimeout("...")``.  ``endpoint`` (``"/v1/messages"``) limits
        it to requests to that path.
        """
        __tracebackhide__ = True
        return self.emulator.fail_next(
            _injectable("fail_next", error), times=times, endpoint=endpoint
        )

    def fail_for(self, to: str, error: InjectedError | int) -> Injection:
        """Every send to ``to`` fails with ``error`` (as for :meth:`fail_next`) until the
        test ends."""
        __tracebackhide__ = True
        return self.emulator.fail_for(to, _injectable("fail_for", error))

    def advance(self, seconds: float) -> float:
        """Move the emulator's clock forward; returns the new time."""
        return self.emulator.advance(seconds)

    def add_template(
        self,
        template_id: str,
        *,
        strategy: str = "sms",
        code_length: int = 6,
        ttl: int = 300,
        code_type: int = 1,
        content: str | None = None,
        brand_name: str = "EngageLab",
        from_id: str | None = None,
        description: str = "",
        verification: bool = True,
        pwa_url: str | None = None,
    ) -> Template:
        """Register a template: ``strategy`` is a channel or a chain like ``"whatsapp|sms"``,
        ``ttl`` the code's validity in seconds, ``pwa_url`` what ``{{pwa_url}}`` becomes.
        It is approved at once (see :meth:`review_template`)."""
        return self.emulator.add_template(
            template_id,
            strategy=strategy,
            code_length=code_length,
            ttl=ttl,
            code_type=code_type,
            content=content,
            brand_name=brand_name,
            from_id=from_id,
            description=description,
            verification=verification,
            pwa_url=pwa_url,
        )

    def review_template(
        self, template_id: str, status: ReviewStatus, *, remark: str = ""
    ) -> Template:
        """Hold a template in review (``"pending"``) or end its review (``"approved"``,
        ``"rejected"``) with ``remark`` as its ``audit_remark``.

        Sending with a pending or rejected template answers 3003 (unless
        ``send_unapproved=True``); ending a review queues a ``template_audit_result``
        callback.  With ``@pytest.mark.engagelab(template_review="manual")`` templates
        created through ``POST /v1/template-configs`` start pending.
        """
        return self.emulator.review_template(template_id, status, remark=remark)

    def reset(self) -> None:
        """Forget everything sent, templates, limits, injections and queued callbacks."""
        self.emulator.reset()
        from pytest_engagelab.doors import delivery

        delivery.dispatcher_for(self.emulator).clear()

    def unfired_report(self) -> str | None:
        """A failure message naming injections that never fired, or ``None``."""
        unfired = self.emulator.unfired_injections()
        if not unfired:
            return None
        lines = [f"{len(unfired)} injected failure(s) never fired:"]
        lines.extend(f"  {injection.describe()}" for injection in unfired)
        lines.append(
            "The code under test never made the request they were waiting for. Remove them, "
            "or turn this check off with @pytest.mark.engagelab(assert_all_fired=False)."
        )
        return "\n".join(lines)

    # -- callbacks --------------------------------------------------------------------

    def configure_callbacks(
        self,
        *,
        url: str | None = None,
        app: Any = None,
        username: str | None = None,
        secret: str | None = None,
        authorization: str | None = None,
        retries: int = 0,
        timeout: float = 3.0,
        batch_size: int = 1,
        business_id: str = DEFAULT_BUSINESS_ID,
        prices: Mapping[str, float] | None = None,
        timestamps: Literal["wall", "emulator"] = "wall",
    ) -> None:
        """Queue EngageLab's callbacks for every message from now on, and say where they go.

        ``url`` is a real HTTP endpoint; ``app`` an ASGI or WSGI app called
        in-process (``url`` is then the path, default ``/``).  With ``username``
        and ``secret`` each request is signed with ``X-CALLBACK-ID``;
        ``authorization`` is sent as the ``Authorization`` header.  Nothing is
        sent until :meth:`deliver_callbacks`; ``batch_size`` rows go in one POST
        (default 1), a failed POST is tried ``retries`` more times, ``timeout``
        is in seconds.  ``timestamps="emulator"`` signs with the emulator's clock
        instead of the wall clock.
        """
        from pytest_engagelab.doors import delivery

        delivery.configure(
            self.emulator,
            url=url,
            app=app,
            username=username,
            secret=secret,
            authorization=authorization,
            retries=retries,
            timeout=timeout,
            batch_size=batch_size,
            business_id=business_id,
            prices=prices,
            timestamps=timestamps,
        )

    @property
    def pending_callbacks(self) -> list[dict[str, Any]]:
        """The callback rows queued and not yet delivered, oldest first (a copy)."""
        from pytest_engagelab.doors import delivery

        return delivery.dispatcher_for(self.emulator).pending

    def deliver_callbacks(self, *, raise_on_error: bool = True) -> list[CallbackDelivery]:
        """POST every queued callback now; return each request with the handler's answer.

        A handler that answers non-2xx, times out or cannot be reached raises
        :class:`~pytest_engagelab.callbacks.CallbackDeliveryError` naming each
        failure (after the configured retries), unless ``raise_on_error=False``.
        In an async test with an ASGI app, use :meth:`adeliver_callbacks`.
        """
        __tracebackhide__ = True
        from pytest_engagelab.doors import delivery

        return delivery.dispatcher_for(self.emulator).deliver(raise_on_error=raise_on_error)

    async def adeliver_callbacks(self, *, raise_on_error: bool = True) -> list[CallbackDelivery]:
        """:meth:`deliver_callbacks` for async tests."""
        __tracebackhide__ = True
        from pytest_engagelab.doors import delivery

        dispatcher = delivery.dispatcher_for(self.emulator)
        return await dispatcher.adeliver(raise_on_error=raise_on_error)
