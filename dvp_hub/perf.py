"""Process-level performance settings for the CLI, the Space and the benchmarks.

glibc returns large freed blocks to the system at once, so every batch of the renderer and the
generator pays page faults to get its memory back, and throughput varies widely from run to run
(why: docs/figures-2026-11.md, 'Design measurements'). `tune_allocator` asks glibc to keep freed
memory; call it once at program start, never from library import. It also keeps one arena for all threads: the
pipeline's stages run side by side in threads, and an arena each would hold a few hundred MB more at the peak.

`one_blas_thread` is a context for numpy code that makes many small BLAS calls between torch calls (the face fit).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_done = False
_BLAS, _BLAS_LIMIT, _BLAS_DEPTH, _BLAS_LOCK = None, None, 0, threading.Lock()  # `one_blas_thread`


def tune_allocator() -> bool:
    """Keep freed heap memory in the process, in one arena (glibc only); returns whether it applied."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1)
        libc.mallopt(_M_TOP_PAD, 256 << 20)
        libc.mallopt(_M_ARENA_MAX, 1)
        _done = True
    except (OSError, AttributeError):
        pass
    return _done


@contextlib.contextmanager
def one_blas_thread():
    """A context in which numpy's BLAS uses one thread (`threadpoolctl`), for many small BLAS calls beside torch: the
    face fit, offline and per live frame. After a torch call, torch's OpenMP workers spin for a while; an OpenBLAS
    call on two threads then fights them for the cores (a batched 6 x 6 solve took 5.7 ms instead of 0.3), and
    OpenBLAS's own spinning workers would take a core from the generator's OpenMP team. Overlapping contexts (in any
    threads) share one limit, set by the first and lifted by the last: threadpoolctl's own contexts each restore what
    they found, which is wrong when they overlap."""
    global _BLAS, _BLAS_DEPTH, _BLAS_LIMIT
    with _BLAS_LOCK:
        if _BLAS_DEPTH == 0:
            if _BLAS is None:
                from threadpoolctl import ThreadpoolController  # lazy: it inspects the loaded libraries

                _BLAS = ThreadpoolController().select(user_api="blas")
            _BLAS_LIMIT = _BLAS.limit(limits=1)
        _BLAS_DEPTH += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_DEPTH -= 1
            if _BLAS_DEPTH == 0:
                _BLAS_LIMIT.restore_original_limits()
