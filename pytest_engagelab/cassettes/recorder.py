"""The vcrpy side of cassettes: one :class:`ActiveCassette` per marked test.

Imported only when a marked test runs, so loading the plugin never imports vcrpy.
"""

from __future__ import annotations

import contextlib
import functools
import json
import shlex
from pathlib import Path
from typing import Any, Final

import vcr  # type: ignore[import-untyped]
from vcr.cassette import Cassette, CassetteContextDecorator  # type: ignore[import-untyped]

from pytest_engagelab.cassettes.credentials import Credentials
from pytest_engagelab.cassettes.errors import CassetteMiss
from pytest_engagelab.cassettes.files import AtomicPersister
from pytest_engagelab.cassettes.matching import json_body
from pytest_engagelab.cassettes.scrub import Scrubber
from pytest_engagelab.cassettes.settings import CassetteSettings

__all__ = ["ActiveCassette"]

#: vcrpy's record mode for each of ours (``rewrite`` = ``all`` on a cassette that starts empty).
_VCR_MODES: Final = {
    "none": "none",
    "once": "once",
    "new_episodes": "new_episodes",
    "all": "all",
    "rewrite": "all",
}
_MATCH_ON: Final = ("method", "path", "engagelab_json_body")
_MATCHER_NAMES: Final = {"json_body": "the JSON body", "path": "the path", "method": "the method"}


class _EngageLabCassette(Cassette):  # type: ignore[misc]
    """vcrpy's cassette, with a miss reported as :class:`CassetteMiss`."""

    engagelab_context: ActiveCassette | None = None

    def filter_request(self, request: Any) -> Any:
        # vcrpy calls this only for a request the cassette cannot answer while
        # write-protected, right before it would raise its own error.
        filtered = super().filter_request(request)
        context = self.engagelab_context
        if filtered and context is not None:
            raise CassetteMiss(context.miss_message(self, filtered))
        return filtered


class ActiveCassette:
    """The cassette of one test: where it is, how it records, and who talks through it.

    ``credentials`` are what ``otp_client`` uses: the real ones from the
    environment when recording, the emulator's placeholders when replaying.
    """

    def __init__(
        self,
        settings: CassetteSettings,
        path: Path,
        *,
        nodeid: str,
        replay_credentials: Credentials,
        display_path: str | None = None,
    ) -> None:
        self.settings = settings
        self.path = path
        self.nodeid = nodeid
        self.record_mode = settings.record_mode
        self.credentials = settings.recording or replay_credentials
        self.display_path = display_path or str(path)
        self.scrubber = Scrubber(
            self.credentials.dev_key,
            self.credentials.dev_secret,
            extra_secrets=settings.extra_secrets,
            redact_recipients=settings.redact_recipients,
        )
        header = {"source": "recorded", "base_url": self.scrubber.text(self.credentials.base_url)}
        self._persister = AtomicPersister(
            scrubber=self.scrubber,
            ignore_existing=self.record_mode == "rewrite",
            header=header,
        )
        config = vcr.VCR(
            record_mode=_VCR_MODES[self.record_mode],
            match_on=_MATCH_ON,
            before_record_request=self.scrubber.request,
            before_record_response=self.scrubber.response,
            decode_compressed_response=True,
            record_on_exception=False,
        )
        config.register_matcher("engagelab_json_body", json_body)
        config.register_persister(self._persister)
        getter = functools.partial(config.get_merged_config, path=str(path))
        self._context = CassetteContextDecorator(_EngageLabCassette, getter)
        self.cassette: Any = None

    def __repr__(self) -> str:
        return f"ActiveCassette(path={self.display_path!r}, record_mode={self.record_mode!r})"

    @property
    def recording(self) -> bool:
        """Whether requests the cassette lacks go to the real endpoint."""
        return self.record_mode != "none"

    def start(self) -> None:
        """Load the cassette and patch httpx (raises ``CassetteError`` for a broken file)."""
        self.cassette = self._context.__enter__()
        self.cassette.engagelab_context = self

    def stop(self, *, save: bool) -> None:
        """Unpatch httpx; write the cassette (atomically) only when ``save``."""
        cassette = self.cassette
        if cassette is None:
            return
        self.cassette = None
        if not save:
            failed = RuntimeError("test did not pass: cassette not written")
            self._context.__exit__(RuntimeError, failed, None)
            return
        recorded = bool(cassette.dirty)
        self._context.__exit__(None, None, None)
        if self.record_mode == "rewrite" and not recorded:
            self.path.unlink(missing_ok=True)

    # -- the miss message --------------------------------------------------------------

    def miss_message(self, cassette: Any, request: Any) -> str:
        """What a test reads when the cassette has no answer for ``request`` (scrubbed)."""
        similar = cassette.find_requests_with_most_matches(request)
        exists = len(cassette.data) > 0
        if not exists:
            why = "the cassette does not exist" if not self.path.exists() else "it is empty"
        elif similar and not similar[0][2]:
            why = "its matching interaction was already played (each plays once)"
        else:
            why = "no recorded interaction matches it"
        if self.record_mode == "none":
            mode_text = "record mode 'none' only replays"
        else:
            mode_text = f"record mode {self.record_mode!r} does not add to an existing cassette"
        lines = [
            f"pytest-engagelab: cassette {self.display_path} has no answer for this request: "
            f"{why}; {mode_text}.",
            f"  request:          {_describe(request)}",
        ]
        if similar:
            closest, _succeeded, failed = similar[0]
            lines.append(f"  closest recorded: {_describe(closest)}")
            for name, difference in failed:
                name = _MATCHER_NAMES.get(name, name)
                text = " ".join(str(difference or "").split())
                lines.append(f"    differs in {name}: {text}" if text else f"    differs in {name}")
        elif exists:
            lines.append("  closest recorded: none (nothing with the same method or path)")
        else:
            lines.append("  closest recorded: none (no recorded interactions)")
        mode = "new_episodes" if exists else "once"
        lines += [
            "To record it against the real endpoint (needs ENGAGELAB_DEV_KEY and "
            "ENGAGELAB_DEV_SECRET), run:",
            f"  pytest {shlex.quote(self.nodeid)} --engagelab-record-mode={mode}",
        ]
        return "\n".join(lines)


def _describe(request: Any) -> str:
    parsed = request.parsed_uri
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not body:
        return f"{request.method} {target}"
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), sort_keys=True, ensure_ascii=False)
    if len(body) > 300:
        body = body[:297] + "..."
    return f"{request.method} {target} {body}"
