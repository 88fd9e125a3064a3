"""What a test does with the emulator, whichever door it stands behind.

:class:`EmulatorControls` is the base of ``OTPMock`` (respx, in-process) and
``OTPServer`` (a loopback socket): the journal, the assertions, the last code,
failure injection, templates and the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypedDict, Unpack

from pytest_engagelab.emulator.core import Emulator
from pytest_engagelab.emulator.defaults import DEFAULT_BUSINESS_ID
from pytest_engagelab.emulator.journal import SentMessage
from pytest_engagelab.emulator.model import InjectedError, Injection
from pytest_engagelab.emulator.templates import ReviewStatus, Template

if TYPE_CHECKING:  # callback delivery is imported by the first test that uses it
    from pytest_engagelab.callbacks import CallbackDelivery

__all__ = ["EmulatorControls", "MessageCriteria", "review_from_json"]


class MessageCriteria(TypedDict, total=False):
    """The fields the assertions match on; a field left out matches anything."""

    to: str
    template_id: str
    language: str
    params: dict[str, str]
    endpoint: str


_CRITERIA: Final = frozenset(MessageCriteria.__annotations__)


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
        self.base_url = base_url.rstrip("/")

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

        Fields: ``to``, ``template_id``, ``language``, ``params``, ``endpoint``.  A
        field not given matches anything; ``params`` compares as a whole dict.
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
        self, error: InjectedError, *, times: int = 1, endpoint: str | None = None
    ) -> Injection:
        """The next ``times`` requests fail with ``error``.

        ``error`` is an :class:`~pytest_engagelab.errors.ErrorCode`, an
        ``httpx.Response`` (see the factories in :mod:`pytest_engagelab.errors`)
        or an exception instance such as ``httpx.ConnectTimeout("...")``.
        ``endpoint`` (``"/v1/messages"``) limits it to requests to that path.
        """
        return self.emulator.fail_next(error, times=times, endpoint=endpoint)

    def fail_for(self, to: str, error: InjectedError) -> Injection:
        """Every send to ``to`` fails with ``error`` until the test ends."""
        return self.emulator.fail_for(to, error)

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

        return delivery.dispatcher_for(self.emulator).deliver(
            raise_on_error=raise_on_error
        )

    async def adeliver_callbacks(self, *, raise_on_error: bool = True) -> list[CallbackDelivery]:
        """:meth:`deliver_callbacks` for async tests."""
        __tracebackhide__ = True
        from pytest_engagelab.doors import delivery

        dispatcher = delivery.dispatcher_for(self.emulator)
        return await dispatcher.adeliver(raise_on_error=raise_on_error)
