"""A drift monitor's settings: checked once, frozen, listed by :meth:`MonitorSettings.get_params`.

Example:
    >>> settings = MonitorSettings(window_size=100)
    >>> settings.max_pending_samples, settings.get_params()["sustained_windows"]
    (1024, 3)
    >>> MonitorSettings(window_size=100, sustained_windows=9)
    Traceback (most recent call last):
    ...
    ValueError: need 1 <= sustained_windows <= recent_windows, got 9 and 5
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

from .recent_windows import WINDOWS_PER_MONTH


@dataclass(frozen=True)
class MonitorSettings:
    """How a :class:`~gangplank.DriftMonitor` windows, judges and queues (its arguments besides transport).

    ``max_pending_samples=None`` becomes two windows (at least 1,024 samples);
    the rest is kept as given, once checked. Field meanings: see
    :class:`~gangplank.DriftMonitor`.
    """

    window_size: int
    window_seconds: float | None = None
    agent: str = "default"
    accuracy_tolerance: float | None = None
    min_feedback: int = 10
    quality_floor: float = 0.80
    recent_windows: int = 5
    sustained_windows: int = 3
    feedback_max_ids: int = 100_000
    feedback_max_age_seconds: float = 24 * 3600.0
    max_pending_samples: int | None = None
    max_wait_seconds: float = 1.0
    labels_per_window: int | None = None
    windows_per_month: float = WINDOWS_PER_MONTH

    def __post_init__(self):
        size = self.window_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"window_size must be a positive whole number, got {size!r}")
        if self.window_seconds is not None and not self.window_seconds > 0:
            raise ValueError(f"window_seconds must be a positive number or None, got {self.window_seconds!r}")
        if not self.agent:
            raise ValueError("agent must be a non-empty name")
        if not 1 <= self.sustained_windows <= self.recent_windows:
            raise ValueError(
                f"need 1 <= sustained_windows <= recent_windows, got {self.sustained_windows} and {self.recent_windows}"
            )
        if not 0 <= self.quality_floor <= 1 or int(self.min_feedback) < 1:
            raise ValueError("quality_floor must be in [0, 1] and min_feedback at least 1")
        if self.labels_per_window is not None and not self.labels_per_window > 0 or not self.windows_per_month > 0:
            raise ValueError("labels_per_window and windows_per_month must be positive")
        if self.feedback_max_ids < 1 or not self.feedback_max_age_seconds > 0:
            raise ValueError("feedback_max_ids must be at least 1 and feedback_max_age_seconds positive")
        if not self.max_wait_seconds >= 0:
            raise ValueError(f"max_wait_seconds must be zero or more, got {self.max_wait_seconds!r}")
        self._set("window_size", int(size))
        self._set("agent", str(self.agent))
        self._set("quality_floor", float(self.quality_floor))
        self._set("min_feedback", int(self.min_feedback))
        self._set("max_wait_seconds", float(self.max_wait_seconds))
        pending = self.max_pending_samples or max(2 * self.window_size, 1024)
        self._set("max_pending_samples", int(pending))
        if self.accuracy_tolerance is not None:
            self._set("accuracy_tolerance", float(self.accuracy_tolerance))

    def _set(self, name: str, value) -> None:
        object.__setattr__(self, name, value)  # normalising a frozen instance's own fields, once

    def get_params(self) -> dict:
        """Every setting by name, as a dict (scikit-learn's ``get_params``)."""
        return dataclasses.asdict(self)
