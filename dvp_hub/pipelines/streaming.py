"""Overlapping the pipeline's stages: rendering ahead of the generator, encoding behind it.

`prefetch(iterable)` runs a producer (render + stack the next batches) in a thread while the caller
generates; `Worker(fn)` runs a consumer (refine; paste-back, mark, encode) in a thread behind it, and
workers chain. Torch, OpenCV and ffmpeg release the GIL, so the stages run on different cores at once.
``threads``: the thread's own torch intra-op thread count (torch's setting is per thread), so that a
few stages side by side do not each start one thread per core. Errors raised in any thread reach the
caller; stopping early (an exception in the caller) stops the threads.
"""

from __future__ import annotations

import queue
import threading

import torch

_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(iterable, depth: int = 2, threads: int | None = None):
    """Iterate ``iterable`` in a background thread (with ``threads`` torch threads, None: torch's default), at most
    ``depth`` items ahead of the consumer."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run():
        if threads is not None:
            torch.set_num_threads(threads)
        try:
            for item in iterable:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            put(_Failure(exc))

    thread = threading.Thread(target=run, name="dvp-prefetch", daemon=True)
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


class Worker:
    """Apply ``fn`` to items in a background thread (with ``threads`` torch threads, None: torch's default), in
    order; `close` waits and re-raises its error."""

    def __init__(self, fn, depth: int = 2, threads: int | None = None):
        self._fn, self._threads = fn, threads
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="dvp-worker", daemon=True)
        self._thread.start()

    def _run(self):
        if self._threads is not None:
            torch.set_num_threads(self._threads)
        while True:
            item = self._q.get()
            if item is _END:
                return
            if self._error is None:
                try:
                    self._fn(item)
                except BaseException as exc:  # noqa: BLE001 - re-raised by put/close
                    self._error = exc

    def put(self, item) -> None:
        if self._error is not None:
            self.close()
        self._q.put(item)

    def close(self) -> None:
        """Finish the queued items; re-raise the first error the worker met."""
        if self._thread.is_alive():
            self._q.put(_END)
            self._thread.join()
        if self._error is not None:
            raise self._error
