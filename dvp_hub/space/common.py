"""What the Space's tabs share: limits, the consent text, target loading, ZeroGPU's decorator, visitor errors."""

from __future__ import annotations

import os
import threading

import gradio as gr
from diffusers.utils import logging as dlogging

from ..errors import DVPError
from ..logs import is_verbose
from ..pipelines.pipeline_dvp import DeepVideoPortraitPipeline
from ..pipelines.target_folder import is_hub_id
from ..targets import list_targets
from ..video import probe_video

MAX_SECONDS = float(os.environ.get("DVP_MAX_SECONDS", 60))
MAX_MB = float(os.environ.get("DVP_MAX_MB", 200))
CONSENT = "I have the right to use this video, and I understand the result is synthetic and labelled as such."
POSE_CONTROLS = ("yaw", "pitch", "roll")
EDIT_CONTROLS = ("jaw_open", "smile", "brows", "blink")

_PIPES: dict = {}
_LOCK = threading.Lock()


def gpu(fn=None, **kwargs):
    """ZeroGPU's decorator when available (Hugging Face Spaces), else the function itself."""
    try:
        import spaces  # type: ignore  # lazy: optional dependency (ZeroGPU's, on Hugging Face Spaces only)

        deco = spaces.GPU(**kwargs)
    except Exception:  # noqa: BLE001 - not on a Space

        def deco(f):
            return f

    return deco(fn) if fn is not None else deco


def user_error(message: str) -> gr.Error:
    """A message for the visitor: shown in the page, no traceback in the server log (unless DVP_VERBOSE)."""
    return gr.Error(message, print_exception=is_verbose())


def target_choices() -> list[str]:
    """The bundled demo target, then the targets of the local targets folder by name (`dvp_hub.targets`)."""
    return ["demo", *list_targets()]


def get_pipeline(target: str):
    """Load a target once per process (thread-safe; diffusers' loading bar off, it clashes with gr.Progress)."""
    with _LOCK:
        if target not in _PIPES:
            dlogging.disable_progress_bar()
            try:
                _PIPES[target] = DeepVideoPortraitPipeline.from_pretrained(target, local_paths=False)
            finally:
                dlogging.enable_progress_bar()
        return _PIPES[target]


def pick_target(choice: str, hub_id: str) -> str:
    """The Hub id typed by the visitor, else the picked target. A visitor names a listed target or a Hub id, never a
    path on the server (raises DVPError, and the message never says what exists there)."""
    typed = (hub_id or "").strip()
    if typed:
        if not is_hub_id(typed):
            raise DVPError(f"{typed[:100]!r} is not a Hub repo id: type owner/name, or pick a target from the list.")
        return typed
    choice = choice or "demo"
    if choice not in target_choices():
        raise DVPError("Pick a target from the list, or type a Hub repo id (owner/name).")
    return choice


def check_source(path: str | None) -> None:
    """Refuse missing, oversized, overlong or unreadable uploads with a message (raises DVPError)."""
    if not path:
        raise DVPError("Upload or record a source video first.")
    mb = os.path.getsize(path) / 2**20
    if mb > MAX_MB:
        raise DVPError(f"The video is {mb:.0f} MB; the limit is {MAX_MB:.0f} MB. Upload a shorter or smaller clip.")
    info = probe_video(path)
    if info.duration > MAX_SECONDS:
        raise DVPError(
            f"The video lasts {info.duration:.3g} s; the limit is {MAX_SECONDS:g} s. Trim it and try again."
        )


def user_names(message: str, upload: str | None) -> str:
    """The message with Gradio's temporary upload path replaced by the file's own name (Gradio keeps the
    uploaded file's original name as the last part of its cache path)."""
    if upload:
        message = message.replace(str(upload), os.path.basename(str(upload)))
    return message
