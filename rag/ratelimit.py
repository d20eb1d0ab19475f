"""Per-key token-bucket rate limiting for the query service (one bucket per API key)."""
from __future__ import annotations

import threading
import time
from typing import Callable

from ..engine.errors import InvalidArgumentError, ResourceExhaustedError

__all__ = ["TokenBucket", "RateLimiter"]


class TokenBucket:
    """``capacity`` tokens refilled at ``rate`` per second; a request takes ``cost`` tokens or is refused."""

    def __init__(self, rate: float, capacity: float, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or not capacity >= 1:
            raise InvalidArgumentError(f"rate must be > 0 and capacity >= 1, got rate={rate}, capacity={capacity}")
        self.rate, self.capacity, self._clock = float(rate), float(capacity), clock
        self._tokens = float(capacity)
        self._stamp = clock()

    def try_acquire(self, cost: float = 1.0) -> float:
        """0.0 when granted, else the seconds until ``cost`` tokens will be available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate


class RateLimiter:
    """One token bucket per key; ``check(key)`` raises ResourceExhaustedError when the key is over its rate."""

    def __init__(self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.rate, self.burst, self._clock, self.max_keys = rate, burst if burst is not None else max(1.0, rate), clock, max_keys
        TokenBucket(self.rate, self.burst, clock)  # validate once, up front
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str, cost: float = 1.0) -> None:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.max_keys:  # forget the oldest key rather than grow without bound
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, self._clock)
            wait = bucket.try_acquire(cost)
        if wait > 0:
            raise ResourceExhaustedError(
                f"rate limit exceeded for API key {key[:8] + '…' if len(key) > 8 else key!r}: "
                f"{self.rate:g} requests/s with bursts of {self.burst:g}; retry in {wait:.2f}s")
