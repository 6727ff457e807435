"""Per-stage wall and CPU time of a run (`dvp reenact --profile`, `dvp live --profile`): where a frame's time goes.

Where stages run side by side on few cores, a stage's wall time includes waiting for a core; its CPU time (of the
thread that ran it, `time.thread_time`) is the work itself. Threads a stage starts (a multi-threaded torch op, the
face mesh's own graph threads, the ffmpeg encoder's process) are not in its CPU time."""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext

import numpy as np


class StageTimes:
    """Wall and thread CPU time of each named stage, call by call: ``with times.stage("render"): ...``. Stages are
    kept in the order they first ran."""

    def __init__(self):
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, float] = defaultdict(float)
        self.frames: dict[str, int] = defaultdict(int)

    @contextmanager
    def stage(self, name: str, frames: int = 1):
        """Time the block as one call of ``name`` covering ``frames`` frames (a batch counts each of its frames)."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.calls[name].append(time.perf_counter() - t0)
            self.cpu[name] += time.thread_time() - c0
            self.frames[name] += frames

    def rows(self) -> list[dict]:
        """Per stage: calls, median and p95 ms a call, ms a frame (wall), CPU ms a frame (its thread's), and its share
        of all stages' wall time."""
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
                    "cpu_ms_per_frame": round(1000 * self.cpu[name] / max(self.frames[name], 1), 2),
                    "share": round(float(a.sum()) / 1000 / total, 3),
                }
            )
        return out

    def table(self) -> str:
        """`rows` as a fixed-width text table (`format_rows`)."""
        return format_rows(self.rows())


def format_rows(rows: list[dict]) -> str:
    """`StageTimes.rows` as a fixed-width text table."""
    head = f"{'stage':<22}{'calls':>7}{'median ms':>11}{'p95 ms':>9}{'ms/frame':>10}{'cpu ms/frame':>14}{'share':>8}"
    lines = [head]
    for r in rows:
        cpu = r.get("cpu_ms_per_frame")  # absent from results written before it was measured
        lines.append(
            f"{r['stage']:<22}{r['calls']:>7}{r['median_ms']:>11.2f}{r['p95_ms']:>9.2f}"
            f"{r['ms_per_frame']:>10.2f}{'-' if cpu is None else f'{cpu:.2f}':>14}{100 * r['share']:>7.1f}%"
        )
    return "\n".join(lines)


def timed(times: StageTimes | None, name: str, frames: int = 1):
    """``times.stage(name, frames)``, or a no-op context without a profile."""
    return times.stage(name, frames) if times is not None else nullcontext()
