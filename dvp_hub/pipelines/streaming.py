"""Overlapping the pipeline's stages: rendering ahead of the generator, encoding behind it.

`in_background(fn)` starts one piece of work beside the caller's (a run's calibration beside its tracking).
`prefetch(iterable)` runs a producer (render + stack the next batches) in a thread while the caller
generates; `Worker(fn)` runs a consumer (refine; paste-back, mark, encode) in a thread behind it, and
workers chain. Torch, OpenCV and ffmpeg release the GIL, so the stages run on different cores at once.
``threads``: the thread's own torch intra-op thread count (torch's setting is per thread), so that a
few stages side by side do not each start one thread per core. Errors raised in any thread reach the
caller; stopping early (an exception in the caller) stops the threads.
"""

from __future__ import annotations

import contextvars
import ctypes
import glob
import os
import queue
import threading

import torch

_END = object()


def _openmp():
    """The OpenMP runtime torch ships with (its per-thread setter), or None."""
    libs = glob.glob(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp*.so*"))
    try:
        return ctypes.CDLL(libs[0]) if libs else None
    except OSError:
        return None


_OMP = _openmp()


def use_threads(n: int) -> None:
    """Give the calling thread ``n`` torch intra-op threads, leaving every other thread's count, and the count a
    thread starting torch work later begins with, as they are (`torch.set_num_threads` also changes the latter:
    a Gradio worker thread that first ran torch during a run would keep one thread for good). Hand-written
    (ctypes): torch has no per-thread setter."""
    torch.get_num_threads()  # torch's per-thread initialisation first: on first use it would reset the count
    if _OMP is not None:
        _OMP.omp_set_num_threads(int(n))
    else:
        torch.set_num_threads(int(n))


def _thread(target, name: str) -> threading.Thread:
    """A daemon thread that runs ``target`` in a copy of the caller's context (Gradio's progress tracking reads
    context variables)."""
    return threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)


def _put_while(q: queue.Queue, item, go_on) -> bool:
    """Put ``item`` in ``q``, waiting for room while ``go_on()`` holds; whether it went in."""
    while go_on():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterable, depth: int = 2, threads: int | None = None):
    """Iterate ``iterable`` in a background thread (with ``threads`` torch threads, None: torch's default), at most
    ``depth`` items ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        return _put_while(q, item, lambda: not stop.is_set())

    def run():
        if threads is not None:
            use_threads(threads)
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(_Failure(exc))

    thread = _thread(run, "dvp-prefetch")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join()


def in_background(fn):
    """Start ``fn()`` in a thread (in a copy of the caller's context) and return ``result()``, which waits for it and
    returns its value or re-raises its error."""
    box: dict = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            box["error"] = exc

    thread = _thread(run, "dvp-background")
    thread.start()

    def result():
        thread.join()
        if "error" in box:
            raise box["error"]
        return box["value"]

    return result


class Worker:
    """Apply ``fn`` to items in a background thread (with ``threads`` torch threads, None: torch's default), in
    order; `close` waits and re-raises its error, `cancel` drops what is queued."""

    def __init__(self, fn, depth: int = 2, threads: int | None = None):
        self._fn, self._threads = fn, threads
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = _thread(self._run, "dvp-worker")
        self._thread.start()

    def _run(self):
        if self._threads is not None:
            use_threads(self._threads)
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._error is None and not self._cancelled:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised by put/close
                    self._error = exc

    def _put(self, item) -> None:
        """Queue ``item`` unless the thread has ended (then nothing would take it)."""
        _put_while(self._q, item, self._thread.is_alive)

    def put(self, item) -> None:
        if self._error is not None:
            self.close()
        if not self._thread.is_alive():
            raise RuntimeError("the worker has stopped")
        self._put(item)

    def close(self) -> None:
        """Finish the queued items; re-raise the first error the worker met."""
        self._put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """Skip the queued items and wait for the item in hand (errors are dropped: another one is on its way up)."""
        self._cancelled = True
        while True:
            try:
                self._put(_END)
                self._thread.join()
                return
            except KeyboardInterrupt:  # a second Ctrl-C: still wait, or the caller would close what the thread uses
                continue
