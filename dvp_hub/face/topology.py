"""Mesh topology of the mediapipe face mesh: triangles, eye rings, irises and lips.

The 468-vertex face mesh ships only its edges (``FACEMESH_TESSELATION``); its triangles are the
3-cliques of that edge graph, less two cliques at the nostrils whose three edges are each shared by
more than two cliques (they are not faces of the surface). The eye openings are holes in the mesh;
`EYE_FILL_TRIANGLES` closes them with a fan so the renderer can draw the eyeballs (gaze map).
Vertices 468-477 are the iris landmarks of ``refine_landmarks=True``: 468 (centre) and 469-472
(ring) for the subject's right eye (image left), 473-477 for the left eye.
"""

from __future__ import annotations

import collections
import itertools
from functools import lru_cache

import numpy as np

NUM_VERTICES = 478
NUM_MESH_VERTICES = 468

# Eye rings in order around the opening; corners first (outer, then inner).
RIGHT_EYE_RING = [33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246]
LEFT_EYE_RING = [263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466]
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
RIGHT_EYE_LIDS = (159, 145)  # upper, lower
LEFT_EYE_LIDS = (386, 374)
RIGHT_IRIS = [468, 469, 470, 471, 472]
LEFT_IRIS = [473, 474, 475, 476, 477]
IRIS = RIGHT_IRIS + LEFT_IRIS
INNER_LIPS = (13, 14)  # upper, lower inner-lip midpoints: mouth opening
MOUTH_CORNERS = (61, 291)
NOSE_TIP = 1
CHIN = 152
FOREHEAD = 10

# Vertices that move little with expression; the rigid head pose is fitted on them.
RIGID_VERTICES = [
    10,
    151,
    9,
    8,
    168,
    6,
    197,
    195,
    5,
    4,
    1,
    19,
    94,
    2,  # midline forehead and nose
    109,
    67,
    103,
    54,
    21,
    162,
    127,
    234,
    93,  # right forehead, temple, cheekbone
    338,
    297,
    332,
    284,
    251,
    389,
    356,
    454,
    323,  # left forehead, temple, cheekbone
    33,
    133,
    263,
    362,  # eye corners
    98,
    327,
    48,
    278,
    64,
    294,
    129,
    358,
    209,
    429,
    49,
    279,
    115,
    344,
    220,
    440,
    45,
    275,  # nose sides
    116,
    345,
    117,
    346,
    118,
    347,
    50,
    280,
    101,
    330,
    36,
    266,
    205,
    425,
    123,
    352,
    137,
    366,  # cheeks
    68,
    298,
    104,
    333,
    69,
    299,
    108,
    337,
    71,
    301,
    63,
    293,
    70,
    300,  # upper forehead
]


@lru_cache(maxsize=1)
def mesh_triangles() -> np.ndarray:
    """``[852, 3]`` int64 triangles of the face mesh, consistently oriented (see module doc)."""
    import mediapipe as mp  # lazy: mediapipe (~1.5 s, needs libGL), only to derive the triangles

    edges = {tuple(sorted(e)) for e in mp.solutions.face_mesh_connections.FACEMESH_TESSELATION}
    adj: dict[int, set[int]] = collections.defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    tris = set()
    for a, b in edges:
        for c in adj[a] & adj[b]:
            tris.add(tuple(sorted((a, b, c))))
    count = collections.Counter(e for t in tris for e in itertools.combinations(t, 2))
    tris = [t for t in tris if not all(count[e] > 2 for e in itertools.combinations(t, 2))]
    return np.array(sorted(tris), dtype=np.int64)


def orient_triangles(triangles: np.ndarray, vertices: np.ndarray) -> np.ndarray:
    """Flip triangles so their normals point towards -z (to the camera) on a frontal face.

    ``vertices``: ``[V, 3]`` canonical positions (x right, y down, z away from the camera).
    """
    v = vertices[triangles]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    flip = n[:, 2] > 0
    out = triangles.copy()
    out[flip] = out[flip][:, [0, 2, 1]]
    return out


def eye_fill_triangles() -> np.ndarray:
    """``[28, 3]`` triangles that close the two eye openings (a fan from the outer corner)."""
    tris = []
    for ring in (RIGHT_EYE_RING, LEFT_EYE_RING):
        for i in range(1, len(ring) - 1):
            tris.append((ring[0], ring[i], ring[i + 1]))
    return np.array(tris, dtype=np.int64)


def interocular_distance(points: np.ndarray) -> np.ndarray:
    """Distance between the iris centres (468, 473) of ``[..., 478, D]`` points."""
    return np.linalg.norm(points[..., 468, :] - points[..., 473, :], axis=-1)


def eye_openness(points: np.ndarray) -> np.ndarray:
    """``[..., 2]`` lid distance over eye width (right, left eye) of ``[..., 478, D]`` points."""
    out = []
    for (up, lo), (c0, c1) in ((RIGHT_EYE_LIDS, RIGHT_EYE_CORNERS), (LEFT_EYE_LIDS, LEFT_EYE_CORNERS)):
        lid = np.linalg.norm(points[..., up, :] - points[..., lo, :], axis=-1)
        width = np.linalg.norm(points[..., c0, :] - points[..., c1, :], axis=-1)
        out.append(lid / np.maximum(width, 1e-6))
    return np.stack(out, axis=-1)


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap over mouth width of ``[..., 478, D]`` points."""
    gap = np.linalg.norm(points[..., INNER_LIPS[0], :] - points[..., INNER_LIPS[1], :], axis=-1)
    width = np.linalg.norm(points[..., MOUTH_CORNERS[0], :] - points[..., MOUTH_CORNERS[1], :], axis=-1)
    return gap / np.maximum(width, 1e-6)
