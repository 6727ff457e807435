"""The fixed crop of a target sequence: one square, constant over the clip.

Deep Video Portraits synthesises the whole portrait (head, hair, upper torso and background), so
the crop is centred a little below the face and spans ``scale`` times the face height plus the
range the face moves over the clip. It is applied identically to frames (`Crop.apply`) and to renders
(through `Camera.crop`). The square is kept inside the picture (black bars excluded) where it fits;
where it does not, the part outside the frame or picture is black padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..face.model import Camera

SCALE = 2.6  # the square's side in face heights (plus the face's motion): hair, shoulders, some background
MIN_SCALE = 1.8  # the tightest square before the picture's edge makes it pad


@dataclass(frozen=True)
class Crop:
    """Square crop ``[x0, x0 + size) x [y0, y0 + size)`` in source-frame pixels."""

    x0: float
    y0: float
    size: float

    def as_list(self) -> list[float]:
        return [float(self.x0), float(self.y0), float(self.size)]

    @classmethod
    def from_list(cls, values) -> "Crop":
        x0, y0, size = (float(v) for v in values)
        if not size > 0:
            raise ValueError(f"crop size must be positive, got {size}")
        return cls(x0, y0, size)

    @classmethod
    def for_landmarks(
        cls,
        landmarks: np.ndarray,
        width: int,
        height: int,
        scale: float = SCALE,
        down: float = 0.2,
        box: tuple[int, int, int, int] | None = None,
        min_scale: float = MIN_SCALE,
    ) -> "Crop":
        """The crop for a clip's ``[T, 478, 2]`` landmarks in a ``width x height`` frame.

        box: ``(x0, y0, x1, y1)`` the picture inside black bars (`shots.FrameProbe.picture_box`); the
        whole frame by default. The square spans ``scale`` face heights plus the face's motion, at most
        the picture's shorter side, and is shifted to stay inside the picture. Only where the picture is
        tighter than ``min_scale`` face heights plus the motion (a tight face crop, the head touching
        the frame's edge) is the square larger than the picture: it then covers the whole picture, as near the
        face's centre as that allows, and the part outside the picture is padded black (`padding` says how much).
        """
        bx0, by0, bx1, by1 = box if box is not None else (0, 0, width, height)
        min_scale = min(min_scale, scale)  # a tight crop asked for is never widened
        lo = landmarks.min(1)  # [T, 2]
        hi = landmarks.max(1)
        centre = (lo + hi) / 2
        face_h = float(np.median(hi[:, 1] - lo[:, 1]))
        motion = float(max(np.ptp(centre[:, 0]), np.ptp(centre[:, 1])))
        size = min(scale * face_h + motion, float(min(bx1 - bx0, by1 - by0)))
        size = max(size, min_scale * face_h + motion)
        cx, cy = np.median(centre, axis=0)
        cy += down * face_h

        def place(c, lo_, hi_):  # inside the picture where it fits; else covering all of it, as centred as allowed
            a, b = sorted((lo_, hi_ - size))
            return float(np.clip(c - size / 2, a, b))

        return cls(place(cx, bx0, bx1), place(cy, by0, by1), float(size))

    def padding(self, box: tuple[int, int, int, int]) -> dict[str, float]:
        """Source pixels of the square outside the picture ``box`` on each side (0 where it is inside)."""
        x0, y0, x1, y1 = box
        return {
            "left": round(max(0.0, x0 - self.x0), 1),
            "top": round(max(0.0, y0 - self.y0), 1),
            "right": round(max(0.0, self.x0 + self.size - x1), 1),
            "bottom": round(max(0.0, self.y0 + self.size - y1), 1),
        }

    def cut(self, frame: np.ndarray) -> np.ndarray:
        """The square's pixels of ``frame`` at native size, no resampling (clipped to the frame)."""
        x0, y0 = max(0, int(round(self.x0))), max(0, int(round(self.y0)))
        n = int(round(self.size))
        return frame[y0 : y0 + n, x0 : x0 + n]

    def camera(self, camera: Camera, out_size: int) -> Camera:
        return camera.crop(self.x0, self.y0, self.size, out_size)

    def matrix(self, out_size: int) -> np.ndarray:
        """2 x 3 affine map from frame pixels to crop pixels."""
        s = out_size / self.size
        return np.array([[s, 0, -self.x0 * s], [0, s, -self.y0 * s]], dtype=np.float32)

    def apply(self, frame: np.ndarray, out_size: int) -> np.ndarray:
        """Cut and resize one ``H x W x 3`` frame to ``out_size x out_size``."""
        interp = cv2.INTER_AREA if self.size > out_size else cv2.INTER_LINEAR
        if interp == cv2.INTER_AREA:
            # INTER_AREA is not supported by warpAffine: cut first, then resize.
            x0, y0, sz = int(round(self.x0)), int(round(self.y0)), int(round(self.size))
            h, w = frame.shape[:2]
            pad = ((max(0, -y0), max(0, y0 + sz - h)), (max(0, -x0), max(0, x0 + sz - w)), (0, 0))
            sub = frame[max(0, y0) : y0 + sz, max(0, x0) : x0 + sz]
            if any(p for pp in pad[:2] for p in pp):
                sub = np.pad(sub, pad)
            return cv2.resize(sub, (out_size, out_size), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(
            frame, self.matrix(out_size), (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
