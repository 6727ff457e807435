"""Per-stage wall time of a run (`dvp reenact --profile`, `dvp live --profile`): where a frame's time goes."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import numpy as np


class StageTimes:
    """Wall time of each named stage, call by call: ``with times.stage("render"): ...``. Stages are kept in the
    order they first ran."""

    def __init__(self):
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.frames: dict[str, int] = defaultdict(int)

    @contextmanager
    def stage(self, name: str, frames: int = 1):
        """Time the block as one call of ``name`` covering ``frames`` frames (a batch counts each of its frames)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.calls[name].append(time.perf_counter() - t0)
            self.frames[name] += frames

    def rows(self) -> list[dict]:
        """Per stage: calls, frames, median and p95 ms a call, ms a frame, and its share of all stages' time."""
        total = sum(sum(v) for v in self.calls.values()) or 1e-9
        out = []
        for name, calls in self.calls.items():
            a = np.array(calls) * 1000
            out.append(
                {
                    "stage": name,
                    "calls": len(a),
                    "median_ms": round(float(np.median(a)), 2),
                    "p95_ms": round(float(np.percentile(a, 95)), 2),
                    "ms_per_frame": round(float(a.sum()) / max(self.frames[name], 1), 2),
                    "share": round(float(a.sum()) / 1000 / total, 3),
                }
            )
        return out

    def table(self) -> str:
        """`rows` as a fixed-width text table (`format_rows`)."""
        return format_rows(self.rows())


def format_rows(rows: list[dict]) -> str:
    """`StageTimes.rows` as a fixed-width text table."""
    lines = [f"{'stage':<22}{'calls':>7}{'median ms':>11}{'p95 ms':>9}{'ms/frame':>10}{'share':>8}"]
    for r in rows:
        lines.append(
            f"{r['stage']:<22}{r['calls']:>7}{r['median_ms']:>11.2f}{r['p95_ms']:>9.2f}"
            f"{r['ms_per_frame']:>10.2f}{100 * r['share']:>7.1f}%"
        )
    return "\n".join(lines)


def timed(times: StageTimes | None, name: str, frames: int = 1):
    """``times.stage(name, frames)``, or a no-op context without a profile."""
    return times.stage(name, frames) if times is not None else nullcontext()
