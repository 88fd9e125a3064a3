"""The emulator core: EngageLab's OTP API as plain request -> answer, no HTTP library.

The doors (respx in :mod:`pytest_engagelab.doors.mock`, the loopback server, the drift
check) turn their requests into :meth:`Emulator.handle` calls and its
:class:`EmulatorResponse` or :class:`Fault` back into their own kind of answer.

Each request is checked in this order; the first rule that fails answers:

1. route: an unknown path is HTTP 404 with code 4001, a known path with the
   wrong method HTTP 405 with code 3002 (EngageLab documents neither);
2. an injected ``fail_next`` failure;
3. authentication: no or wrong ``Authorization`` is 2001, an expired or
   disabled key 2002, an endpoint the key may not call 2004;
4. format: ``Content-Type`` not JSON, a body that is not JSON or not a JSON
   object, is 3001;
5. parameters: a missing or wrongly typed field, an unknown language, params
   that are not a map of strings, is 3002 naming the field;
6. template: an unregistered template in strict mode is 4001; a template
   pending review or rejected is 3003 (unless ``send_unapproved``);
7. recipient: ``to`` neither E.164 nor an e-mail address is 5011 (with
   ``phone_validation="strict"`` also a number invalid for its region); a +86
   number when ``mainland_china`` is off 5017; a phone number for an e-mail-only
   template, or an address for a template with no e-mail channel, is 3003;
8. an injected ``fail_for`` failure for that recipient, then the magic numbers;
9. the frequency limit (same template, same recipient, within the code's
   validity) is 3004.

Why this module is long: :class:`Emulator` is one state machine.  Its routes share
one lock, one journal, the templates, the issued codes and the injections; split
into mixins, each part would reach into state defined elsewhere.  The vocabulary
it answers in lives in :mod:`~pytest_engagelab.emulator.model`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import random
import re
import string
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from pytest_engagelab.emulator import recipients
from pytest_engagelab.emulator.auth import basic_authorization
from pytest_engagelab.emulator.clock import SEEDED_EPOCH, Clock
from pytest_engagelab.emulator.codes import ErrorCode
from pytest_engagelab.emulator.defaults import (
    DEFAULT_BASE_URL,
    DEFAULT_DEV_KEY,
    DEFAULT_DEV_SECRET,
    KeyStatus,
)
from pytest_engagelab.emulator.journal import (
    EXPIRES_AT,
    MESSAGE_ID,
    TO,
    Journal,
    SentMessage,
    message_atoms,
    message_from_atoms,
)
from pytest_engagelab.emulator.model import (
    ENDPOINTS,
    JSON_HEADERS,
    LANGUAGE_LIST,
    LANGUAGES,
    SNOWFLAKE_EPOCH_MS,
    TEMPLATE_ID_MAX,
    UNSEEDED,
    EmulatorEvent,
    EmulatorResponse,
    Fault,
    Incoming,
    InjectedError,
    Injection,
    Issued,
    Reject,
    ResponseLike,
    Send,
    check_injectable,
    dumps,
    error_body,
    parse_params,
    require_str,
)
from pytest_engagelab.emulator.request_log import (
    RequestLog,
    endpoint_name,
    raised_text,
    record_atoms,
)
from pytest_engagelab.emulator.templates import (
    APPROVED,
    CHANNELS,
    PENDING,
    REVIEW_STATUSES,
    ReviewStatus,
    Template,
    TemplateConfigError,
    TemplateRuleError,
    parse_strategy,
)
from pytest_engagelab.magic import DELIVERY_ERROR_NUMBERS, WHATSAPP_FALLBACK_NUMBER

#: How ``POST /v1/template-configs`` reviews: ``"auto"`` approves at once, ``"manual"``
#: keeps a template pending until the test calls ``review_template``.
TemplateReview = Literal["auto", "manual"]
#: ``"e164"``: the E.164 shape; ``"strict"``: also valid for its region (phonenumbers).
PhoneValidation = Literal["e164", "strict"]

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_DEV_KEY",
    "DEFAULT_DEV_SECRET",
    "ENDPOINTS",
    "LANGUAGES",
    "Emulator",
    "EmulatorEvent",
    "EmulatorResponse",
    "Fault",
    "InjectedError",
    "Injection",
    "PhoneValidation",
    "ResponseLike",
    "TemplateReview",
]

# -- the send path's constants (hot: built once, not per request) --
_POST_ONLY: Final = frozenset(
    {"/v1/messages", "/v1/codes", "/v1/custom-messages", "/v1/verifications"}
)
#: The characters of each code_type bitmask: 1 digits, 2 lower case, 4 upper case.
_ALPHABETS: Final = {
    code_type: (string.digits if code_type & 1 else "")
    + (string.ascii_lowercase if code_type & 2 else "")
    + (string.ascii_uppercase if code_type & 4 else "")
    for code_type in range(1, 8)
}
_PHONE_FULLMATCH: Final = recipients.PHONE.fullmatch
_new: Final = object.__new__
_DEFAULT_AUTHORIZATION: Final = basic_authorization(DEFAULT_DEV_KEY, DEFAULT_DEV_SECRET)
#: json.loads' scan without its two whitespace passes: the object, and where it ends.
#: (``raw_decode``'s own scan, without its frame: it raises StopIteration on ``{"to": }``,
#: where ``raw_decode`` raises its error; _json_object does that.)
_SCAN_ONCE: Final[Callable[[str, int], tuple[Any, int]]] = vars(json.JSONDecoder())["scan_once"]
#: Where a UTF-8 body can hold half of a UTF-16 pair: a ``\uD800``-``\uDFFF`` escape,
#: or the UTF-8 bytes of one (ED A0-BF); Hangul (ED 80-9F) and other escapes are not.
_MAYBE_SURROGATE: Final = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
#: Channel names JSON writes as they are (no character to escape).
_PLAIN_CHANNELS: Final = frozenset(
    channel for channel in CHANNELS if channel.isascii() and channel.isalnum()
)



def _expires_at(entry: tuple[Any, ...]) -> float:
    expires_at: float = entry[EXPIRES_AT]
    return expires_at


def lone_surrogate(payload: Any) -> str | None:
    """The first lone half of a UTF-16 pair in a parsed JSON ``payload``, escaped
    (``"\\ud800"``), or ``None``.  JSON may spell one alone; Python reads it as a string
    no UTF-8 encoder takes, and every later step that encodes text (a template's PWA link,
    redaction, an answer, a callback) would fail on it: the doors refuse it up front."""
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        return error.object[error.start : error.end].encode("unicode_escape").decode("ascii")
    return None


def lone_surrogate_message(bad: str) -> str:
    return (
        f"the request body holds a lone UTF-16 surrogate ({bad}), which is no character: "
        "send text as UTF-8, or a whole \\ud83d\\ude00-style pair"
    )


class Emulator:
    """EngageLab's OTP API in memory: templates, codes, a clock, limits and a journal.

    Thread-safe: one lock guards the state, so sends from many threads or
    asyncio tasks lose nothing and never repeat a message id.
    """

    def __init__(
        self,
        *,
        dev_key: str = DEFAULT_DEV_KEY,
        dev_secret: str = DEFAULT_DEV_SECRET,
        strict_templates: bool = False,
        seed: int | None = None,
        clock: Clock | None = None,
        key_status: KeyStatus = "active",
        forbidden_endpoints: tuple[str, ...] = (),
        rate_limit: bool = True,
        journal_limit: int | None = 10_000,
        max_verify_attempts: int | None = None,
        template_review: TemplateReview = "auto",
        send_unapproved: bool = False,
        phone_validation: PhoneValidation = "e164",
        mainland_china: bool = True,
    ) -> None:
        if not dev_key or not dev_secret:
            raise ValueError("dev_key and dev_secret must be non-empty strings")
        if key_status not in ("active", "expired", "disabled"):
            raise ValueError(
                f"key_status must be 'active', 'expired' or 'disabled', not {key_status!r}"
            )
        if max_verify_attempts is not None and max_verify_attempts < 1:
            raise ValueError("max_verify_attempts must be at least 1 or None")
        if template_review not in ("auto", "manual"):
            raise ValueError(
                f"template_review must be 'auto' or 'manual', not {template_review!r}"
            )
        if phone_validation not in ("e164", "strict"):
            raise ValueError(
                f"phone_validation must be 'e164' or 'strict', not {phone_validation!r}"
            )
        if phone_validation == "strict":
            recipients.require_phonenumbers()
        self._lock = threading.RLock()
        self.dev_key = dev_key
        if dev_key == DEFAULT_DEV_KEY and dev_secret == DEFAULT_DEV_SECRET:
            self._auth = _DEFAULT_AUTHORIZATION  # most emulators: built once, not per test
        else:
            self._auth = basic_authorization(dev_key, dev_secret)
        self._auth_bytes = self._auth.encode()
        self._secret = dev_secret
        self.strict_templates = strict_templates
        self.seed = seed
        if clock is None:
            clock = Clock(SEEDED_EPOCH if seed is not None else None)
        self.clock = clock
        self.key_status: KeyStatus = key_status
        self.forbidden_endpoints = frozenset(forbidden_endpoints)
        self.rate_limit = rate_limit
        self.max_verify_attempts = max_verify_attempts
        self.template_review: TemplateReview = template_review
        self.send_unapproved = send_unapproved
        self.phone_validation: PhoneValidation = phone_validation
        self.mainland_china = mainland_china
        self.journal = Journal(journal_limit)
        #: Every request that reached the emulator, answered or refused, oldest first.
        self.requests = RequestLog(journal_limit)
        self._issued_limit = journal_limit
        self._listeners: list[Callable[[EmulatorEvent], None]] = []
        self._reset_state()

    # -- state -----------------------------------------------------------------------

    def _reset_state(self) -> None:
        # Seeding a generator from the OS costs more than the rest of an emulator: unseeded
        # emulators draw from one generator, seeded ones each get their own sequence.
        self._rng = random.Random(self.seed) if self.seed is not None else UNSEEDED
        self._worker = self._rng.getrandbits(10)
        self._last_id = 0
        self._templates: dict[str, Template] = {}
        self._unregistered: Template | None = None  # the last template made up in _template
        # A message id's entry: its journal entry as atoms and whether it is verifiable
        # (a plain tuple, untracked by the collector), made an Issued when first needed.
        self._issued: OrderedDict[str, Issued | tuple[Any, bool]] = OrderedDict()
        self._limits: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._last_codes: dict[str, str] = {}
        self._injections: list[Injection] = []
        self.journal.clear()
        self.requests.clear()

    def reset(self) -> None:
        """Forget templates, messages, codes, limits and injections (listeners stay)."""
        with self._lock:
            self._reset_state()

    @property
    def dev_secret(self) -> str:
        """The secret the emulator accepts (not part of any repr)."""
        return self._secret

    def __repr__(self) -> str:
        return (
            f"Emulator(dev_key={self.dev_key!r}, strict_templates={self.strict_templates!r}, "
            f"seed={self.seed!r}, sent={len(self.journal)})"
        )

    def subscribe(self, listener: Callable[[EmulatorEvent], None]) -> None:
        """Call ``listener`` with every :class:`EmulatorEvent` (under the emulator's lock)."""
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, event: EmulatorEvent) -> None:
        for listener in self._listeners:
            listener(event)

    # -- templates -------------------------------------------------------------------

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
        """Register a template (replacing one of the same id) and return it.

        Unlike ``POST /v1/template-configs`` this fills in friendly defaults (an SMS
        channel with the default text, 6 digits, 300 s) and the template is approved at
        once, whatever ``template_review`` says.  ``pwa_url`` is what ``{{pwa_url}}``
        renders to (left literal when ``None``).
        """
        template = Template(
            template_id=template_id,
            strategy=parse_strategy(strategy),
            code_length=code_length,
            ttl=ttl,
            code_type=code_type,
            brand_name=brand_name,
            from_id=from_id,
            description=description,
            verification=verification,
            pwa_url=pwa_url,
            created_time=int(self.clock.now()),
        )
        if content is not None:
            template.content = content
        with self._lock:
            self._templates[template_id] = template
        return template

    def review_template(
        self, template_id: str, status: ReviewStatus, *, remark: str = ""
    ) -> Template:
        """Set a template's review status: ``"pending"`` holds it, ``"approved"`` or
        ``"rejected"`` ends its review with ``remark`` as ``audit_remark`` and queues a
        ``template_audit_result`` callback.  Returns the template."""
        if status not in REVIEW_STATUSES:
            raise ValueError(
                f"review_template() status must be 'pending', 'approved' or 'rejected', "
                f"not {status!r}"
            )
        if not isinstance(remark, str):
            raise TypeError(f"review_template() remark must be a string, not {remark!r}")
        with self._lock:
            template = self._templates.get(template_id)
            if template is None:
                known = ", ".join(repr(t) for t in sorted(self._templates)) or "none"
                raise KeyError(
                    f"review_template({template_id!r}): no such template; registered: {known}"
                )
            template.status = REVIEW_STATUSES[status]
            template.audit_remark = remark
            if template.status != PENDING:
                self._audit_event(template)
            return template

    def _audit_event(self, template: Template) -> None:
        detail = {
            "template_id": template.template_id,
            "status": template.status,
            "audit_remark": template.audit_remark,
        }
        self._emit(
            EmulatorEvent(
                "template_audit", self.clock.now(), "", template.template_id, detail=detail
            )
        )

    @property
    def templates(self) -> dict[str, Template]:
        """The registered templates, by id (a copy)."""
        with self._lock:
            return dict(self._templates)

    def _template(self, template_id: str) -> Template:
        template = self._templates.get(template_id)
        if template is not None:
            return template
        if self.strict_templates:
            raise Reject(ErrorCode.NOT_FOUND, f"template {template_id!r} does not exist")
        # An unregistered template is the defaults under its id, never changed or shown:
        # the last one made is used again for the next send with the same id.
        template = self._unregistered
        if template is None or template.template_id != template_id:
            template = self._unregistered = Template(template_id=template_id)
        return template

    def _check_reviewed(self, template: Template) -> None:
        # EngageLab documents the review statuses but not what a send with an unreviewed
        # template answers; ours is 3003 (business validation), send_unapproved=True sends.
        if template.status == APPROVED or self.send_unapproved:
            return
        if template.status == PENDING:
            raise Reject(
                ErrorCode.VALIDATION_FAILED,
                f"template {template.template_id!r} is pending review (status 1); it can send "
                "once approved",
            )
        remark = f": {template.audit_remark}" if template.audit_remark else ""
        raise Reject(
            ErrorCode.VALIDATION_FAILED,
            f"template {template.template_id!r} was rejected in review (status 3){remark}",
        )

    # -- injections ------------------------------------------------------------------

    def fail_next(
        self, error: InjectedError, *, times: int = 1, endpoint: str | None = None
    ) -> Injection:
        """The next ``times`` requests (to ``endpoint`` only, if given) fail with ``error``."""
        check_injectable(error)
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError(f"times must be an integer of at least 1, not {times!r}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(
                f"fail_next(endpoint={endpoint!r}) would never fire: use one of "
                f"{', '.join(ENDPOINTS)}"
            )
        injection = Injection(error, times, endpoint=endpoint)
        with self._lock:
            self._injections.append(injection)
        return injection

    def fail_for(self, to: str, error: InjectedError) -> Injection:
        """Every send to ``to`` fails with ``error``, for the rest of the test."""
        check_injectable(error)
        if not isinstance(to, str) or not to:
            raise ValueError(f"fail_for() needs the recipient as a non-empty string, not {to!r}")
        injection = Injection(error, None, to=to)
        with self._lock:
            self._injections.append(injection)
        return injection

    @property
    def injections(self) -> list[Injection]:
        with self._lock:
            return list(self._injections)

    def unfired_injections(self) -> list[Injection]:
        """Injections that never fired."""
        return [i for i in self.injections if i.fired == 0]

    def _fire(self, injection: Injection) -> EmulatorResponse | Fault:
        injection.fired += 1
        error = injection.error
        if isinstance(error, ErrorCode):
            return error_body(error, error.default_message)
        if isinstance(error, ResponseLike):
            content = error.read()
            headers = tuple((k.lower(), v) for k, v in error.headers.items())
            return EmulatorResponse(error.status_code, content, headers)
        return Fault(copy.copy(error))

    def _take_next(self, endpoint: str) -> Injection | None:
        for injection in self._injections:
            if (
                injection.to is None
                and not injection.exhausted
                and injection.endpoint in (None, endpoint)
            ):
                return injection
        return None

    # -- clock -----------------------------------------------------------------------

    def advance(self, seconds: float) -> float:
        """Move the clock; report codes that expired unverified to the listeners."""
        with self._lock:
            now = self.clock.advance(seconds)
            if self._listeners:
                for message_id, kept in list(self._issued.items()):
                    if type(kept) is tuple:  # as sent: not verified, not reported
                        entry, verifiable = kept
                        if not verifiable or _expires_at(entry) > now:
                            continue
                    issued = self._issued_entry(message_id)
                    assert issued is not None
                    message = issued.message
                    if (
                        issued.verifiable
                        and not issued.verified
                        and not issued.expired_reported
                        and message.expires_at <= now
                    ):
                        issued.expired_reported = True
                        self._emit(
                            EmulatorEvent("expired", now, message.to, message.template_id, message)
                        )
            return now

    # -- journal helpers ---------------------------------------------------------------

    def last_code(self, to: str) -> str | None:
        """The last code delivered to ``to``, or ``None``."""
        with self._lock:
            return self._last_codes.get(to)

    # -- the door ----------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        request: Any = None,
        request_recipe: tuple[Any, ...] | None = None,
    ) -> EmulatorResponse | Fault:
        """Answer one request.  ``headers`` must look keys up case-insensitively
        (an ``httpx.Headers``) or have lower-case keys.  ``path`` is the request's path,
        percent-decoded and without its query (a door splits the query off first, so a
        decoded ``%3F`` in a template id stays part of the id).
        ``request`` is the door's own request object (an ``httpx.Request`` under
        ``otp_mock``), kept on the journal entry for the test and never read here.
        ``request_recipe`` (instead of ``request``) is ``(name, *atoms)`` with a builder
        registered under ``name`` by
        :func:`~pytest_engagelab.emulator.journal.register_request_builder`: the journal
        and the request log then keep only atoms, and the door's request, and the
        headers a :class:`RequestRecord` shows, are built from it when a test reads
        them."""
        if not path or path[-1] == "/":
            path = path.rstrip("/") or "/"
        method = method.upper()
        with self._lock:
            outcome: EmulatorResponse | Fault
            endpoint: str | None = None
            try:
                endpoint, handler = self._route(method, path)
                injection = self._take_next(endpoint) if self._injections else None
                if injection is not None:
                    outcome = self._fire(injection)
                else:
                    self._authenticate(headers, endpoint)
                    outcome = handler(
                        Incoming(method, path, headers, body, request, request_recipe)
                    )
            except Reject as reject:
                outcome = error_body(reject.code, reject.message, reject.status)
                if reject.allow:
                    allow = (*outcome.headers, ("allow", reject.allow))
                    outcome = EmulatorResponse(outcome.status, outcome.body, allow)
            except Exception as bug:  # never a traceback on the wire
                outcome = error_body(
                    ErrorCode.INTERNAL_ERROR,
                    f"pytest-engagelab emulator error ({type(bug).__name__}: {bug}); "
                    "please report it",
                )
            at = self.clock.now()
            if endpoint is None:  # not routed (404, 405): named from the path, if known
                endpoint = endpoint_name(path)
            if type(body) is not bytes:
                body = bytes(body)
            if isinstance(outcome, Fault):
                entry = record_atoms(
                    method,
                    path,
                    endpoint,
                    None,
                    at,
                    raised_text(outcome.exception),
                    body,
                    b"",
                    None if request_recipe is not None else headers,
                    request_recipe,
                )
            elif request_recipe is not None:  # record_atoms(...), inline: every request
                status, answer = outcome.status, outcome.body
                recipe = request_recipe
                entry = (method, path, endpoint, status, at, None, body, answer, None, *recipe)
            else:
                entry = record_atoms(
                    method,
                    path,
                    endpoint,
                    outcome.status,
                    at,
                    None,
                    body,
                    outcome.body,
                    headers,
                    None,
                )
            self.requests.append_compact(entry)
            return outcome

    # -- routing -----------------------------------------------------------------------

    _Handler = Callable[[Incoming], EmulatorResponse | Fault]

    def _route(self, method: str, path: str) -> tuple[str, Emulator._Handler]:
        if path in _POST_ONLY:
            if method != "POST":
                raise Reject(
                    ErrorCode.INVALID_PARAMS, f"{method} {path}: use POST", 405, allow="POST"
                )
            if path == "/v1/verifications":
                return path, self._post_verification
            return path, self._post_send
        if path == "/v1/template-configs":
            if method == "POST":
                return path, self._post_template_config
            if method == "GET":
                return path, self._list_template_configs
            raise Reject(
                ErrorCode.INVALID_PARAMS,
                f"{method} {path}: use GET or POST",
                405,
                allow="GET, POST",
            )
        if path.startswith("/v1/template-configs/") and path.count("/") == 3:
            if method in ("GET", "DELETE"):
                return "/v1/template-configs/{id}", self._template_config_item
            raise Reject(
                ErrorCode.INVALID_PARAMS,
                f"{method} {path}: use GET or DELETE",
                405,
                allow="GET, DELETE",
            )
        raise Reject(ErrorCode.NOT_FOUND, f"no such endpoint: {method} {path}", 404)

    def _authenticate(self, headers: Mapping[str, str], endpoint: str) -> None:
        given = headers.get("authorization")
        if not given:
            raise Reject(ErrorCode.AUTH_FAILED, "authentication failed: no Authorization header")
        if not given.startswith("Basic "):
            raise Reject(
                ErrorCode.AUTH_FAILED, "authentication failed: use Basic base64(dev_key:dev_secret)"
            )
        try:
            right = hmac.compare_digest(given.strip(), self._auth)
        except TypeError:  # not ASCII, so not base64 either: answered below
            right = False
        if not right:  # the right value is valid base64; a wrong one may not be
            try:
                base64.b64decode(given[6:].strip(), validate=True)
            except (binascii.Error, ValueError):
                raise Reject(
                    ErrorCode.AUTH_FAILED,
                    "authentication failed: Authorization is not valid base64",
                ) from None
            raise Reject(ErrorCode.AUTH_FAILED, "authentication failed: wrong dev_key or secret")
        if self.key_status != "active":
            raise Reject(
                ErrorCode.AUTH_EXPIRED, f"authentication failed: the key is {self.key_status}"
            )
        if endpoint in self.forbidden_endpoints:
            raise Reject(ErrorCode.PERMISSION_DENIED, f"no permission to call {endpoint}")

    @staticmethod
    def _json_object(incoming: Incoming) -> dict[str, Any]:
        body = incoming.body
        content_type = incoming.headers.get("content-type", "")
        if "json" not in content_type.lower():
            raise Reject(
                ErrorCode.INVALID_FORMAT,
                f"Content-Type must be application/json, not {content_type or 'missing'!r}",
            )
        try:
            if body[:1] == b"{" and body[1:2] != b"\0":  # what json.loads(bytes) would detect
                text = body.decode("utf-8", "surrogatepass")
                # json.loads(text) is this scan plus two whitespace regex passes; a body
                # the scan does not end exactly (whitespace or anything after the object)
                # goes through json.loads, which accepts or refuses it as ever.
                try:
                    payload, end = _SCAN_ONCE(text, 0)
                except StopIteration:  # what raw_decode turns into its error, at 0
                    raise ValueError("Expecting value") from None
                if end != len(text):
                    payload = json.loads(text)
                # Two substring scans first: the regex only for a body that may hold one.
                suspect = (b"\\u" in body or b"\xed" in body) and (
                    _MAYBE_SURROGATE.search(body) is not None
                )
            else:  # leading whitespace, or UTF-16 or UTF-32, which json.loads detects
                payload = json.loads(body)
                suspect = True
        except (ValueError, UnicodeDecodeError):
            raise Reject(ErrorCode.INVALID_FORMAT, "the request body is not valid JSON") from None
        except RecursionError:
            raise Reject(ErrorCode.INVALID_FORMAT, "the request body nests too deeply") from None
        if not isinstance(payload, dict):
            raise Reject(ErrorCode.INVALID_FORMAT, "the request body must be a JSON object")
        if suspect:
            bad = lone_surrogate(payload)
            if bad is not None:
                raise Reject(ErrorCode.INVALID_FORMAT, lone_surrogate_message(bad))
        return payload

    # -- sending ---------------------------------------------------------------------

    def _parse_send(self, endpoint: str, payload: dict[str, Any]) -> Send:
        raw_to = payload.get("to")
        recipients: tuple[str, ...]
        if type(raw_to) is str and raw_to.strip():  # most sends: what require_str accepts
            recipients = (raw_to,)
        elif endpoint == "/v1/custom-messages" and isinstance(raw_to, list):
            if not raw_to or not all(isinstance(t, str) and t.strip() for t in raw_to):
                raise Reject(
                    ErrorCode.INVALID_PARAMS, "to must be a string or a non-empty list of strings"
                )
            recipients = tuple(raw_to)
        else:
            recipients = (require_str(payload, "to"),)
        template = payload.get("template")
        if template is None:
            raise Reject(ErrorCode.INVALID_PARAMS, "template is required")
        if not isinstance(template, dict):
            raise Reject(ErrorCode.INVALID_PARAMS, "template must be an object")
        template_id = template.get("id")
        if type(template_id) is not str or not template_id.strip():
            template_id = require_str(template, "id", prefix="template.")
        if len(template_id) > TEMPLATE_ID_MAX:
            raise Reject(
                ErrorCode.INVALID_PARAMS,
                f"template.id is longer than {TEMPLATE_ID_MAX} characters",
            )
        language = "default"
        if endpoint != "/v1/custom-messages" and template.get("language") is not None:
            language = template["language"]
            if not isinstance(language, str) or language not in LANGUAGES:
                raise Reject(
                    ErrorCode.INVALID_PARAMS,
                    f"template.language {language!r} is not supported; use one of: {LANGUAGE_LIST}",
                )
        params = parse_params(template) if "params" in template else {}
        code: str | None = None
        if endpoint == "/v1/codes":
            code = require_str(payload, "code")
        return Send(
            endpoint,
            recipients,
            template_id,
            language,
            params,
            code,
            endpoint == "/v1/messages",
            endpoint != "/v1/custom-messages",
        )

    def _check_recipient(self, to: str, template: Template) -> None:
        if (
            _PHONE_FULLMATCH(to) is not None
            and self.phone_validation == "e164"
            and (self.mainland_china or not to.startswith("+86"))
            and "email" not in template.strategy
        ):
            return  # what the checks below find for a plain number and a template without e-mail
        is_phone = recipients.is_phone(to)
        is_email = not is_phone and recipients.is_email(to)
        if not is_phone and not is_email:
            raise Reject(
                ErrorCode.INVALID_PHONE_NUMBER,
                f"invalid phone number format: {to!r} is neither E.164 (+6598765432) "
                "nor an e-mail address",
            )
        if is_phone and self.phone_validation == "strict" and not self._magic(to):
            problem = recipients.strict_phone_problem(to)
            if problem is not None:
                raise Reject(
                    ErrorCode.INVALID_PHONE_NUMBER, f"invalid phone number format: {problem}"
                )
        if is_phone and not self.mainland_china and recipients.is_mainland_china(to):
            raise Reject(
                ErrorCode.CHINA_MAINLAND_FORBIDDEN,
                f"no permission to send to mainland China: {to!r} is a +86 number and this "
                "key may not send there (mainland_china=False)",
            )
        channels = template.channels
        if is_phone and channels == {"email"}:
            raise Reject(
                ErrorCode.VALIDATION_FAILED,
                f"template {template.template_id!r} sends only e-mail; {to!r} is a phone number",
            )
        if is_email and "email" not in template.channels:
            raise Reject(
                ErrorCode.VALIDATION_FAILED,
                f"template {template.template_id!r} has no email channel "
                f"({template.strategy_text}); {to!r} is an e-mail address",
            )

    def _magic(self, to: str) -> bool:
        return to in DELIVERY_ERROR_NUMBERS or to == WHATSAPP_FALLBACK_NUMBER or any(
            injection.to == to for injection in self._injections
        )

    def _delivery_failure(
        self, to: str
    ) -> tuple[EmulatorResponse | Fault, ErrorCode | None] | None:
        for injection in self._injections:
            if injection.to == to:
                error = injection.error
                return self._fire(injection), error if isinstance(error, ErrorCode) else None
        code = DELIVERY_ERROR_NUMBERS.get(to)
        if code is not None:
            return error_body(code, code.default_message), code
        return None

    def _post_send(self, incoming: Incoming) -> EmulatorResponse | Fault:
        endpoint, request, recipe = incoming.path, incoming.request, incoming.recipe
        send = self._parse_send(endpoint, self._json_object(incoming))
        template = self._template(send.template_id)
        custom = endpoint == "/v1/custom-messages"
        if custom and template.verification and not send.params.get("code", "").strip():
            problem = "must not be empty" if "code" in send.params else "is required"
            raise Reject(
                ErrorCode.INVALID_PARAMS,
                f"template.params.code {problem}: {send.template_id!r} is a verification-code "
                "template",
            )
        if template.status != APPROVED:
            self._check_reviewed(template)
        now = self.clock.now()
        for to in send.recipients:
            self._check_recipient(to, template)
        for to in send.recipients:
            failure = (
                self._delivery_failure(to)
                if self._injections or to in DELIVERY_ERROR_NUMBERS
                else None
            )
            if failure is not None:
                answer, error_code = failure
                self._emit(
                    EmulatorEvent(
                        "send_failed",
                        now,
                        to,
                        send.template_id,
                        error=error_code,
                        error_message=error_code.default_message if error_code else "",
                    )
                )
                return answer
        if self.rate_limit and send.rate_limited:
            for to in send.recipients:
                until = self._limits.get((send.template_id, to))
                if until is not None and now < until:
                    raise Reject(
                        ErrorCode.FREQUENCY_LIMITED,
                        f"frequency limit: template {send.template_id!r} was sent to {to!r} "
                        f"{template.ttl - (until - now):.0f}s ago; wait until the code expires "
                        f"({until - now:.0f}s)",
                    )
        message_id = self._next_id(now)
        first = template.strategy[0]
        limited = self.rate_limit and send.rate_limited
        limit = self._issued_limit
        params = tuple(item for pair in send.params.items() for item in pair)
        listeners = self._listeners
        for to in send.recipients:
            # /v1/messages makes the code itself: a params.code there is only a variable;
            # /v1/custom-messages delivers the caller's code, or none (a notification).
            code = send.params.get("code", "") if custom else send.code or self._make_code(template)
            failed = ""
            delivered = first
            falls_back = first == "whatsapp" and len(template.strategy) > 1
            if to == WHATSAPP_FALLBACK_NUMBER and falls_back:
                failed, delivered = "whatsapp", template.strategy[1]
            # The message as atoms (see message_from_atoms): the collector tracks none
            # of what a long test's journal keeps; built into a SentMessage when read.
            entry = message_atoms(
                to,
                send.template_id,
                send.language,
                code,
                message_id,
                first,
                endpoint,
                request,
                template.render(code, send.params, send.language),
                delivered,
                failed,
                now,
                now + template.ttl,
                params,
                recipe,
            )
            message: SentMessage | None = None
            if listeners:  # they get the message now: keep that one
                message = message_from_atoms(entry)
                self.journal.append(message)
            else:
                self.journal.append_compact(entry)
            self._remember(entry, message, code, send.verifiable)
            if limited:
                limits = self._limits
                limits[(send.template_id, to)] = now + template.ttl
                if limit is not None and len(limits) > limit:
                    self._trim(limits)
            if message is not None:
                self._emit(EmulatorEvent("sent", now, to, send.template_id, message))
        if first in _PLAIN_CHANNELS:  # digits and a plain name: what dumps() writes
            body = f'{{"message_id":"{message_id}","send_channel":"{first}"}}'.encode()
            # EmulatorResponse(200, body), without the frozen __init__'s setattr per field
            answer = _new(EmulatorResponse)
            answer.__dict__.update(status=200, body=body, headers=JSON_HEADERS)
            return answer
        return EmulatorResponse(200, dumps({"message_id": message_id, "send_channel": first}))

    def _remember(
        self, entry: tuple[Any, ...], message: SentMessage | None, code: str, verifiable: bool
    ) -> None:
        issued = self._issued
        message_id, to = entry[MESSAGE_ID], entry[TO]
        issued[message_id] = (entry, verifiable) if message is None else Issued(message, verifiable)
        if self._issued_limit is not None and len(issued) > self._issued_limit:
            self._trim(issued)
        if not code:  # a notification without a code: nothing to type in
            return
        last_codes = self._last_codes
        last_codes.pop(to, None)  # re-insert: the oldest entry is trimmed first
        last_codes[to] = code
        if self._issued_limit is not None and len(self._last_codes) > self._issued_limit:
            self._last_codes.pop(next(iter(self._last_codes)))

    def _issued_entry(self, message_id: str) -> Issued | None:
        """The :class:`Issued` of ``message_id`` (made from its atoms on first need)."""
        kept = self._issued.get(message_id)
        if isinstance(kept, tuple):
            entry, verifiable = kept
            issued = self._issued[message_id] = Issued(message_from_atoms(entry), verifiable)
            return issued
        return kept

    def _trim(self, store: OrderedDict[Any, Any]) -> None:
        if self._issued_limit is not None:
            while len(store) > self._issued_limit:
                store.popitem(last=False)

    def _next_id(self, now: float | None = None) -> str:
        """A new snowflake message id, from the clock (or ``now``, the time of the send
        that asks, read from the clock already)."""
        millis = int((self.clock.now() if now is None else now) * 1000) - SNOWFLAKE_EPOCH_MS
        candidate = (max(millis, 0) << 22) | (self._worker << 12)
        self._last_id = max(candidate, self._last_id + 1)
        return str(self._last_id)

    def _make_code(self, template: Template) -> str:
        code_type = template.code_type
        if type(code_type) is not int or code_type not in _ALPHABETS:
            return self._make_code_by_choice(template)  # not reached: templates check it
        alphabet = _ALPHABETS[code_type]
        # Exactly the draws of ``self._rng.choice(alphabet)`` per character (its
        # ``_randbelow``: getrandbits of the length's bit length until one is below it),
        # so a seeded emulator makes the same codes, at a third of the calls.
        size = len(alphabet)
        bits = size.bit_length()
        getrandbits = self._rng.getrandbits
        code = ""
        for _ in range(template.code_length):
            drawn = getrandbits(bits)
            while drawn >= size:
                drawn = getrandbits(bits)
            code += alphabet[drawn]
        return code

    def _make_code_by_choice(self, template: Template) -> str:
        alphabet = ""
        if template.code_type & 1:
            alphabet += string.digits
        if template.code_type & 2:
            alphabet += string.ascii_lowercase
        if template.code_type & 4:
            alphabet += string.ascii_uppercase
        return "".join(self._rng.choice(alphabet) for _ in range(template.code_length))

    # -- verification ----------------------------------------------------------------

    def _post_verification(self, incoming: Incoming) -> EmulatorResponse:
        payload = self._json_object(incoming)
        message_id = require_str(payload, "message_id")
        verify_code = require_str(payload, "verify_code")
        issued = self._issued_entry(message_id)
        if issued is None:
            raise Reject(ErrorCode.NOT_FOUND, f"message_id {message_id!r} does not exist")
        message = issued.message
        if not issued.verifiable:
            raise Reject(
                ErrorCode.VALIDATION_FAILED,
                f"message {message_id!r} was sent through {message.endpoint}, whose codes the "
                "caller verifies itself",
            )
        if issued.verified:
            raise Reject(
                ErrorCode.VALIDATION_FAILED, f"message {message_id!r} was already verified"
            )
        now = self.clock.now()
        if now >= message.expires_at:
            raise Reject(
                ErrorCode.VALIDATION_FAILED, f"the code of message {message_id!r} has expired"
            )
        if self.max_verify_attempts is not None and issued.attempts >= self.max_verify_attempts:
            raise Reject(
                ErrorCode.VALIDATION_FAILED,
                f"too many wrong codes for message {message_id!r} "
                f"({self.max_verify_attempts} allowed)",
            )
        verified = hmac.compare_digest(
            verify_code.encode("utf-8", "surrogatepass"), message.code.encode()
        )
        if verified:
            issued.verified = True
        else:
            issued.attempts += 1
        kind: Literal["verified", "verify_failed"] = "verified" if verified else "verify_failed"
        self._emit(EmulatorEvent(kind, now, message.to, message.template_id, message))
        answer = {"message_id": message_id, "verify_code": verify_code, "verified": verified}
        return EmulatorResponse(200, dumps(answer))

    # -- template configs --------------------------------------------------------------

    def _post_template_config(self, incoming: Incoming) -> EmulatorResponse:
        payload = self._json_object(incoming)
        try:
            # Imported by the first template created over the API, not by every test's
            # emulator: most never create one (the OpenAPI rules are long to load).
            from pytest_engagelab.emulator.template_configs import template_from_config

            template = template_from_config(payload, is_address=recipients.is_email)
        except TemplateRuleError as error:
            raise Reject(ErrorCode.VALIDATION_FAILED, str(error)) from None
        except TemplateConfigError as error:
            raise Reject(ErrorCode.INVALID_PARAMS, str(error)) from None
        if template.template_id in self._templates:
            raise Reject(
                ErrorCode.VALIDATION_FAILED, f"template {template.template_id!r} already exists"
            )
        template.created_time = int(self.clock.now())
        template.status = APPROVED if self.template_review == "auto" else PENDING
        self._templates[template.template_id] = template
        if template.status == APPROVED:  # the review ended at once
            self._audit_event(template)
        return EmulatorResponse(200, dumps({"code": 0, "message": "success"}))

    def _list_template_configs(self, incoming: Incoming) -> EmulatorResponse:
        return EmulatorResponse(200, dumps([t.document() for t in self._templates.values()]))

    def _template_config_item(self, incoming: Incoming) -> EmulatorResponse:
        template_id = incoming.path.rsplit("/", 1)[1]
        template = self._templates.get(template_id)
        if template is None:
            raise Reject(ErrorCode.NOT_FOUND, "config not exist")
        if incoming.method == "DELETE":
            del self._templates[template_id]
            return EmulatorResponse(200, dumps({"code": 0, "message": "success"}))
        return EmulatorResponse(200, dumps(template.document()))
