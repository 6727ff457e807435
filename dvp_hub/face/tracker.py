"""Face tracking: mediapipe face mesh with iris refinement, 478 landmarks per frame.

One subject per video. The face mesh runs in tracking mode (it re-uses the previous frame's face
region), which keeps following the same person when a second face enters the frame; if the
tracked face ever jumps away from where the track was, the frame is re-detected with several faces
and the one that continues the track is kept.

Small faces (a full-body shot where the face is a few percent of the frame) are tracked, not
rejected: mediapipe's pose model, which sees whole bodies, locates the head, and the face mesh then
runs on an upscaled crop around it that follows the face from frame to frame.

Frames without a detection are filled by linear interpolation of the landmarks and counted; when
the face is missing in most frames the video is refused with a `FaceTrackingError`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import numpy as np

from ..errors import FaceTrackingError
from ..logs import native_stderr_silenced, quiet_libraries
from ..video import VideoReader

os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
quiet_libraries()

ROI_SIZE = 320  # pixels: the upscaled crop the face mesh sees in small-face mode
SMALL_FACE = 0.15  # a face shorter than this fraction of the frame's shorter side is tracked in a crop


SYSTEM_LIBRARIES = {"libGL.so.1": "libgl1", "libglib-2.0.so.0": "libglib2.0-0"}


def import_mediapipe():
    """mediapipe, or one line naming the Debian packages its OpenCV needs when they are missing."""
    try:
        import mediapipe as mp  # lazy: turns a missing system library into one line (tests patch the import)
    except ImportError as err:
        missing = [pkg for lib, pkg in SYSTEM_LIBRARIES.items() if lib in str(err)]
        if missing:
            raise FaceTrackingError(
                f"the face tracker needs system libraries that are missing ({err}); install them with "
                f"`sudo apt-get install -y {' '.join(SYSTEM_LIBRARIES.values())}`."
            ) from None
        raise
    return mp


@dataclass
class FaceTrack:
    """Per-frame landmarks of one subject.

    landmarks: ``[T, 478, 3]`` float32; x, y in pixels of the frame, z (depth relative to the head
        centre, towards the camera negative) in the same pixel scale as x.
    colors: ``[T, 478, 3]`` uint8 RGB, the frame sampled at each landmark.
    detected: ``[T]`` bool, False where the landmarks were interpolated.
    """

    landmarks: np.ndarray
    colors: np.ndarray
    detected: np.ndarray
    width: int
    height: int
    fps: float
    small_face_mode: bool = False
    reassigned_frames: int = 0  # frames where another face was rejected to keep the same subject
    seconds: float = 0.0  # time spent tracking, decode excluded (summed over trackers run side by side)
    stats: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def num_interpolated(self) -> int:
        return int((~self.detected).sum())

    def slice(self, start: int, stop: int | None = None) -> "FaceTrack":
        """Frames ``start..stop-1`` of the track (as `FaceSequence.slice`)."""
        sl = slice(start, stop)
        return replace(self, landmarks=self.landmarks[sl], colors=self.colors[sl], detected=self.detected[sl])


class _QuietGraph:
    """A mediapipe solution whose start-up is silenced (see `dvp_hub.logs`): its native code logs to fd 2
    from background threads while the graph initialises, which finishes only on the first run, so the
    graph runs once on a blank frame inside the silence (a few milliseconds; a blank frame has no face,
    so a tracking graph starts from a fresh detection as before). Runs stay silenced until the first one
    that finds a face: the landmark stages log once then."""

    def __init__(self, factory, **kwargs):
        with native_stderr_silenced():
            self._graph = factory(**kwargs)
            self._graph.process(np.zeros((64, 64, 3), np.uint8))
        self._found = False

    def process(self, frame: np.ndarray):
        if self._found:
            return self._graph.process(frame)
        with native_stderr_silenced():  # the landmark stages log once, on their first face
            res = self._graph.process(frame)
        self._found = bool(getattr(res, "multi_face_landmarks", None) or getattr(res, "pose_landmarks", None))
        return res

    def close(self) -> None:
        self._graph.close()


def tracking_mesh(mp=None) -> _QuietGraph:
    """The face mesh in tracking (video) mode with iris refinement, one face: what follows a subject."""
    if mp is None:
        with native_stderr_silenced():
            mp = import_mediapipe()
    return _QuietGraph(
        mp.solutions.face_mesh.FaceMesh,
        static_image_mode=False,
        max_num_faces=1,
        refine_landmarks=True,
        min_detection_confidence=0.5,
        min_tracking_confidence=0.5,
    )


def _sample_colors(frame: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear sample of ``frame`` (H, W, 3 uint8) at ``xy`` (N, 2) -> (N, 3) uint8 (compact: kept per frame)."""
    h, w = frame.shape[:2]
    x = np.clip(xy[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(xy[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    f = frame.astype(np.float32)
    c = (
        f[y0, x0] * (1 - fx) * (1 - fy)
        + f[y0, x0 + 1] * fx * (1 - fy)
        + f[y0 + 1, x0] * (1 - fx) * fy
        + f[y0 + 1, x0 + 1] * fx * fy
    )
    return (c + 0.5).astype(np.uint8)


def _to_pixels(face, x0: float, y0: float, scale_x: float, scale_y: float) -> np.ndarray:
    lm = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
    out = np.empty_like(lm)
    out[:, 0] = x0 + lm[:, 0] * scale_x
    out[:, 1] = y0 + lm[:, 1] * scale_y
    out[:, 2] = lm[:, 2] * scale_x
    return out


def _center_size(lm: np.ndarray) -> tuple[np.ndarray, float]:
    lo, hi = lm[:, :2].min(0), lm[:, :2].max(0)
    return (lo + hi) / 2, float(max(hi - lo))


def continues(lm: np.ndarray, last: tuple[np.ndarray, float]) -> bool:
    """Whether landmarks ``lm`` continue the face ``last`` (its centre and size, `_center_size`): the centre within
    0.6 of its size, the size within half to twice; a face elsewhere is another person or a jump."""
    centre, size = _center_size(lm)
    return bool(np.linalg.norm(centre - last[0]) <= 0.6 * last[1] and 0.5 < size / last[1] < 2.0)


@dataclass
class Following:
    """Where a track stands after the frames it has seen (what `FaceTracker.follow` carries from frame to frame):
    each frame's landmarks and colours (None: no face), the last face's centre and size and its frame, the small-face
    crop being followed, and counts."""

    lms: list = field(default_factory=list)
    cols: list = field(default_factory=list)
    last: tuple | None = None  # centre, size of the last detected face
    last_idx: int = -(10**9)
    roi: tuple | None = None  # small-face mode: centre, face size
    small_mode: bool = False
    reassigned: int = 0
    misses_since_search: int = 0
    busy: float = 0.0
    width: int = 0
    height: int = 0


class FaceTracker:
    """Track one face through a video; see the module docstring for the strategy.

    max_missing_fraction: refuse videos where the face is missing in more than this fraction.
    """

    def __init__(self, max_missing_fraction: float = 0.5):
        with native_stderr_silenced():  # importing mediapipe logs too
            mp = import_mediapipe()
        self._mp = mp
        self.max_missing_fraction = max_missing_fraction
        self._mesh = tracking_mesh(mp)
        self._roi_mesh = None
        self._multi = None
        self._pose = None

    # -- helpers that create the heavier graphs only when a video needs them
    def _multi_mesh(self):
        if self._multi is None:
            self._multi = _QuietGraph(
                self._mp.solutions.face_mesh.FaceMesh,
                static_image_mode=True,
                max_num_faces=4,
                refine_landmarks=True,
                min_detection_confidence=0.4,
            )
        return self._multi

    def _locate_head(self, frame: np.ndarray) -> tuple[np.ndarray, float] | None:
        """Find the head of a person with the pose model: (centre xy, head size in px) or None."""
        if self._pose is None:
            self._pose = _QuietGraph(self._mp.solutions.pose.Pose, static_image_mode=True, model_complexity=1)
        res = self._pose.process(frame)
        if res.pose_landmarks is None:
            return None
        h, w = frame.shape[:2]
        pts = np.array([(p.x * w, p.y * h, p.visibility) for p in res.pose_landmarks.landmark[:11]])
        good = pts[pts[:, 2] > 0.3]
        if len(good) < 3:
            return None
        size = max(float(np.ptp(good[:, 0])), float(np.ptp(good[:, 1])) * 1.5, 8.0) * 1.6
        return pts[0, :2], size

    def _track_roi(self, frame: np.ndarray, center: np.ndarray, size: float) -> np.ndarray | None:
        if self._roi_mesh is None:
            self._roi_mesh = _QuietGraph(
                self._mp.solutions.face_mesh.FaceMesh,
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=True,
                min_detection_confidence=0.4,
            )
        import cv2  # lazy: cv2 needs libGL; at the top a missing one would skip import_mediapipe's one-line error

        side = max(size * 2.2, 32.0)
        x0, y0 = center[0] - side / 2, center[1] - side / 2
        scale = ROI_SIZE / side
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], dtype=np.float32)
        crop = cv2.warpAffine(frame, m, (ROI_SIZE, ROI_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        res = self._roi_mesh.process(crop)
        if not res.multi_face_landmarks:
            return None
        return _to_pixels(res.multi_face_landmarks[0], x0, y0, side, side)

    def track(
        self,
        frames: Iterable[np.ndarray],
        fps: float = 30.0,
        num_frames: int | None = None,
        name: str = "video",
        progress: Callable[[int, int | None], None] | None = None,
    ) -> FaceTrack:
        """Track the face through ``frames`` (an iterable of H x W x 3 uint8 RGB arrays)."""
        return self.finish(self.follow(frames, Following(), progress, num_frames), fps, name)

    def follow(self, frames: Iterable[np.ndarray], state: Following, progress=None, total=None) -> Following:
        """``state`` carried on through ``frames``, the frames that follow the ones it has seen (a new `Following`:
        from a fresh detection); ``progress(done, total)`` after each frame, ``done`` counted from this call's
        first. Returns ``state``."""
        st = state
        for k, frame in enumerate(frames):
            i = len(st.lms)
            t0 = time.perf_counter()
            st.height, st.width = frame.shape[:2]
            lm = None
            if st.roi is not None:
                lm = self._track_roi(frame, *st.roi)
            else:
                res = self._mesh.process(frame)
                if res.multi_face_landmarks:
                    lm = _to_pixels(res.multi_face_landmarks[0], 0, 0, st.width, st.height)
            if lm is not None and st.last is not None and i - st.last_idx < 30 and not continues(lm, st.last):
                lm = self._continue_track(frame, st.last)
                st.reassigned += 1
            if (
                lm is None
                and (st.roi is None or st.misses_since_search >= 5)
                and (st.last is None or st.small_mode or i - st.last_idx > 2)
            ):
                # Nothing at full frame: look for a (small) head with the pose model.
                head = self._locate_head(frame)
                st.misses_since_search = 0
                if head is not None:
                    lm = self._track_roi(frame, head[0], head[1])
                    if lm is not None:
                        st.small_mode = True
            if lm is not None:
                c, s = _center_size(lm)
                st.last, st.last_idx = (c, s), i
                st.misses_since_search = 0
                if st.small_mode or s < SMALL_FACE * min(st.width, st.height):
                    st.small_mode = True
                    st.roi = (c, s)
                st.lms.append(lm)
                st.cols.append(_sample_colors(frame, lm[:, :2]))
            else:
                st.misses_since_search += 1
                st.lms.append(None)
                st.cols.append(None)
            st.busy += time.perf_counter() - t0
            if progress is not None:
                progress(k + 1, total)
        return st

    def _continue_track(self, frame: np.ndarray, last: tuple[np.ndarray, float]) -> np.ndarray | None:
        """Re-detect several faces and keep the one nearest the track (or none if all are far)."""
        h, w = frame.shape[:2]
        res = self._multi_mesh().process(frame)
        best, best_d = None, np.inf
        for face in res.multi_face_landmarks or []:
            lm = _to_pixels(face, 0, 0, w, h)
            d = np.linalg.norm(_center_size(lm)[0] - last[0])
            if d < best_d and continues(lm, last):
                best, best_d = lm, d
        return best

    def finish(self, state: Following, fps: float, name: str) -> FaceTrack:
        """The `FaceTrack` of what ``state`` followed: frames without a face interpolated, or `FaceTrackingError`
        where most frames have none."""
        lms, cols, width, height = state.lms, state.cols, state.width, state.height
        small_mode, reassigned, busy = state.small_mode, state.reassigned, state.busy
        t = len(lms)
        if t == 0:
            raise FaceTrackingError(f"{name}: the video has no frames.")
        detected = np.array([x is not None for x in lms])
        n_det = int(detected.sum())
        if n_det == 0:
            raise FaceTrackingError(
                f"{name}: no face found in any of its {t} frames; use a video that shows one person's face, "
                "frontal and well lit."
            )
        if (t - n_det) / t > self.max_missing_fraction:
            raise FaceTrackingError(
                f"{name}: a face was found in only {n_det} of {t} frames ({100 * n_det / t:.0f}%); use a clip "
                "where the face stays visible in most frames."
            )
        idx = np.flatnonzero(detected)
        lm_arr = np.zeros((t, 478, 3), np.float32)
        col_arr = np.zeros((t, 478, 3), np.uint8)
        for i in idx:
            lm_arr[i] = lms[i]
            col_arr[i] = cols[i]
            lms[i] = cols[i] = None  # free as we go: no second full copy
        if n_det < t:
            miss = np.flatnonzero(~detected)
            flat = lm_arr.reshape(t, -1)
            for j in range(flat.shape[1]):
                flat[miss, j] = np.interp(miss, idx, flat[idx, j])
            nearest = idx[np.clip(np.searchsorted(idx, miss), 0, len(idx) - 1)]
            col_arr[miss] = col_arr[nearest]
        return FaceTrack(
            landmarks=lm_arr,
            colors=col_arr,
            detected=detected,
            width=width,
            height=height,
            fps=fps,
            small_face_mode=small_mode,
            reassigned_frames=reassigned,
            seconds=busy,
        )

    def close(self) -> None:
        for g in (self._mesh, self._roi_mesh, self._multi, self._pose):
            if g is not None:
                g.close()

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track_video(path: str, max_frames: int | None = None, progress=None) -> FaceTrack:
    """Track the face in a video file (streaming: frames are decoded one at a time)."""
    reader = VideoReader(path, max_frames=max_frames)
    with FaceTracker() as tracker:
        return tracker.track(reader, fps=reader.fps, num_frames=len(reader), name=str(path), progress=progress)
