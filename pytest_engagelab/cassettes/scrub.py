"""Scrubbing: every form of a secret (and, on request, every recipient) replaced before
anything is written."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any, Final

from pytest_engagelab.emulator.auth import basic_authorization, basic_token
from pytest_engagelab.emulator.recipients import redact_recipients

#: What a recorded ``Authorization`` header made of the recording credentials becomes.
AUTHORIZATION_PLACEHOLDER: Final = "<ENGAGELAB_AUTHORIZATION>"
#: What any other ``Authorization`` header becomes (wrong credentials, another scheme).
OTHER_AUTHORIZATION_PLACEHOLDER: Final = "<REDACTED_AUTHORIZATION>"
_SECRET_PLACEHOLDERS: Final = (
    ("base64(key:secret)", "<ENGAGELAB_BASIC_TOKEN>"),
    ("key:secret", "<ENGAGELAB_KEY:SECRET>"),
    ("secret", "<ENGAGELAB_DEV_SECRET>"),
    ("key", "<ENGAGELAB_DEV_KEY>"),
)


class Scrubber:
    """Removes secrets (and optionally recipients) from requests and responses.

    ``dev_key``/``dev_secret`` are the credentials the test talks with; every
    form of them (the key, the secret, ``key:secret``, its base64 form, each also
    URL- and JSON-escaped) and each of ``extra_secrets`` is replaced by a
    placeholder wherever it occurs: header values, URLs, bodies.  The
    ``Authorization`` header is always replaced as a whole.
    """

    def __init__(
        self,
        dev_key: str,
        dev_secret: str,
        *,
        extra_secrets: Iterable[str] = (),
        redact_recipients: bool = False,
        credentials_are_secret: bool = True,
    ) -> None:
        self._authorization = basic_authorization(dev_key, dev_secret)
        extra_secrets = tuple(extra_secrets)
        named = {
            "key": dev_key,
            "secret": dev_secret,
            "key:secret": f"{dev_key}:{dev_secret}",
            "base64(key:secret)": basic_token(dev_key, dev_secret),
        }
        pairs: list[tuple[str, str]] = [
            (named[name], placeholder) for name, placeholder in _SECRET_PLACEHOLDERS
        ]
        pairs += [(s, "<ENGAGELAB_EXTRA_SECRET>") for s in extra_secrets if s]
        forms: dict[str, str] = {}
        for value, placeholder in pairs:
            for form in _escaped_forms(value):
                forms.setdefault(form, placeholder)
        # Longest first, so that "key:secret" goes before "key" eats part of it.
        self._forms = sorted(forms.items(), key=lambda item: len(item[0]), reverse=True)
        self.redacts_recipients = redact_recipients
        # What pytest may show shortened ('abc...xyz') or cut: every run of FRAGMENT
        # characters of a real secret (the emulator's placeholder credentials are none).
        real = [*named.values()] if credentials_are_secret else []
        self._fragments = _fragments([*real, *extra_secrets])

    def __repr__(self) -> str:
        return f"Scrubber(secrets={len(self._forms)}, redact_recipients={self.redacts_recipients})"

    def text(self, text: str) -> str:
        """``text`` with every secret (and recipient, if asked) replaced."""
        for secret, placeholder in self._forms:
            if secret in text:
                text = text.replace(secret, placeholder)
        return redact_recipients(text) if self.redacts_recipients else text

    def data(self, data: bytes | str | None) -> bytes | str | None:
        """A body, scrubbed; bytes that are not UTF-8 are scrubbed byte-wise."""
        if data is None:
            return None
        if isinstance(data, str):
            return self.text(data)
        try:
            return self.text(data.decode("utf-8")).encode("utf-8")
        except UnicodeDecodeError:
            for secret, placeholder in self._forms:
                data = data.replace(secret.encode("utf-8"), placeholder.encode("utf-8"))
            return data

    def report_text(self, text: str) -> str:
        """:meth:`text`, then every run of 8 or more characters of a secret masked too:
        for what pytest prints (``-l`` locals, ``assert a == b`` lines, captured output),
        where a long value may be shown shortened (``abc...xyz``) or cut."""
        return mask_fragments(self.text(text), self._fragments)

    def leaks(self, text: str) -> bool:
        """Whether ``text`` still holds a secret (the persister's last check)."""
        return any(secret in text for secret, _ in self._forms)

    def authorization(self, value: str) -> str:
        """The placeholder an ``Authorization`` header value is stored as."""
        if value.strip() == self._authorization:
            return AUTHORIZATION_PLACEHOLDER
        return OTHER_AUTHORIZATION_PLACEHOLDER

    def request(self, request: Any) -> Any:
        """vcrpy's ``before_record_request``: a scrubbed copy of a ``vcr.request.Request``
        (a new request built from scrubbed parts; the original is left alone)."""
        headers = {}
        for name, value in request.headers.items():
            if name.lower() == "authorization":
                headers[name] = self.authorization(str(value))
            else:
                headers[name] = self.text(str(value))
        return type(request)(
            request.method, self.text(request.uri), self.data(request.body), headers
        )

    def response(self, response: dict[str, Any]) -> dict[str, Any]:
        """vcrpy's ``before_record_response``: the recorded response dict, scrubbed."""
        headers: dict[str, list[str]] = {}
        for name, values in response.get("headers", {}).items():
            if name.lower() in ("authorization", "www-authenticate", "set-cookie"):
                headers[name] = [OTHER_AUTHORIZATION_PLACEHOLDER for _ in values]
            else:
                headers[name] = [self.text(str(v)) for v in values]
        response["headers"] = headers
        body = response.get("body", {})
        if "string" in body:
            body["string"] = self.data(body["string"])
        return response


_PERCENT_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")
_UNICODE_ESCAPE: Final = re.compile(r"\\u[0-9a-f]{4}")


def _escaped_forms(value: str) -> set[str]:
    """``value`` as it may appear in a request or response: as is, JSON-escaped (with and
    without ``\\uXXXX`` escapes, either case of hex digit, ``/`` as is or as ``\\/``), and
    URL-encoded (``quote`` and ``quote_plus``, ``/`` kept or encoded, percent escapes in
    upper or lower case)."""
    ascii_json = json.dumps(value)[1:-1]
    json_forms = {
        ascii_json,
        _UNICODE_ESCAPE.sub(lambda match: "\\u" + match.group(0)[2:].upper(), ascii_json),
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    json_forms |= {form.replace("/", "\\/") for form in json_forms}
    url_forms = {
        urllib.parse.quote(value),
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value),
        urllib.parse.quote_plus(value, safe="/"),
    }
    url_forms |= {_PERCENT_ESCAPE.sub(lambda match: match.group(0).lower(), f) for f in url_forms}
    # A Python repr inside a message ("invalid value 'a\\b'"), as is and JSON-escaped.
    python = repr(value)[1:-1]
    repr_forms = {python, json.dumps(python)[1:-1], json.dumps(python, ensure_ascii=False)[1:-1]}
    return {value} | json_forms | url_forms | repr_forms


# -- fragments: what a shortened or cut value still shows --------------------------------------

#: The shortest run of a secret's characters that is masked in reports and file names.
FRAGMENT: Final = 8
#: What such a run becomes.
FRAGMENT_PLACEHOLDER: Final = "<SECRET_PART>"


def _fragments(values: Iterable[str]) -> frozenset[str]:
    return frozenset(
        value[start : start + FRAGMENT]
        for value in values
        for start in range(len(value) - FRAGMENT + 1)
    )


def mask_fragments(
    text: str, fragments: frozenset[str], placeholder: str = FRAGMENT_PLACEHOLDER
) -> str:
    """``text`` with every run of characters made of overlapping ``fragments`` replaced by
    ``placeholder`` (one per run)."""
    if not fragments or len(text) < FRAGMENT:
        return text
    spans: list[tuple[int, int]] = []
    for fragment in fragments:
        start = text.find(fragment)
        while start != -1:
            spans.append((start, start + FRAGMENT))
            start = text.find(fragment, start + 1)
    if not spans:
        return text
    spans.sort()
    pieces: list[str] = []
    position = 0
    run_start, run_end = spans[0]
    for start, end in spans[1:]:
        if start <= run_end:
            run_end = max(run_end, end)
            continue
        pieces += [text[position:run_start], placeholder]
        position = run_end
        run_start, run_end = start, end
    pieces += [text[position:run_start], placeholder, text[run_end:]]
    return "".join(pieces)


def mask_in_name(name: str, secrets: Iterable[str]) -> str:
    """``name`` (a test's name, for a file name) with each secret, and each run of 8 or
    more of its characters, replaced by ``REDACTED``."""
    values = sorted((s for s in secrets if s), key=len, reverse=True)
    for value in values:
        name = name.replace(value, "REDACTED")
    return mask_fragments(name, _fragments(values), "REDACTED")
