"""The rendering-to-video network of Deep Video Portraits (Kim et al. 2018, Sec. 5).

A U-Net maps the space-time stack of conditioning images (9 channels x N_w frames, the current frame
last) to the target's frame at that time.
"""

from __future__ import annotations

import math

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..paper import NUM_CHANNELS, TEMPORAL_WINDOW


class DownBlock(nn.Module):
    """4x4 conv, stride 2 -> BatchNorm (except the first level) -> LeakyReLU(0.2)."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)
        self.norm = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.act = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class UpBlock(nn.Module):
    """4x4 transposed conv, stride 2 -> BN -> dropout -> ReLU -> 3x3 refinement conv -> BN -> ReLU.

    The outermost block (``last=True``) upsamples to ``mid`` channels and refines to ``cout`` (3)
    channels with no BatchNorm and no ReLU; the generator applies tanh.
    """

    def __init__(self, cin: int, mid: int, cout: int, dropout: float, last: bool = False):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, mid, 4, 2, 1, bias=last)
        self.norm1 = nn.Identity() if last else nn.BatchNorm2d(mid)
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.refine = nn.Conv2d(mid, cout, 3, 1, 1, bias=last)
        self.norm2 = nn.Identity() if last else nn.BatchNorm2d(cout)
        self.last = last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.drop(self.norm1(self.up(x))))
        x = self.norm2(self.refine(x))
        return x if self.last else torch.relu(x)


class RenderingToVideoGenerator(ModelMixin, ConfigMixin):
    r"""Space-time conditioning stack -> photo-real frame (the paper's rendering-to-video network).

    Encoder-decoder with skip connections between mirrored levels (the paper's default: 8 levels at
    256 x 256, channels 64-128-256-512-512-512-512-512)::

        x 99,256 -> d1 64,128 -> d2 128,64 -> d3 256,32 -> d4 512,16 -> d5 512,8 -> d6 512,4 -> d7 512,2 -> d8 512,1
                                                                                                          |
        out 3,256 <- u8 <- cat(u7, d1) <- ... <- cat(u2, d6) <- cat(u1, d7) <-------------------------- u1 512,2

    Each down level: 4x4 conv stride 2, BatchNorm (none at the first and, by default, the innermost level),
    LeakyReLU(0.2).
    Each up level: 4x4 transposed conv stride 2, BatchNorm, dropout (0.5 in the three innermost
    levels), ReLU, then a 3x3 stride-1 refinement conv, BatchNorm, ReLU; up output channels
    512-512-512-512-256-128-64-3, the last without BatchNorm, then tanh to [-1, 1].

    Args:
        in_channels: channels of one frame's conditioning images (9: diffuse, correspondence, gaze).
        temporal_window: N_w, frames in the space-time stack (the current frame is the last).
        base_channels: channels of the first level (64 in the paper; 32 is the light CPU variant).
        max_channels: channel cap of the deeper levels (512 in the paper).
        resolution: input and output size in pixels (a power of two, 32 to 1024).
        num_levels: down/up levels; ``None`` takes min(8, log2(resolution)) (8 at 256 and 512).
        dropout: dropout probability of the three innermost up levels (0.5 in the paper).
        out_channels: channels of the generated frame (3, RGB).
        innermost_norm: BatchNorm at the innermost down level too. Off by default, as in pix2pix: at 256 px that
            level is 1 x 1, and BatchNorm over a batch of one 1 x 1 map is undefined (training with batch size 1,
            the paper's setting, would fail).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = NUM_CHANNELS,
        temporal_window: int = TEMPORAL_WINDOW,
        base_channels: int = 64,
        max_channels: int = 512,
        resolution: int = 256,
        num_levels: int | None = None,
        dropout: float = 0.5,
        out_channels: int = 3,
        innermost_norm: bool = False,
    ):
        super().__init__()
        if resolution < 32 or resolution > 1024 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two in [32, 1024], got {resolution}")
        levels = num_levels or min(8, int(math.log2(resolution)))
        if not 2 <= levels <= int(math.log2(resolution)):
            raise ValueError(f"num_levels={levels} does not fit resolution={resolution} (at most log2(resolution))")
        if base_channels < 1 or max_channels < base_channels:
            raise ValueError(f"need 1 <= base_channels <= max_channels, got {base_channels} and {max_channels}")
        if temporal_window < 1:
            raise ValueError(f"temporal_window must be >= 1, got {temporal_window}")
        chans = [min(base_channels * 2**i, max_channels) for i in range(levels)]
        self.downs = nn.ModuleList(
            [
                DownBlock(
                    in_channels * temporal_window if i == 0 else chans[i - 1],
                    chans[i],
                    norm=0 < i < levels - 1 or (i == levels - 1 and innermost_norm),
                )
                for i in range(levels)
            ]
        )
        ups = []
        for i in range(levels):  # i = 0 is the innermost
            cin = chans[-1] if i == 0 else 2 * chans[levels - 1 - i]
            last = i == levels - 1
            cout = out_channels if last else chans[levels - 2 - i]
            mid = chans[0] if last else cout
            ups.append(UpBlock(cin, mid, cout, dropout if i < 3 and not last else 0.0, last=last))
        self.ups = nn.ModuleList(ups)

    @property
    def input_channels(self) -> int:
        return self.config.in_channels * self.config.temporal_window

    def forward(self, conditioning: torch.Tensor) -> torch.Tensor:
        """conditioning: ``B x (9*Nw) x R x R`` in [-1, 1] -> ``B x 3 x R x R`` in [-1, 1]."""
        if conditioning.shape[1] != self.input_channels:
            raise ValueError(
                f"expected {self.input_channels} input channels (in_channels={self.config.in_channels} x "
                f"temporal_window={self.config.temporal_window}), got {conditioning.shape[1]}"
            )
        return self.forward_from_first_level(self.downs[0](conditioning))

    def forward_from_first_level(self, first: torch.Tensor) -> torch.Tensor:
        """The rest of the U-Net from the first down level's output ``B x C0 x R/2 x R/2``.

        The fast inference path (`inference.generate_windows`) computes the first level over a whole clip as one
        3D convolution over time, instead of stacking 99-channel windows.
        """
        skips = [first]
        x = first
        for down in self.downs[1:]:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds u1 directly
        for i, up in enumerate(self.ups):
            if i > 0:
                x = torch.cat([x, skips.pop()], 1)
            x = up(x)
        return torch.tanh(x)
