"""Calibrated int8 activation ranges kept on disk, so that a second run of the same target skips calibrating.

What is kept is the state of the quantizer's activation observers after calibration (`models.int8`): loaded into a
freshly prepared model, it converts to the same int8 model, bit for bit, without a single calibration pass. An
entry is named by a digest of everything its ranges follow from: the float weights it was calibrated for (and for
the refiner, the int8 generator whose output it was calibrated on), the calibration settings, PyTorch's version and
this format's. A file is written whole (a temporary file, then renamed) and one that cannot be read counts as
missing; a folder that cannot be written leaves runs calibrating as before.

The folder: ``$DVP_CACHE/int8``, else ``dvp_hub/int8`` under ``$XDG_CACHE_HOME`` or ``~/.cache``.
``DVP_INT8_CACHE=0`` neither reads nor writes it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

import torch

FORMAT = 1  # bump when what an entry holds, or how a model is prepared for it, changes


def cache_dir() -> str:
    """Where entries live (not created until one is written)."""
    if os.environ.get("DVP_CACHE"):
        return os.path.join(os.path.abspath(os.path.expanduser(os.environ["DVP_CACHE"])), "int8")
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "dvp_hub", "int8")


def enabled() -> bool:
    return os.environ.get("DVP_INT8_CACHE", "1") != "0"


def digest(modules: tuple[torch.nn.Module, ...], *extra) -> str:
    """A hex digest of the modules' parameters and buffers (names, shapes, dtypes and bytes) and of ``extra``."""
    h = hashlib.blake2b(digest_size=20)
    for part in (FORMAT, torch.__version__, *extra):
        h.update(repr(part).encode())
    for m in modules:
        for name, t in m.state_dict().items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _path(key: str) -> str:
    return os.path.join(cache_dir(), f"{key}.safetensors")


def load(key: str) -> dict[str, torch.Tensor] | None:
    """The entry ``key`` (observer state), or None where there is none or it cannot be read."""
    if not enabled() or not os.path.isfile(_path(key)):
        return None
    from safetensors.torch import load_file  # lazy: only a run with int8 reads it

    try:
        return load_file(_path(key))
    except Exception as err:  # noqa: BLE001 - a damaged entry: calibrate again (and overwrite it)
        logging.getLogger("dvp_hub").debug("int8 cache entry %s unreadable: %s", key, err)
        return None


def save(key: str, state: dict[str, torch.Tensor]) -> None:
    """Write the entry ``key`` whole, or nothing (a folder that cannot be written is not an error)."""
    if not enabled():
        return
    from safetensors.torch import save_file  # lazy: as `load`

    tmp = None
    try:
        os.makedirs(cache_dir(), exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".tmp", prefix=".int8-", dir=cache_dir())
        os.close(fd)
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp)
        os.replace(tmp, _path(key))
        tmp = None
    except Exception as err:  # noqa: BLE001 - a read-only or full disk (safetensors raises its own error): no entry
        logging.getLogger("dvp_hub").debug("int8 cache not written (%s)", err)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
