"""Live sessions fed like a camera: `LiveRunner` (a one-frame mailbox that drops, never queues; the prepare, generate
and finish stages side by side where that pays), `Recording` (on the camera's timeline) and `run_paced`."""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..perf import one_blas_thread
from .streaming import use_threads

if TYPE_CHECKING:  # for annotations only: the session module needs nothing from here
    from .live import LiveSession


class LiveRunner:
    """A session behind a one-frame mailbox: `offer` never blocks; a frame that arrives while another waits
    replaces it (the waiting one is dropped, and counted), so latency never grows. Outputs go to
    ``on_output(index, frame, arrival_time)`` in order.

    ``pipelined``: three stages side by side, each in a thread of its own with one torch thread: `LiveSession.prepare`
    (face mesh, fit, render) of the next frame, `LiveSession.generate_crop` (the generator) of the last one and
    `LiveSession.finish` (paste-back, marks) of the one before, each handing over through a one-frame mailbox. A
    stage takes its next item only once the stage after it has taken the last one, so frames are dropped at the
    camera's mailbox only, the newest camera frame is the one prepared, and no CPU goes to frames dropped later. Before it takes a frame, each stage runs once in the thread it will run in
    (`LiveSession.warm_up`). ``thread=False``: the caller runs `serve` in its own thread (the one that made the
    session, whose OpenMP pool torch runs fastest in) and frames are offered from another thread. From start to
    close, numpy's BLAS runs on one thread (`perf.one_blas_thread`): between frames, a two-thread BLAS call in any
    stage left an OpenBLAS worker spinning, which took most of a core from the stages.
    The measurements behind these choices: `benchmarks/results/live.json`.
    """

    def __init__(self, session: "LiveSession", on_output=None, thread: bool = True, pipelined: bool = False):
        self.session = session
        self.on_output = on_output
        self.pipelined = pipelined
        self._cv = threading.Condition()
        self._pending = None  # the next camera frame
        self._prepared = None  # pipelined: the next prepared frame
        self._generated = None  # pipelined: the next generated crop
        self._closed = False  # no more camera frames
        self._prepare_done = not pipelined  # pipelined: the prepare thread has finished
        self._generate_done = not pipelined  # pipelined: the generator's loop has finished
        self.dropped = 0
        self.latencies: list[float] = []
        self.latest: np.ndarray | None = None
        self.error: BaseException | None = None
        self._torch_threads = torch.get_num_threads()  # restored by serve() / close() (pipelined sets 1)
        self._threads = []
        self._blas = ExitStack()  # numpy's BLAS on one thread until `_join`
        self._blas.enter_context(one_blas_thread())
        self._own_thread, self._served = thread, False  # thread=False: the caller runs the generator (`serve`)
        if pipelined:
            self._threads.append(threading.Thread(target=self._prepare_loop, name="dvp-live-prepare", daemon=True))
            self._threads.append(threading.Thread(target=self._finish_loop, name="dvp-live-finish", daemon=True))
        if thread:
            self._threads.append(threading.Thread(target=self._run, args=(True,), name="dvp-live", daemon=True))
        self._warm = threading.Barrier(len(self._threads) + 1, timeout=60)
        try:
            for t in self._threads:
                t.start()
            if not thread:  # the caller serves: its thread runs the generator
                self._warm_generator()
            self._warm.wait()  # every stage has run once in the thread it runs in
        except BaseException:
            self._warm.abort()
            self.finish()
            self._join()
            if self.error is not None and not isinstance(self.error, threading.BrokenBarrierError):
                raise self.error from None  # a thread's own error, the cause of the broken barrier
            raise

    def _warm_generator(self) -> None:
        if self.pipelined:
            use_threads(1)  # this thread's share: the prepare stage runs on the other core
        self.session.warm_up("generate_crop" if self.pipelined else "generate")  # the finish thread warms its own

    def offer(self, index: int, frame: np.ndarray, t: float) -> None:
        with self._cv:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (index, frame, t, time.perf_counter())
            self._cv.notify_all()

    def _next(self, slot: str, done) -> tuple | None:
        """Wait for the item in mailbox ``slot`` and take it; None once ``done()`` and the mailbox is empty."""
        with self._cv:
            while getattr(self, slot) is None and not done() and self.error is None:
                self._cv.wait()
            item = getattr(self, slot)
            setattr(self, slot, None)
            self._cv.notify_all()  # the stage before may hand over its next item now (`_wait_empty`)
            return item if self.error is None else None

    def _wait_empty(self, slot: str) -> None:
        """Wait until the next stage has taken mailbox ``slot``'s item (or a stage failed): a stage takes a new
        item only when it can hand its result over, so no stage works on a frame that would be dropped later and
        the freshest camera frame is the one taken."""
        with self._cv:
            while getattr(self, slot) is not None and self.error is None:
                self._cv.wait()

    def _prepare_loop(self) -> None:
        use_threads(1)  # this thread's share: the generator runs on the other core
        try:
            self.session.warm_up("prepare")
            self._warm.wait()
            while True:
                self._wait_empty("_prepared")
                if (item := self._next("_pending", lambda: self._closed)) is None:
                    break
                index, frame, t, arrived = item
                cond = self.session.prepare(frame, t)
                with self._cv:  # empty: `_wait_empty` above
                    self._prepared = (index, cond, arrived)
                    self._cv.notify_all()
        except BaseException as err:  # noqa: BLE001 - re-raised by serve() / close()
            self._failed(err)
        finally:
            with self._cv:
                self._prepare_done = True
                self._cv.notify_all()

    def _run(self, own_thread: bool = False) -> None:
        try:
            if own_thread:
                self._warm_generator()
                self._warm.wait()
            elif self.pipelined:
                use_threads(1)  # as `_warm_generator` set it (serve() runs in the thread that made this)
            while True:
                if self.pipelined:
                    self._wait_empty("_generated")
                    item = self._next("_prepared", lambda: self._prepare_done)
                    if item is None:
                        return
                    index, cond, arrived = item
                    crop = self.session.generate_crop(cond)
                    with self._cv:  # empty: `_wait_empty` above
                        self._generated = (index, crop, arrived)
                        self._cv.notify_all()
                else:
                    item = self._next("_pending", lambda: self._closed)
                    if item is None:
                        return
                    index, frame, t, arrived = item
                    self._output(index, self.session.push(frame, t), arrived)
        except BaseException as err:  # noqa: BLE001 - re-raised by serve() / close()
            self._failed(err)
        finally:
            with self._cv:
                self._generate_done = True
                self._cv.notify_all()

    def _finish_loop(self) -> None:
        use_threads(1)  # as the other stages
        try:
            self.session.warm_up("finish")
            self._warm.wait()
            while (item := self._next("_generated", lambda: self._generate_done)) is not None:
                index, crop, arrived = item
                self._output(index, self.session.finish(*crop), arrived)
        except BaseException as err:  # noqa: BLE001 - re-raised by serve() / close()
            self._failed(err)

    def _output(self, index: int, out: np.ndarray, arrived: float) -> None:
        self.latencies.append(time.perf_counter() - arrived)
        self.latest = out
        if self.on_output is not None:
            self.on_output(index, out, arrived)

    def _failed(self, err: BaseException) -> None:
        """Keep the first real error (a stage that fails at warm-up breaks the barrier for the others)."""
        with self._cv:
            if self.error is None or isinstance(self.error, threading.BrokenBarrierError):
                self.error = err
            self._cv.notify_all()
        self._warm.abort()

    def serve(self) -> None:
        """Process offered frames in the calling thread until `finish` has been called and nothing waits."""
        self._served = True
        self._run()
        self._join()
        if self.error is not None:
            raise self.error

    def finish(self) -> None:
        """No more frames: the ones still waiting are processed, then `serve` (or the threads) return."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def _join(self) -> None:
        for t in self._threads:
            if t is not threading.current_thread() and t.ident is not None:  # started
                t.join()
        if self.pipelined:
            use_threads(self._torch_threads)
        self._blas.close()  # a second call does nothing

    def close(self) -> None:
        """Process the frames still waiting, stop the threads, re-raise an error of theirs."""
        self.finish()
        if not self._own_thread and not self._served:  # the caller never served: its stage runs here, now
            self.serve()
            return
        self._join()
        if self.error is not None:
            raise self.error


class Recording:
    """Writes a live session's outputs on the source's timeline: one output frame per input frame, the
    previous output repeated for dropped input frames (`LiveRunner` calls `add`). The writer's ``write(frame,
    changed)`` is told what changed since the frame before (`video.VideoWriter.write`): nothing for a repeated
    frame, ``changed`` for a new one (the box outside which every output is the same,
    `LiveSession.changed_region`; None: anywhere)."""

    def __init__(self, writer, changed: tuple[int, int, int, int] | None = None):
        self.writer, self.changed = writer, changed
        self.next_index = 0
        self.last: np.ndarray | None = None
        self._sent: np.ndarray | None = None  # the frame written last

    def _write(self, frame: np.ndarray) -> None:
        self.writer.write(frame, (0, 0, 0, 0) if frame is self._sent else self.changed)
        self._sent = frame

    def add(self, index: int, frame: np.ndarray, _arrived=None) -> None:
        fill = self.last if self.last is not None else frame  # dropped before the first output: the first
        while self.next_index < index:
            self._write(fill)
            self.next_index += 1
        self._write(frame)
        self.last = frame
        self.next_index = index + 1

    def finish(self, total: int) -> None:
        """Fill to ``total`` frames (the inputs dropped after the last processed one)."""
        while self.next_index < total and self.last is not None:
            self._write(self.last)
            self.next_index += 1


def pipelined_by_default(session: "LiveSession") -> bool:
    """Whether `run_paced` runs the stages side by side (`LiveRunner`): with the int8 generator on a CPU with at
    least two cores. Not with the float one: on one torch thread it takes longer than both stages one after the
    other on two (why: benchmarks/results/live.json)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return session.int8 is not None and cores >= 2  # int8 runs on a CPU only


def run_paced(
    session: "LiveSession", frames, fps: float, writer=None, realtime: bool = True, pipelined: bool | None = None
) -> dict:
    """Feed ``frames`` to a session as a camera would: one every ``1 / fps`` seconds (``realtime``), through a
    `LiveRunner`, recording to ``writer`` on the source's timeline. Returns frames in / out / dropped,
    achieved fps and latency percentiles (ms, from a frame's arrival to its output)."""
    rec = Recording(writer, session.changed_region) if writer is not None else None
    if writer is not None and hasattr(writer, "open"):  # the encoder starts before the camera does
        writer.open(*session.output_size)
    if pipelined is None:
        pipelined = pipelined_by_default(session)
    runner = LiveRunner(session, on_output=rec.add if rec is not None else None, thread=False, pipelined=pipelined)
    stop, fed, failed = threading.Event(), [0], []

    def camera():  # the frames arrive from this thread; the session runs in the caller's (see `LiveRunner`)
        try:
            for i, frame in enumerate(frames):
                if stop.is_set():
                    return
                if realtime:
                    wait = start + i / fps - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                runner.offer(i, frame, i / fps)
                fed[0] += 1
        except BaseException as err:  # noqa: BLE001 - a reader error: re-raised in the caller's thread
            failed.append(err)
        finally:
            runner.finish()

    feeder = threading.Thread(target=camera, name="dvp-camera", daemon=True)
    start = time.perf_counter()
    feeder.start()
    try:
        runner.serve()
    finally:
        stop.set()
        feeder.join()
    if failed:
        raise failed[0]
    n = fed[0]
    wall = time.perf_counter() - start
    if rec is not None:
        rec.finish(n)
    lat = np.array(runner.latencies) * 1000
    out = len(runner.latencies)
    return {
        "frames_in": n,
        "frames_out": out,
        "frames_dropped": runner.dropped,
        "dropped_fraction": round(runner.dropped / max(n, 1), 4),
        "fps": round(out / max(wall, 1e-9), 2),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if out else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if out else None,
        "frames_recorded": rec.next_index if rec is not None else 0,
        "frames_without_face": session.frames_without_face,
    }
