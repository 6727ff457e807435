"""The Gradio Space (a package: `common` <- `handlers`, `live_tab` <- `app`; no cycle).

Imported here, in the main thread: the handlers run in Gradio's worker threads, and two of them importing
diffusers for the first time at once can see a half-initialised module.
"""

from .app import build_demo, launch
from .handlers import SideBySide, edit, model_card, reenact, verify

__all__ = ["build_demo", "launch", "reenact", "edit", "verify", "model_card", "SideBySide"]
