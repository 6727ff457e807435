"""`FaceRefiner`: a small person-specific network that takes the generator's crop to twice its size.

The rendering-to-video network paints the target at its training resolution (256 px for the demo) and
L1 makes it soft. The refiner is trained on the target's own footage (the generator's output on the
training frames in, the real crop at twice the size out, with an adversarial loss that rewards the
skin, hair and eye detail L1 averages away) and runs after the generator on every frame.

It is residual: the output is the input upsampled (bilinear) plus what the network adds, so an
untrained refiner (its last layer starts at zero) is a plain 2x upsampler and cannot move the face.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

WINDOW_FEATHER = 12.0  # output px over which a refined window fades into the bilinear enlargement


class ResidualBlock(nn.Module):
    """3x3 conv -> LeakyReLU -> 3x3 conv, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


class FaceRefiner(ModelMixin, ConfigMixin):
    r"""Generated crop ``[B, 3, R, R]`` in [-1, 1] -> refined crop ``[B, 3, 2R, 2R]`` in [-1, 1].

    Args:
        channels: feature channels of the body (which runs at the input's resolution).
        num_blocks: residual blocks in the body.
        scale: output size over input size (2).

    Fully convolutional: trained on patches, run on whole crops of any even size.
    """

    @register_to_config
    def __init__(self, channels: int = 32, num_blocks: int = 4, scale: int = 2):
        super().__init__()
        self.head = nn.Conv2d(3, channels, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.config.scale
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        feat = F.leaky_relu(self.head(x), 0.2)
        feat = feat + self.body(feat)
        return (base + self.shuffle(self.tail(feat))).clamp(-1, 1)


    @torch.no_grad()
    def refine(self, x: torch.Tensor, window: tuple[int, int, int, int] | None = None, bf16: bool = False):
        """Inference: like ``forward``, but the network runs only inside ``window`` (``x0, y0, x1, y1`` in input
        pixels, multiples of 8; None: everywhere) and the rest is the bilinear enlargement, the two blended over
        `WINDOW_FEATHER` px at the window's edge (where the network lacks context). ``bf16``: autocast on the CPU.
        Output ``[B, 3, sR, sR]`` float32 in [-1, 1]."""
        s = self.config.scale
        if window is None:
            x0, y0, x1, y1 = 0, 0, x.shape[-1], x.shape[-2]
        else:
            x0, y0, x1, y1 = window
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        part = x[:, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and x.device.type == "cpu"):
            refined = self(part).float()
        if window is None:
            return refined
        h, w = refined.shape[-2:]
        ramp = lambda n: torch.clamp(torch.minimum(torch.arange(n), torch.arange(n).flip(0)) / WINDOW_FEATHER, 0, 1)  # noqa: E731
        weight = (ramp(h)[:, None] * ramp(w)[None, :]).to(x.device)
        region = base[:, :, s * y0 : s * y1, s * x0 : s * x1]
        base[:, :, s * y0 : s * y1, s * x0 : s * x1] = region + (refined - region) * weight
        return base


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN for the refiner: (upsampled input, output) ``[B, 6, H, W]`` -> logits per patch.

    Three stride-2 levels (receptive field ~46 px at the output's size): it judges texture, not layout,
    which the residual design and the L1 term already hold.
    """

    def __init__(self, channels: int = 48):
        super().__init__()
        c = channels
        self.layers = nn.ModuleList(
            [
                nn.Sequential(nn.Conv2d(6, c, 4, 2, 1), nn.LeakyReLU(0.2, True)),
                nn.Sequential(nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2, True)),
                nn.Sequential(nn.Conv2d(2 * c, 4 * c, 4, 2, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2, True)),
                nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, 1, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2, True)),
            ]
        )
        self.out = nn.Conv2d(4 * c, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``[B, 1, H/8, W/8]`` and each level's activations (for feature matching)."""
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return self.out(x), feats
