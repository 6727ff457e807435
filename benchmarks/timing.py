"""Timing shared by the benchmark scripts."""

from __future__ import annotations

import os
import time

import numpy as np


def median_ms(fn, n: int = 40, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``n`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def machine() -> str:
    """The CPU as results files name it: cores, model and the vector extensions that matter for the generator."""
    model, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    ext = [e for e in ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile") if e in flags]
    return f"{os.cpu_count()} CPU cores ({model}; {', '.join(ext) or 'no AVX2'})"
