"""Conditioning images: one rasterization of the fitted face, three shaders, 9 channels a frame.

`ConditioningRenderer.render(seq, crop, size)` returns ``[T, 9, size, size]`` in [-1, 1]
(diffuse RGB, correspondence RGB, gaze-map RGB), black (-1) where there is no face, rendered
through the fixed crop's camera so that renders line up with the cropped frames.
"""

from __future__ import annotations

import numpy as np
import torch

from ..face import topology as topo
from ..face.lighting import shading
from ..face.model import Camera, FaceModel, load_face_model, vertex_normals
from ..face.sequence import FaceSequence
from ..geometry import axis_angle_to_matrix
from ..paper import NUM_CHANNELS

CORRESPONDENCE = slice(3, 6)  # the correspondence channels of a render (diffuse 0-2, correspondence 3-5, gaze 6-8)
from . import shaders
from .crop import Crop
from .rasterizer import rasterize


class ConditioningRenderer:
    """Renders the DVP conditioning images of face sequences (CPU or CUDA)."""

    def __init__(self, model: FaceModel | None = None, device: str | torch.device = "cpu"):
        self.model = model or load_face_model()
        self.device = torch.device(device)
        m = self.model
        self.faces_np = np.concatenate([m.triangles, m.eye_triangles])
        self.faces = torch.from_numpy(self.faces_np).to(self.device)
        self.first_eye_face = len(m.triangles)
        self.canonical01 = torch.from_numpy(shaders.canonical_positions(m.mean_shape).astype(np.float32)).to(
            self.device
        )

    def camera_vertices(self, seq: FaceSequence, frames=slice(None)) -> np.ndarray:
        """Camera-space vertices ``[T, 478, 3]`` of the selected frames."""
        verts = self.model.shape(seq.identity, seq.expression[frames], seq.gaze[frames], seq.gaze_neutral)
        rot = axis_angle_to_matrix(seq.rotation[frames])
        return np.einsum("tij,tnj->tni", rot, verts) + seq.translation[frames][:, None]

    def render_vertices(
        self,
        cam_verts: np.ndarray,
        camera: Camera,
        albedo: np.ndarray,
        sh: np.ndarray,
        size: int,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Render camera-space vertices ``[B, 478, 3]`` seen by ``camera`` (already the crop's) at ``size``.

        Returns ``[B, 9, size, size]`` in channels_last memory, written into ``out`` when given (a channels_last
        tensor of that shape, any float dtype).
        """
        dev = self.device
        p = torch.from_numpy(cam_verts.astype(np.float32)).to(dev)
        z = p[..., 2:3].clamp(min=1e-3)
        c = torch.tensor([camera.cx, camera.cy], device=dev, dtype=torch.float32)
        uv = p[..., :2] / z * camera.focal + c
        screen = torch.cat([uv, z], -1)
        frags = rasterize(screen, self.faces, size, size)
        normals = vertex_normals(cam_verts, self.model.triangles)
        colors = np.asarray(albedo) * shading(normals, np.asarray(sh))  # Gouraud: shaded at the vertices
        colors = torch.from_numpy(colors.astype(np.float32)).to(dev)
        centres = uv[:, [468, 473]]
        radii = torch.stack(
            [(uv[:, iris[1:]] - uv[:, iris[:1]]).norm(dim=-1).mean(-1) for iris in (topo.RIGHT_IRIS, topo.LEFT_IRIS)],
            -1,
        )
        vals = torch.cat(
            [
                shaders.diffuse_and_correspondence(frags, self.faces, colors, self.canonical01),
                shaders.gaze_map(frags, self.first_eye_face, centres, radii),
            ],
            1,
        )
        if out is None:
            out = torch.empty(p.shape[0], size, size, NUM_CHANNELS, device=dev).permute(0, 3, 1, 2)
        elif tuple(out.shape) != (p.shape[0], NUM_CHANNELS, size, size) or not out.is_contiguous(
            memory_format=torch.channels_last
        ):
            raise ValueError(
                f"out must be a channels_last tensor of shape {(p.shape[0], NUM_CHANNELS, size, size)}, "
                f"got shape {tuple(out.shape)} with strides {out.stride()}"
            )
        hwc = out.permute(0, 2, 3, 1)  # [B, size, size, 9], contiguous: out is channels_last
        hwc.fill_(-1.0)
        hwc.view(-1, NUM_CHANNELS)[frags.pixels] = (vals * 2 - 1).to(out.dtype)
        return out

    def render(
        self,
        seq: FaceSequence,
        crop: Crop,
        size: int,
        frames=slice(None),
        batch_size: int = 64,
        albedo: np.ndarray | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[T, 9, size, size]`` conditioning images of ``seq[frames]`` through ``crop`` (channels_last memory).

        albedo overrides the sequence's reflectance (reenactment keeps the target's). out: a channels_last
        ``[T, 9, size, size]`` tensor to write into (the pipeline reuses one buffer, in its generator's dtype).
        """
        idx = np.arange(len(seq))[frames]
        cam = crop.camera(seq.camera, size)
        alb = seq.albedo if albedo is None else albedo
        if out is None:
            out = torch.empty(len(idx), size, size, NUM_CHANNELS, device=self.device).permute(0, 3, 1, 2)
        for s in range(0, len(idx), batch_size):
            sel = idx[s : s + batch_size]
            self.render_vertices(self.camera_vertices(seq, sel), cam, alb, seq.sh[sel], size, out[s : s + len(sel)])
        return out
