"""The emulator's clock: time that a test moves by hand."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["MAX_TIME", "SEEDED_EPOCH", "Clock"]

#: Where a seeded emulator's clock starts (2025-01-01T00:00:00Z), so that message
#: ids and timestamps repeat from run to run.
SEEDED_EPOCH = 1_735_689_600.0
#: The latest time the clock can show (9999-12-31T23:59:59Z): later ones are no dates,
#: and far later ones no finite numbers.
MAX_TIME = 253_402_300_799.0


def _shown(seconds: object) -> str:
    text = repr(seconds)
    return text if len(text) <= 24 else f"{text[:12]}...({len(text)} digits)"


class Clock:
    """Seconds since the Unix epoch, as the emulator sees them.

    A frozen clock (the default for ``otp_mock`` and ``otp_server``) stands still
    until :meth:`advance` moves it, so code expiry and the frequency limit happen
    exactly when a test says.  A running clock follows the wall clock, plus
    whatever :meth:`advance` added (``python -m pytest_engagelab serve``).
    """

    def __init__(self, start: float | None = None, *, frozen: bool = True) -> None:
        self._lock = threading.Lock()
        self._start = time.time() if start is None else float(start)
        self._frozen = frozen
        self._offset = 0.0
        self._wall_origin = time.monotonic()

    @property
    def frozen(self) -> bool:
        """Whether the clock stands still between calls to :meth:`advance`."""
        return self._frozen

    def now(self) -> float:
        """The current time, in seconds since the epoch."""
        elapsed = 0.0 if self._frozen else time.monotonic() - self._wall_origin
        return self._start + self._offset + elapsed

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (not backward) and return the new time."""
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or (isinstance(seconds, float) and not math.isfinite(seconds))
            or seconds < 0
        ):
            raise ValueError(
                "advance() takes a finite number of seconds >= 0 (the clock only moves "
                f"forward), such as 300; got {_shown(seconds)}"
            )
        with self._lock:
            now = self.now()
            if seconds > MAX_TIME - now:  # compared before adding: a huge int is no float
                raise ValueError(
                    f"advance({_shown(seconds)}) would move the clock past "
                    f"9999-12-31T23:59:59Z ({MAX_TIME:.0f}), the latest time it shows; "
                    f"advance by at most {MAX_TIME - now:.0f} seconds"
                )
            self._offset += seconds
        return self.now()

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running"
        return f"Clock(now={self.now():.3f}, {state})"
