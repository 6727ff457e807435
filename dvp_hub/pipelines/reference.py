"""The target's full frame for paste-back: its reference frame, read from the target folder's reference file.

A target folder may hold ``reference.png`` / ``reference.jpg`` (the reference frame itself, what a shipped
target carries: a few hundred KB) or ``reference.mp4`` (the target's own video, from which its reference frame is
taken: video frame ``source_start + reference_frame``). Either must match the size the target was fitted on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..errors import InputError
from ..video import VideoReader


def load_background(path: str, width: int, height: int, reference_frame: int) -> np.ndarray:
    """The reference frame ``height x width x 3`` uint8 RGB from ``path`` (an image, or frame ``reference_frame`` of a
    video); `InputError` when it does not fit."""
    if path.lower().endswith((".png", ".jpg", ".jpeg")):
        with Image.open(path) as im:
            frame = np.asarray(im.convert("RGB"))
        size = (frame.shape[1], frame.shape[0])
    else:
        reader = VideoReader(path, max_frames=reference_frame + 1)
        size, frame = (reader.width, reader.height), None
        if size == (width, height):
            for i, f in enumerate(reader):
                if i == reference_frame:
                    frame = f.copy()
            if frame is None:
                raise InputError(f"{path}: shorter than the target's reference frame; give its own video.")
    if size != (width, height):
        raise InputError(
            f"{path}: {size[0]}x{size[1]}, but the target was fitted on {width}x{height} frames; "
            "give the target's own footage."
        )
    return frame


def save_reference(frame: np.ndarray, path: str) -> None:
    """Write a reference frame (``H x W x 3`` uint8 RGB) as PNG: lossless, so paste-back adds no artefacts."""
    Image.fromarray(frame).save(path, optimize=True)
