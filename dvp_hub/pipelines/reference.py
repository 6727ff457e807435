"""The target's real footage a target folder carries: its reference frame for paste-back, and its detail bank.

A target folder may hold ``reference.png`` / ``reference.jpg`` (the reference frame itself, what a shipped
target carries: a few hundred KB) or ``reference.mp4`` (the target's own video, from which its reference frame is
taken: video frame ``source_start + reference_frame``). Either must match the size the target was fitted on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..detail_bank import DetailBank
from ..errors import InputError
from ..video import VideoReader
from .finish import face_window


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


def detail_bank_from_video(pipe, video: str) -> DetailBank:
    """The target's `DetailBank` from its own training video (the frames it was trained on, cut as its crop at the
    refined size, in the refiner's face window); `InputError` when the video is not the target's size."""
    cam, cfg = pipe.target.camera, pipe.target.config
    reader = VideoReader(video, max_frames=pipe.target.source_start + int(cfg.train_frames))
    if (reader.width, reader.height) != (cam.width, cam.height):
        raise InputError(
            f"{video}: {reader.width}x{reader.height}, but the target was fitted on {cam.width}x{cam.height}."
        )
    if pipe.refiner is None:
        raise InputError("a detail bank is made for a refined crop: give the target its refiner first.")
    scale = int(pipe.refiner.config.scale)
    size = int(cfg.resolution) * scale
    window = tuple(scale * v for v in face_window(pipe))
    crops = (pipe.target.crop.apply(f, size) for i, f in enumerate(reader) if i >= pipe.target.source_start)
    return DetailBank.build(crops, window, size)
