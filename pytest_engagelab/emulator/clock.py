"""The emulator's clock: time that a test moves by hand."""

from __future__ import annotations

import math
import threading
import time

__all__ = ["Clock"]

#: Where a seeded emulator's clock starts (2025-01-01T00:00:00Z), so that message
#: ids and timestamps repeat from run to run.
SEEDED_EPOCH = 1_735_689_600.0


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
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ValueError(
                f"advance() takes a finite number of seconds >= 0, such as 300; got {seconds!r}"
            )
        with self._lock:
            self._offset += seconds
        return self.now()

    def __repr__(self) -> str:
        state = "frozen" if self._frozen else "running"
        return f"Clock(now={self.now():.3f}, {state})"
