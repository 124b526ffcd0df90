"""The org's clock: frozen at a given instant (tests step it with `advance`) or following wall time."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class SandboxClock:
    """`SandboxClock(fixed)` stands still until advanced; `SandboxClock()` ticks with the wall clock.

    Either way `advance` moves it forward, so a long-running demo server keeps real time while a test
    can jump a day ahead. Times are whole seconds in UTC, like the timestamps the org stores.
    """

    def __init__(self, now: datetime | None = None):
        self._lock = threading.Lock()
        self._frozen = now is not None
        self._fixed = _utc_seconds(now) if now is not None else None
        self._offset = timedelta(0)

    @property
    def frozen(self) -> bool:
        return self._frozen

    def now(self) -> datetime:
        with self._lock:
            base = self._fixed if self._fixed is not None else datetime.now(UTC)
            return _utc_seconds(base + self._offset)

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += delta
        return self.now()


def _utc_seconds(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0)
