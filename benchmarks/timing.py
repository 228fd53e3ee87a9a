"""The benchmarks' one timing helper: the median wall time of a call, device-synchronised."""
from __future__ import annotations

import statistics
import time

import torch


def sync(dev) -> None:
    if torch.device(dev).type == "cuda":
        torch.cuda.synchronize(dev)


def median_ms(fn, dev, repeats=5, warmup=2) -> float:
    """Median milliseconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones
    (first-call costs: caches, FFT plans, cuDNN autotuning, the allocator)."""
    for _ in range(warmup):
        fn()
    sync(dev)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
