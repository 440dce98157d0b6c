"""Capped exponential backoff with jitter, shared by every reporter thread that retries a backend."""

from __future__ import annotations

import random

BACKOFF_START, BACKOFF_CAP = 0.5, 30.0  # seconds


class Backoff:
    """Capped exponential backoff with jitter."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> None:
        self.start, self.cap, self.current = start, cap, 0.0

    def next(self) -> float:
        self.current = min(self.cap, self.current * 2 if self.current else self.start)
        return self.current * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.current = 0.0
