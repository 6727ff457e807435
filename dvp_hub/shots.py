"""Real footage before training: shot changes (cuts, splices) and black bars (pillarbox / letterbox).

Deep Video Portraits trains on one continuous shot of the target: a space-time window that spans a
cut would teach the generator that the person teleports. `FrameProbe` watches the frames as the
tracker decodes them (no second decode): a small grey thumbnail per frame for the picture change
between consecutive frames, and the brightest value of every row and column for the picture box.
`find_cuts` then combines the picture change with the jump of the tracked face (its position and
its scale, the inter-ocular distance) between consecutive frames; `split_shots` turns cuts into
``[start, stop)`` shots.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .face import topology as topo

THUMB = 64  # thumbnail side (pixels) for the picture change
BLACK = 24  # a row or column never brighter than this (0-255) over the clip is a bar


class FrameProbe:
    """Wraps an iterable of ``H x W x 3`` uint8 frames; records what `find_cuts` and `picture_box` need."""

    def __init__(self, frames):
        self._frames = frames
        self.changes: list[float] = [0.0]  # mean absolute grey change to the previous frame, 0-255
        self._prev = None
        self._col = None  # brightest grey value per column over the clip
        self._row = None

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self):
        for frame in self._frames:
            grey = frame.mean(2, dtype=np.float32) if frame.ndim == 3 else frame.astype(np.float32)
            col, row = grey.max(0), grey.max(1)
            self._col = col if self._col is None else np.maximum(self._col, col)
            self._row = row if self._row is None else np.maximum(self._row, row)
            thumb = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
            if self._prev is not None:
                self.changes.append(float(np.abs(thumb - self._prev).mean()))
            self._prev = thumb
            yield frame

    def picture_box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)``: the part of the frame that is ever brighter than black (bars excluded)."""
        if self._col is None:
            raise ValueError("FrameProbe.picture_box: no frame has been read yet")
        return _box(self._col, self._row)


def _span(profile: np.ndarray) -> tuple[int, int]:
    lit = np.nonzero(profile > BLACK)[0]
    if len(lit) == 0:
        return 0, len(profile)
    return int(lit[0]), int(lit[-1]) + 1


def _box(col: np.ndarray, row: np.ndarray) -> tuple[int, int, int, int]:
    x0, x1 = _span(col)
    y0, y1 = _span(row)
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Shots:
    """The shots of a clip and the one kept for training.

    cuts: frames that start a new shot (a cut lies between ``c - 1`` and ``c``).
    shots: ``[start, stop)`` of every shot, in order.
    kept: the index of the kept shot in ``shots``.
    """

    cuts: tuple[int, ...]
    shots: tuple[tuple[int, int], ...]
    kept: int

    @property
    def start(self) -> int:
        return self.shots[self.kept][0]

    @property
    def stop(self) -> int:
        return self.shots[self.kept][1]

    def dropped(self) -> list[list[int]]:
        """``[start, stop)`` ranges of the clip that are not in the kept shot."""
        n = self.shots[-1][1]
        return [r for r in ([0, self.start], [self.stop, n]) if r[1] > r[0]]

    def as_dict(self) -> dict:
        return {
            "cuts": list(self.cuts),
            "shots": [list(s) for s in self.shots],
            "kept": [self.start, self.stop],
            "dropped": self.dropped(),
        }


def _isolation(x: np.ndarray) -> np.ndarray:
    """``x[t]`` over the largest of its four neighbours ``x[t-2..t+2]``: a spike stands alone, motion does not."""
    pad = np.pad(x, 2, mode="edge")
    around = np.max([pad[0:-4], pad[1:-3], pad[3:-1], pad[4:]], axis=0)
    return x / np.maximum(around, 1e-6)


def find_cuts(
    changes: np.ndarray, landmarks: np.ndarray, detected: np.ndarray | None = None, min_gap: int = 5
) -> list[int]:
    """Frames ``t`` where a new shot starts: the picture and the face jump between ``t - 1`` and ``t`` alone.

    changes: ``[T]`` mean grey change to the previous frame (`FrameProbe.changes`).
    landmarks: ``[T, 478, 2+]`` tracked landmarks in frame pixels.
    detected: ``[T]`` False where the tracker interpolated.

    Fast motion (a nod, a grimace) changes the picture over several frames; a cut or a splice changes it
    between two frames only. A frame is a cut when its picture change is 4x the largest of its four
    neighbours' and 4x the clip's median, and the face jumped alone too (its move plus its scale change,
    relative to the inter-ocular distance, 3x its neighbours'), or the face was lost there; or when the
    picture changed completely (a new scene: over 40 grey levels on average).
    """
    changes = np.asarray(changes, np.float64)
    n = len(changes)
    if n < 3:
        return []
    iod = topo.interocular_distance(landmarks[..., :2]).astype(np.float64)
    centre = landmarks[..., :2].mean(1).astype(np.float64)
    move = np.r_[0, np.linalg.norm(np.diff(centre, axis=0), axis=1) / np.maximum(iod[1:], 1e-6)]
    move += np.r_[0, np.abs(np.diff(np.log(np.maximum(iod, 1e-6))))]  # a zoom moves the face too
    base = float(np.median(changes[1:]))
    picture = (_isolation(changes) > 4) & (changes > 4 * max(base, 0.25))
    face = _isolation(move) > 3
    if detected is not None:  # where the face was lost, its landmarks cannot vouch for a jump: trust the picture
        face |= ~np.r_[True, detected[1:] & detected[:-1]]
    candidates = np.nonzero((picture & face) | (changes > 40.0))[0]
    cuts: list[int] = []
    for t in candidates:
        if t >= 1 and (not cuts or t - cuts[-1] >= min_gap):
            cuts.append(int(t))
    return cuts


def split_shots(num_frames: int, cuts: list[int], keep: str | int = "longest") -> Shots:
    """Shots between ``cuts``; ``keep`` the longest (the first of equals) or the shot with that index."""
    bounds = [0, *[c for c in cuts if 0 < c < num_frames], num_frames]
    shots = tuple((a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
    if keep == "longest":
        kept = int(np.argmax([b - a for a, b in shots]))
    else:
        kept = int(keep)
        if not 0 <= kept < len(shots):
            raise ValueError(f"shot {kept} does not exist: the clip has {len(shots)} shot(s) (0-{len(shots) - 1})")
    return Shots(tuple(int(c) for c in cuts), shots, kept)
