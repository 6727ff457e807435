"""`FaceSequence`: the Deep Video Portraits face parameters of every frame of a clip.

Saved and loaded as safetensors (tensors plus string metadata); nothing is pickled.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save_file

from ..errors import ParameterFileError
from .model import Camera

FORMAT = "dvp_hub.face_sequence"
VERSION = 1


@dataclass
class FaceSequence:
    """Per-frame face parameters (the paper's representation) of one subject.

    camera: pinhole of the source frames (`Camera`, focal-length convention in `face.model`).
    rotation: ``[T, 3]`` head rotation, axis-angle (radians), canonical head frame -> camera.
    translation: ``[T, 3]`` head translation in centimetres (camera frame).
    identity: ``[478, 3]`` neutral face shape in the canonical head frame (cm).
    expression: ``[T, K]`` coefficients of the linear expression basis (K = 64 by default).
    gaze: ``[T, 2, 2]`` per eye (right, left) iris offset from the eye centre in eye widths (x, y).
    gaze_neutral: ``[2, 2]`` the gaze at which ``identity`` holds its irises.
    eye_openness: ``[T, 2]`` lid gap over eye width (blinks), measured from the tracked landmarks.
    albedo: ``[478, 3]`` per-vertex RGB reflectance.
    sh: ``[T, 9, 3]`` spherical-harmonics illumination, 27 coefficients a frame.
    landmarks: ``[T, 478, 2]`` the tracked 2D landmarks in pixels (for crops and metrics).
    detected: ``[T]`` False where the landmarks were interpolated.
    fps: frame rate of the clip.
    info: free-form provenance and fit statistics (JSON-serialisable).
    """

    camera: Camera
    rotation: np.ndarray
    translation: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    gaze: np.ndarray
    gaze_neutral: np.ndarray
    eye_openness: np.ndarray
    albedo: np.ndarray
    sh: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray
    fps: float
    info: dict = field(default_factory=dict)

    _PER_FRAME = ("rotation", "translation", "expression", "gaze", "eye_openness", "sh", "landmarks", "detected")
    _ARRAYS = (
        "rotation",
        "translation",
        "identity",
        "expression",
        "gaze",
        "gaze_neutral",
        "eye_openness",
        "albedo",
        "sh",
        "landmarks",
        "detected",
    )

    def __len__(self) -> int:
        return int(self.rotation.shape[0])

    @property
    def num_frames(self) -> int:
        return len(self)

    def slice(self, start: int, stop: int | None = None) -> "FaceSequence":
        """Frames ``start:stop`` (per-frame arrays sliced, the rest shared)."""
        return replace(self, **{k: getattr(self, k)[start:stop] for k in self._PER_FRAME})

    def index(self, idx: np.ndarray) -> "FaceSequence":
        """The frames at the integer positions ``idx``."""
        return replace(self, **{k: getattr(self, k)[idx] for k in self._PER_FRAME})

    def arrays(self) -> dict[str, np.ndarray]:
        """Every array field by name (what `save` writes, with the camera, fps and info beside them)."""
        return {k: np.asarray(getattr(self, k)) for k in self._ARRAYS}

    def save(self, path: str | os.PathLike) -> str:
        """Write a safetensors file atomically."""
        path = str(path)
        tensors = {}
        for k, a in self.arrays().items():
            tensors[k] = a.astype(np.uint8) if a.dtype == bool else np.ascontiguousarray(a, dtype=np.float32)
        cam = self.camera
        meta = {
            "format": FORMAT,
            "version": str(VERSION),
            "fps": repr(float(self.fps)),
            "camera": json.dumps([cam.focal, cam.cx, cam.cy, cam.width, cam.height]),
            "info": json.dumps(self.info),
        }
        tmp = path + ".tmp"
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FaceSequence":
        path = str(path)
        if not os.path.isfile(path):
            raise ParameterFileError(
                f"{path}: no such parameter file; create one with `dvp track VIDEO --output {path}`."
            )
        try:
            with safe_open(path, "np") as f:
                meta = f.metadata() or {}
            data = load_file(path)
        except (SafetensorError, OSError, ValueError) as err:
            raise ParameterFileError(
                f"{path}: not a readable safetensors file ({err}); re-create it with `dvp track`."
            )
        if meta.get("format") != FORMAT:
            raise ParameterFileError(f"{path}: not a dvp_hub face-parameter file; create one with `dvp track`.")
        missing = [k for k in cls._ARRAYS if k not in data]
        if missing:
            raise ParameterFileError(f"{path}: missing arrays {missing}; re-create it with `dvp track`.")
        focal, cx, cy, w, h = json.loads(meta["camera"])
        kw = {k: data[k].astype(bool) if k == "detected" else data[k].astype(np.float64) for k in cls._ARRAYS}
        return cls(
            camera=Camera(focal, cx, cy, int(w), int(h)),
            fps=float(meta["fps"]),
            info=json.loads(meta.get("info", "{}")),
            **kw,
        )

    def __eq__(self, other) -> bool:  # arrays compared exactly
        if not isinstance(other, FaceSequence):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f.name), getattr(other, f.name))
            if isinstance(getattr(self, f.name), np.ndarray)
            else getattr(self, f.name) == getattr(other, f.name)
            for f in fields(self)
        )
