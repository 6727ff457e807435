"""Build the face model asset: mean face, expression basis and mesh triangles.

    python scripts/build_face_model.py --data ../shared/data --output dvp_hub/face/assets/face_model.safetensors

1. Track several people's talking-head clips with the face mesh (478 landmarks).
2. Generalised Procrustes on the rigid vertices gives the mean face; it is rotated into the canonical
   head frame (x: from the right to the left eye, y: down, z: into the head) and scaled to
   centimetres (iris centres 6.3 cm apart, the adult mean inter-pupillary distance).
3. Each frame, aligned to the mean face, minus its person's median shape, is an expression
   deformation. The iris rows follow the eye corners (gaze is a separate parameter).
4. PCA (SVD of the stacked deformations) gives the expression basis: ``num_components``
   orthonormal directions in R^(478*3) and their standard deviations.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from safetensors.numpy import save_file


from dvp_hub.face import topology as topo  # noqa: E402
from dvp_hub.face.tracker import track_video  # noqa: E402
from dvp_hub.geometry import similarity_align  # noqa: E402

CLIPS = ["talking-d3", "talking-d6", "talking-d9", "talking-d10", "talking-d14", "speech-wda"]
IPD_CM = 6.3


def align_all(shapes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    rig = topo.RIGID_VERTICES
    s, r, t = similarity_align(shapes[:, rig], np.broadcast_to(ref[rig], shapes[:, rig].shape))
    return s[:, None, None] * np.einsum("bij,bnj->bni", r, shapes) + t[:, None]


def canonical_frame(shape: np.ndarray) -> np.ndarray:
    x = shape[263] - shape[33]
    x /= np.linalg.norm(x)
    y = shape[topo.CHIN] - shape[topo.FOREHEAD]
    y -= x * (x @ y)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])  # rows: new axes
    out = (shape - shape.mean(0)) @ rot.T
    return out * IPD_CM / np.linalg.norm(out[468] - out[473])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument(
        "--output",
        default=os.path.join(os.path.dirname(__file__), "..", "dvp_hub", "face", "assets", "face_model.safetensors"),
    )
    ap.add_argument("--num_components", type=int, default=64)
    args = ap.parse_args(argv)

    tracks = []
    for name in CLIPS:
        tr = track_video(os.path.join(args.data, name + ".mp4"))
        lm = tr.landmarks[tr.detected].astype(np.float64)
        print(f"{name}: {len(lm)} frames tracked")
        tracks.append(lm)
    allf = np.concatenate(tracks)
    ref = allf[0]
    for _ in range(4):
        ref = align_all(allf, ref).mean(0)
    mean_shape = canonical_frame(ref)

    defs = []
    for lm in tracks:
        c = align_all(lm, mean_shape)
        d = c - np.median(c, axis=0)
        for ring_corners, iris in ((topo.RIGHT_EYE_CORNERS, topo.RIGHT_IRIS), (topo.LEFT_EYE_CORNERS, topo.LEFT_IRIS)):
            d[:, iris] = d[:, list(ring_corners)].mean(1, keepdims=True)
        defs.append(d.reshape(len(d), -1))
    dmat = np.concatenate(defs)
    _, sig, vt = np.linalg.svd(dmat, full_matrices=False)
    k = args.num_components
    basis = vt[:k].reshape(k, topo.NUM_VERTICES, 3)
    std = sig[:k] / np.sqrt(len(dmat))
    explained = (sig[:k] ** 2).sum() / (sig**2).sum()
    print(
        f"{len(dmat)} frames from {len(CLIPS)} people; {k} components explain {100 * explained:.2f}% of the variance"
    )

    tris = topo.orient_triangles(topo.mesh_triangles(), mean_shape)
    eyes = topo.orient_triangles(topo.eye_fill_triangles(), mean_shape)
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    save_file(
        {
            "mean_shape": mean_shape.astype(np.float32),
            "expression_basis": basis.astype(np.float32),
            "expression_std": std.astype(np.float32),
            "triangles": tris.astype(np.int32),
            "eye_triangles": eyes.astype(np.int32),
        },
        args.output,
        metadata={
            "units": "cm",
            "frame": "x: right eye to left eye, y: down, z: into the head (OpenCV camera axes when frontal)",
            "clips": ",".join(CLIPS),
            "frames": str(len(dmat)),
            "explained_variance": f"{explained:.4f}",
        },
    )
    print("wrote", args.output)


if __name__ == "__main__":
    main()
