"""Injected failures, so tests and benchmarks can show the operator survives outages.

A `FaultPlan` is consulted before every request an emulator serves: fixed latency, a
random error rate, a scripted outage window, a number of 429 answers with Retry-After, and
slow responses for matching paths. It is changed at run time through the emulator's
`/_emulator/faults` endpoint or `set_faults()`, and is thread-safe.
"""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """What to do with one request instead of (or before) serving it."""

    delay: float = 0.0
    status: int | None = None  # answer with this status instead of serving
    retry_after: float | None = None
    message: str = ""


@dataclass
class FaultPlan:
    latency_ms: float = 0.0
    error_rate: float = 0.0  # 0..1, answered with error_status
    error_status: int = 503
    error_count: int = 0  # the next N requests get error_status (after any 429 budget)
    outage_until: float = 0.0  # time.time() until which every request gets outage_status
    outage_status: int = 503
    rate_limit_remaining: int = 0  # the next N requests get 429
    rate_limit_retry_after: float = 1.0
    slow_path: str = ""  # regex on the path
    slow_ms: float = 0.0
    seed: int | None = None
    _random: random.Random = field(default_factory=random.Random, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, settings: dict[str, Any]) -> None:
        """Apply a JSON document of knobs; `outage_seconds` starts an outage window now."""
        with self._lock:
            for key, value in settings.items():
                if key == "outage_seconds":
                    self.outage_until = time.time() + float(value)
                elif key == "rate_limit":
                    self.rate_limit_remaining = int(value.get("count", 0))
                    self.rate_limit_retry_after = float(value.get("retry_after", 1.0))
                elif key == "seed":
                    self._random.seed(value)
                    self.seed = value
                elif key in self.public_fields():
                    setattr(self, key, type(getattr(self, key))(value) if value is not None else value)
                else:
                    raise ValueError(f"unknown fault knob '{key}'")

    @classmethod
    def public_fields(cls) -> set[str]:
        return {name for name in cls.__dataclass_fields__ if not name.startswith("_")}

    def as_dict(self) -> dict[str, Any]:
        """The knobs as JSON-ready values (not `asdict`: it would deep-copy the thread lock)."""
        with self._lock:
            return {name: getattr(self, name) for name in sorted(self.public_fields())}

    def decide(self, path: str) -> Fault:
        """The fault for one request (consumes a 429 from the budget when it applies)."""
        with self._lock:
            fault = Fault(delay=self.latency_ms / 1000.0)
            if self.slow_path and self.slow_ms and re.search(self.slow_path, path):
                fault.delay += self.slow_ms / 1000.0
            if time.time() < self.outage_until:
                fault.status, fault.message = self.outage_status, "injected outage"
            elif self.rate_limit_remaining > 0:
                self.rate_limit_remaining -= 1
                fault.status, fault.retry_after, fault.message = (
                    429,
                    self.rate_limit_retry_after,
                    "injected rate limit",
                )
            elif self.error_count > 0:
                self.error_count -= 1
                fault.status, fault.message = self.error_status, "injected error"
            elif self.error_rate and self._random.random() < self.error_rate:
                fault.status, fault.message = self.error_status, "injected error"
            return fault
