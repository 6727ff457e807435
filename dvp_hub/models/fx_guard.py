"""Tracing and running networks in different threads, kept apart.

torch.fx traces a network by patching ``torch.nn.Module.__call__`` for the whole process. A forward pass that
another thread runs meanwhile goes through the tracer and fails ("module is not installed as a submodule"): the
Space's Edit tab failed so while a Live session (or the Space's warm-up) converted a network to int8. Here any
number of forward passes run at once (`running`), and a trace (`tracing`) waits for those of other threads to end
and holds new ones back; a thread's own forward passes inside its trace (int8 calibration) go on. Hand-written:
the standard library has no reader-writer lock.
"""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager

_cond = threading.Condition()
_readers: dict[int, int] = {}  # thread -> how many `running` blocks it is inside
_writer: list = [None, 0]  # the tracing thread and its depth


@contextmanager
def running():
    """Forward passes of this package's networks: wait while another thread traces one."""
    me = threading.get_ident()
    with _cond:
        while _writer[0] is not None and _writer[0] != me:
            _cond.wait()
        _readers[me] = _readers.get(me, 0) + 1
    try:
        yield
    finally:
        with _cond:
            _readers[me] -= 1
            if not _readers[me]:
                del _readers[me]
                _cond.notify_all()


@contextmanager
def tracing():
    """An FX trace (``symbolic_trace``, ``prepare_fx``): wait until no other thread runs or traces a network."""
    me = threading.get_ident()
    with _cond:
        while (_writer[0] is not None and _writer[0] != me) or any(t != me for t in _readers):
            _cond.wait()
        _writer[0], _writer[1] = me, _writer[1] + 1
    try:
        yield
    finally:
        with _cond:
            _writer[1] -= 1
            if not _writer[1]:
                _writer[0] = None
                _cond.notify_all()


def guarded(fn):
    """``fn`` (a function that runs networks) inside `running`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with running():
            return fn(*args, **kwargs)

    return wrapper
