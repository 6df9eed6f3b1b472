"""Wall-clock timing helpers shared by the speed benchmarks (``benchmarks/bench_engine.py``,
``benchmarks/bench_neurons.py``): functions timed interleaved call by call, so load from other
processes hits every candidate alike, and the median of per-repetition ratios.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def interleaved(functions: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function, interleaved call by call; returns all samples.

    Every round calls each function once, in the dict's order; the first ``warmup`` rounds are
    not recorded. Returns ``{name: [seconds of round warmup, ..., round warmup + repeats - 1]}``.
    """
    samples = {name: [] for name in functions}
    for repeat in range(warmup + repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            elapsed = time.perf_counter() - start
            if repeat >= warmup:
                samples[name].append(elapsed)
    return samples


def median_ratio(reference: list[float], candidate: list[float]) -> float:
    """The median over repetitions of ``reference[i] / candidate[i]`` (a speed-up when the candidate is faster)."""
    if len(reference) != len(candidate) or not reference:
        raise ValueError(f"median_ratio needs two equally long, non-empty lists of times; got {len(reference)} "
                         f"and {len(candidate)}")
    return statistics.median(r / c for r, c in zip(reference, candidate))
