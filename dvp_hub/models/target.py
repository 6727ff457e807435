"""`PortraitTarget`: everything the pipeline needs to know about a target person.

A component like the generator (``ModelMixin`` + ``ConfigMixin``): the config holds the crop, camera,
resolution and sizes; the weights file holds the identity shape, albedo and the per-frame
parameters of the training sequence (pose, expression, gaze, lighting), which dubbing replays.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..face.model import Camera
from ..face.sequence import FaceSequence
from ..render.crop import Crop

_PER_FRAME = {
    "rotation": (3,),
    "translation": (3,),
    "gaze": (2, 2),
    "eye_openness": (2,),
    "sh": (9, 3),
    "landmarks": (478, 2),
}


class PortraitTarget(ModelMixin, ConfigMixin):
    """The target person's face model and training sequence.

    Args:
        num_frames: frames of the target's training sequence.
        num_expression: expression coefficients per frame.
        resolution: the generator's resolution (crop side in pixels after resizing).
        crop: ``[x0, y0, size]`` the fixed square crop in the target video's pixels.
        camera: ``[focal, cx, cy, width, height]`` of the target video.
        fps: the target video's frame rate.
        reference_frame: the target frame whose head pose reenactment starts from.
        train_frames: frames ``[0, train_frames)`` were trained on; the rest are validation frames.
        name: a short display name.
        source_video: the file name of the video the target was trained on ("" when unknown).
        source_frames: ``[start, stop)`` the frames of that video the sequence holds (the shot kept by
            `training/prepare_target.py`): target frame ``i`` is video frame ``start + i``.
    """

    @register_to_config
    def __init__(
        self,
        num_frames: int = 1,
        num_expression: int = 64,
        resolution: int = 256,
        crop: tuple[float, float, float] = (0.0, 0.0, 256.0),
        camera: tuple[float, float, float, int, int] = (256.0, 128.0, 128.0, 256, 256),
        fps: float = 30.0,
        reference_frame: int = 0,
        train_frames: int = 1,
        name: str = "target",
        source_video: str = "",
        source_frames: tuple[int, int] | None = None,
    ):
        super().__init__()
        if not 1 <= num_frames <= 1_000_000 or not 1 <= num_expression <= 1024:
            raise ValueError(f"absurd target sizes: num_frames={num_frames}, num_expression={num_expression}")
        self.register_buffer("identity", torch.zeros(478, 3))
        self.register_buffer("albedo", torch.zeros(478, 3))
        self.register_buffer("gaze_neutral", torch.zeros(2, 2))
        self.register_buffer("expression", torch.zeros(num_frames, num_expression))
        for k, shape in _PER_FRAME.items():
            self.register_buffer(k, torch.zeros(num_frames, *shape))
        self._dummy = nn.Parameter(torch.zeros(()), requires_grad=False)  # lets ModelMixin find a dtype

    @staticmethod
    def most_frontal(seq: FaceSequence, train_frames: int | None = None) -> int:
        """The training frame with the smallest rotation away from the median pose (the default reference frame)."""
        rot = seq.rotation[: train_frames or len(seq)]
        return int(np.argmin(np.linalg.norm(rot - np.median(rot, 0), axis=-1)))

    @classmethod
    def from_sequence(
        cls,
        seq: FaceSequence,
        crop: Crop,
        resolution: int,
        train_frames: int | None = None,
        name: str = "target",
        reference_frame: int | None = None,
        source_video: str = "",
        source_frames: tuple[int, int] | None = None,
    ) -> "PortraitTarget":
        cam = seq.camera
        if reference_frame is None:
            reference_frame = cls.most_frontal(seq, train_frames)
        target = cls(
            num_frames=len(seq),
            num_expression=seq.expression.shape[1],
            resolution=resolution,
            crop=tuple(crop.as_list()),
            camera=(cam.focal, cam.cx, cam.cy, cam.width, cam.height),
            fps=float(seq.fps),
            reference_frame=reference_frame,
            train_frames=train_frames or len(seq),
            name=name,
            source_video=source_video,
            source_frames=tuple(source_frames) if source_frames is not None else (0, len(seq)),
        )
        with torch.no_grad():
            for k in ("identity", "albedo", "gaze_neutral", "expression", *_PER_FRAME):
                getattr(target, k).copy_(torch.from_numpy(np.asarray(getattr(seq, k), np.float32)))
        return target

    @property
    def source_start(self) -> int:
        """The video frame of target frame 0 (0 for targets exported before shots were recorded)."""
        frames = self.config.get("source_frames")
        return int(frames[0]) if frames else 0

    @property
    def crop(self) -> Crop:
        return Crop.from_list(self.config.crop)

    @property
    def camera(self) -> Camera:
        f, cx, cy, w, h = self.config.camera
        return Camera(float(f), float(cx), float(cy), int(w), int(h))

    def to_sequence(self) -> FaceSequence:
        """The training sequence as a `FaceSequence` (float64 numpy)."""

        def a(name):
            return getattr(self, name).detach().float().cpu().numpy().astype(np.float64)

        n = self.config.num_frames
        return FaceSequence(
            camera=self.camera,
            rotation=a("rotation"),
            translation=a("translation"),
            identity=a("identity"),
            expression=a("expression"),
            gaze=a("gaze"),
            gaze_neutral=a("gaze_neutral"),
            eye_openness=a("eye_openness"),
            albedo=a("albedo"),
            sh=a("sh"),
            landmarks=a("landmarks"),
            detected=np.ones(n, bool),
            fps=self.config.fps,
        )
