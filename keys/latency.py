"""Latency as a histogram with fixed bounds, so that rollup rows add up and percentiles survive aggregation.

A rollup row cannot keep every latency it saw, and an average hides the slow tail an operator looks
for. Each row therefore counts its requests in fixed buckets (the bounds below, in milliseconds, the
last one open-ended); summing rows sums the buckets, and p50/p95 are read back from the summed counts
by interpolating inside the bucket the percentile falls in, as Prometheus' `histogram_quantile` does.
The estimate is exact to within its bucket's width.
"""
from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

# Upper bounds (ms) of every bucket but the last, which holds everything slower.
LATENCY_BOUNDS_MS: tuple[float, ...] = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
# The rollup columns holding each bucket's count, in bucket order (`latency_le_inf` is the open bucket).
LATENCY_COLUMNS: tuple[str, ...] = (*(f"latency_le_{int(bound)}" for bound in LATENCY_BOUNDS_MS), "latency_le_inf")


def latency_bucket_index(latency_ms: float) -> int:
    """The bucket a latency counts in: the first whose upper bound is at least `latency_ms`."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, latency_ms)


def latency_percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The latency (ms) below which `fraction` of the counted requests fall; None when nothing was counted.

    Inside a bucket the requests are taken as spread evenly between its bounds; in the open bucket the
    answer is its lower bound (nothing better is known).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
            if index >= len(LATENCY_BOUNDS_MS):
                return float(lower)
            upper = LATENCY_BOUNDS_MS[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return float(LATENCY_BOUNDS_MS[-1]) if not math.isnan(rank) else None
