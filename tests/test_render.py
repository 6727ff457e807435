import os

import numpy as np
import torch

from dvp_hub.render.conditioning import ConditioningRenderer
from dvp_hub.render.crop import Crop


def test_conditioning_images(d3_sequence, tmp_path):
    _, seq = d3_sequence
    crop = Crop.for_landmarks(seq.landmarks, seq.camera.width, seq.camera.height)
    if crop.size <= 512:  # inside the frame where it fits
        assert crop.x0 >= 0 and crop.y0 >= 0 and crop.x0 + crop.size <= 512 and crop.y0 + crop.size <= 512
    else:  # a close-up that needs more: the square covers the whole frame and the rest is padding
        assert crop.x0 <= 0 and crop.y0 <= 0 and crop.x0 + crop.size >= 512 and crop.y0 + crop.size >= 512
    cond = ConditioningRenderer().render(seq, crop, 64, frames=slice(0, 8))
    assert cond.shape == (8, 9, 64, 64)
    assert cond.min() >= -1 and cond.max() <= 1
    face = cond[:, 3:6].amax(1) > -1  # correspondence covers the face
    assert 0.05 < face.float().mean() < 0.7
    # background is black in all nine channels
    assert (cond[:, :, 0, 0] == -1).all()
    # diffuse is skin-coloured where the face is: red > blue
    diff = (cond[:, :3] + 1) / 2
    assert diff[:, 0][face].mean() > diff[:, 2][face].mean()
    # gaze map: only eyes, with blue irises inside white sclera
    gaze = (cond[:, 6:9] + 1) / 2
    eye = gaze[:, 2] > 0.5
    iris = eye & (gaze[:, 0] < 0.5)
    sclera = eye & (gaze[:, 0] > 0.5)
    assert iris.any() and sclera.any() and eye.float().mean() < 0.05
    # eyes lie in the upper half of the face
    ys = torch.nonzero(eye)[:, 1].float().mean()
    fys = torch.nonzero(face)[:, 1].float().mean()
    assert ys < fys
    if os.environ.get("DVP_DEBUG_RENDERS"):
        import cv2

        img = ((cond[0].reshape(3, 3, 64, 64).permute(0, 2, 3, 1).numpy() + 1) * 127.5).astype(np.uint8)
        cv2.imwrite(str(tmp_path / "cond.png"), np.concatenate(list(img), 1)[..., ::-1])


def test_crop_apply_and_camera_agree(d3_sequence):
    _, seq = d3_sequence
    crop = Crop(100.0, 50.0, 256.0)
    cam = crop.camera(seq.camera, 128)
    frame = np.zeros((512, 512, 3), np.uint8)
    x, y = 300, 200
    frame[y - 2 : y + 3, x - 2 : x + 3] = 255
    out = crop.apply(frame, 128)
    cy, cx = np.argwhere(out[..., 0] > 100).mean(0)
    assert abs(cx - (x + 0.5 - 100) / 2) < 1.0 and abs(cy - (y + 0.5 - 50) / 2) < 1.0
    # a point at the frame centre projects through the crop camera consistently
    assert abs(cam.cx - (seq.camera.cx - 100) / 2) < 1e-9
