"""A latency histogram of fixed, log-spaced buckets: bounded memory, percentiles, Prometheus.

Every `Histogram` has the same 141 bucket bounds, from 10 µs to 100 s, 20 per
decade (a bucket is at most 14% wide). Recording one value is a bisect and an
increment; a percentile is the bound of the bucket it falls in, so it is never
more than one bucket (≤ 14%) above the true value, and never above the largest
value seen. The bounds include 1, 2.5 and 5 of every decade, so the buckets
Prometheus users expect (`PROMETHEUS_BOUNDS`) are sums of these.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["BOUNDS", "PROMETHEUS_BOUNDS", "Histogram"]

_STEPS = (1, 1.12, 1.25, 1.4, 1.6, 1.8, 2, 2.25, 2.5, 2.8, 3.2, 3.6, 4, 4.5, 5, 5.6, 6.3, 7.1, 8, 9)

BOUNDS: tuple[float, ...] = (
    *(round(step * 10.0**exponent, 12) for exponent in range(-5, 2) for step in _STEPS),
    100.0,
)
"""Upper bounds of the buckets, in seconds (a value equal to a bound falls in its bucket)."""

PROMETHEUS_BOUNDS: tuple[float, ...] = (
    *(round(step * 10.0**exponent, 12) for exponent in range(-4, 2) for step in (1, 2.5, 5)),
    100.0,
)
"""The ``le`` buckets exported to Prometheus: 100 µs to 100 s, 1-2.5-5 per decade."""

_PROMETHEUS_INDEX = tuple(BOUNDS.index(b) for b in PROMETHEUS_BOUNDS)


class Histogram:
    """Counts of durations (seconds) per bucket, their sum and their maximum.

    Example:
        >>> h = Histogram()
        >>> for ms in (1, 2, 3, 100):
        ...     h.add(ms / 1000)
        >>> h.count, round(h.quantile(0.5) * 1000, 2)
        (4, 2.0)
    """

    __slots__ = ("count", "counts", "max", "sum")

    def __init__(self) -> None:
        # One more than the bounds: the last bucket holds what is above 100 s.
        self.counts = [0] * (len(BOUNDS) + 1)
        self.count = 0
        self.sum = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        """Record one duration."""
        self.counts[bisect.bisect_left(BOUNDS, seconds)] += 1
        self.count += 1
        self.sum += seconds
        self.max = max(self.max, seconds)

    def merge(self, others: Iterable[Histogram]) -> Histogram:
        """This histogram plus ``others``, as a new one."""
        merged = Histogram()
        for h in (self, *others):
            merged.counts = [a + b for a, b in zip(merged.counts, h.counts, strict=True)]
            merged.count += h.count
            merged.sum += h.sum
            merged.max = max(merged.max, h.max)
        return merged

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1) in seconds: its bucket's bound, at most `max`."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if seen >= rank and n:
                bound = BOUNDS[index] if index < len(BOUNDS) else self.max
                return min(bound, self.max)
        return self.max

    def prometheus_buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs over `PROMETHEUS_BOUNDS`, ending with ``+Inf``."""
        buckets: list[tuple[str, float]] = []
        cumulative = 0
        start = 0
        for bound, index in zip(PROMETHEUS_BOUNDS, _PROMETHEUS_INDEX, strict=True):
            cumulative += sum(self.counts[start : index + 1])
            start = index + 1
            buckets.append((repr(bound), float(cumulative)))
        buckets.append(("+Inf", float(self.count)))
        return buckets
