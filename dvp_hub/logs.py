"""What the console shows: only what a user needs, unless asked for more.

mediapipe's native code (TensorFlow Lite, absl, glog) writes straight to file descriptor 2 when its
graphs are created and first run (``Created TensorFlow Lite XNNPACK delegate``, ``All log messages
before absl::InitializeLog()``, ``W0000 ... inference_feedback_manager.cc``), and imageio-ffmpeg logs a
notice whenever it resizes while decoding. None of it helps a user. By default:

- `native_stderr_silenced` sends fd 2 to /dev/null around those native calls (the tracker uses it);
- `quiet_libraries` raises the imageio-ffmpeg and absl Python loggers to ERROR.

Verbose mode brings all of it back: ``dvp --verbose ...``, or the environment variable
``DVP_VERBOSE=1`` (for the Space's server log and the Python API).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading

VERBOSE_ENV = "DVP_VERBOSE"


def is_verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def set_verbose(on: bool) -> None:
    """Switch verbose mode for this process and the processes it starts."""
    os.environ[VERBOSE_ENV] = "1" if on else "0"
    quiet_libraries()


def quiet_libraries() -> None:
    """Library loggers at ERROR (or back to their defaults in verbose mode)."""
    level = logging.NOTSET if is_verbose() else logging.ERROR
    for name in ("imageio_ffmpeg", "absl"):
        logging.getLogger(name).setLevel(level)


_SILENCED = threading.Lock()  # guards the two below: threads may silence at once (a setup thread beside tracking)
_silenced_depth = 0
_silenced_saved: int | None = None  # the real fd 2, while silenced


@contextlib.contextmanager
def native_stderr_silenced():
    """Send what native code writes to fd 2 to /dev/null for the duration (nothing happens in verbose mode).

    Python's own ``sys.stderr`` is flushed first, so nothing written before is lost. Thread-safe: the first of
    overlapping callers redirects fd 2 and the last one restores it (two callers each saving and restoring fd 2
    could leave it on /dev/null for good); Python's own writes during the overlap are silenced too.
    """
    global _silenced_depth, _silenced_saved
    if is_verbose():
        yield
        return
    with _SILENCED:
        if _silenced_depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no fd 2 (some embedded interpreters): nothing to silence
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _silenced_saved = saved
        _silenced_depth += 1
    try:
        yield
    finally:
        with _SILENCED:
            _silenced_depth -= 1
            if _silenced_depth == 0 and _silenced_saved is not None:
                with contextlib.suppress(OSError, ValueError):
                    sys.stderr.flush()
                os.dup2(_silenced_saved, 2)
                os.close(_silenced_saved)
                _silenced_saved = None
