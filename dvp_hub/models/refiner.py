"""`FaceRefiner`: a small person-specific network that takes the generator's crop to twice its size.

The rendering-to-video network paints the target at its training resolution (256 px for the demo) and
L1 makes it soft. The refiner is trained on the target's own footage (the generator's output on the
training frames in, the real crop at twice the size out, with an adversarial loss that rewards the
skin, hair and eye detail L1 averages away) and runs after the generator on every frame.

It is residual: the output is the input upsampled (bilinear) plus what the network adds, so an
untrained refiner (its last layer starts at zero) is a plain 2x upsampler and cannot move the face.

With ``texture_size > 0`` it also holds a neural texture (Thies et al., *Deferred Neural Rendering*, 2019):
learned features laid over the face model's surface and looked up, at the output's resolution, through the
correspondence image the conditioning already renders. The network then knows which point of the face each
pixel shows, so detail that belongs to the person (pores, creases, stubble, moles) can land where the footage
has it instead of texture of the right kind in any place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from .fx_guard import guarded

WINDOW_FEATHER = 12.0  # output px over which a refined window fades into the bilinear enlargement


class ResidualBlock(nn.Module):
    """3x3 conv -> LeakyReLU -> 3x3 conv, added to the input."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.leaky_relu(self.conv1(x), 0.2))


def window_bounds(x: torch.Tensor, window: tuple[int, int, int, int] | None) -> tuple[int, int, int, int]:
    """``window`` (x0, y0, x1, y1 in input pixels), or the whole of ``x`` ``[..., H, W]`` where it is None."""
    return (0, 0, x.shape[-1], x.shape[-2]) if window is None else tuple(window)


class FaceRefiner(ModelMixin, ConfigMixin):
    r"""Generated crop ``[B, 3, R, R]`` in [-1, 1] -> refined crop ``[B, 3, 2R, 2R]`` in [-1, 1].

    Args:
        channels: feature channels of the body (which runs at the input's resolution).
        num_blocks: residual blocks in the body.
        scale: output size over input size (2).
        texture_size: side of the neural texture in texels (0: none, the refiner reads the crop alone).
        texture_channels: its feature channels.

    Fully convolutional: trained on patches, run on whole crops of any even size. With a texture, every call also
    takes ``correspondence``: the conditioning's correspondence channels of the same frames ``[B, 3, R, R]``
    in [-1, 1] (-1 where no face is rendered), cut as ``x`` is.
    """

    @register_to_config
    def __init__(
        self, channels: int = 32, num_blocks: int = 4, scale: int = 2, texture_size: int = 0, texture_channels: int = 8
    ):
        super().__init__()
        extra = texture_channels * scale * scale if texture_size else 0
        self.texture = (
            nn.Parameter(torch.zeros(1, texture_channels, texture_size, texture_size)) if texture_size else None
        )
        self.head = nn.Conv2d(3 + extra, channels, 3, 1, 1)
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.tail = nn.Conv2d(channels, 3 * scale * scale, 3, 1, 1)
        self.shuffle = nn.PixelShuffle(scale)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)

    @property
    def uses_texture(self) -> bool:
        """Whether calls need the correspondence image (the refiner holds a neural texture)."""
        return self.texture is not None

    def texture_features(self, correspondence: torch.Tensor) -> torch.Tensor:
        """The texture looked up at every output pixel, ``[B, C * s * s, R, R]`` (pixel-unshuffled to the input's
        size; zero where no face is rendered). The surface's canonical x and y index the texture (a frontal
        projection of the face model)."""
        s = self.config.scale
        corr = F.interpolate(correspondence[:, :2].float(), scale_factor=s, mode="bilinear", align_corners=False)
        covered = (correspondence > -0.999).any(1, keepdim=True).float()
        covered = F.interpolate(covered, scale_factor=s, mode="nearest")
        tex = self.texture.expand(len(corr), -1, -1, -1)
        feat = F.grid_sample(
            tex, corr.permute(0, 2, 3, 1), mode="bilinear", padding_mode="border", align_corners=False
        )
        return F.pixel_unshuffle(feat * covered, s)

    def forward(self, x: torch.Tensor, correspondence: torch.Tensor | None = None) -> torch.Tensor:
        s = self.config.scale
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        if self.texture is not None:
            if correspondence is None:
                raise ValueError("this refiner holds a neural texture: give the correspondence image too.")
            x = torch.cat([x, self.texture_features(correspondence).to(x.dtype)], 1)
        return (base + self.shuffle(self.detail(x))).clamp(-1, 1)

    def detail(self, x: torch.Tensor) -> torch.Tensor:
        """The network's detail branch: input (with the texture's features where it has one) ``[B, C, h, w]`` ->
        ``[B, 3 s^2, h, w]``, which the pixel shuffle adds to the bilinear enlargement."""
        feat = F.leaky_relu(self.head(x), 0.2)
        return self.tail(feat + self.body(feat))

    @torch.no_grad()
    def refined_window(
        self,
        x: torch.Tensor,
        window: tuple[int, int, int, int] | None = None,
        bf16: bool = False,
        correspondence: torch.Tensor | None = None,
        residual=None,
    ) -> torch.Tensor:
        """The network's output inside ``window`` alone (`refine`'s arguments): ``[B, 3, s h, s w]`` float32 in
        [-1, 1] for the window's ``h x w`` input pixels (the float enlargement plus `window_detail`), not yet faded
        into the enlargement (`window_weight`)."""
        x0, y0, x1, y1 = window_bounds(x, window)
        part = x[:, :, y0:y1, x0:x1].float()
        up = F.interpolate(part, scale_factor=self.config.scale, mode="bilinear", align_corners=False)
        return (up + self.window_detail(x, window, bf16, correspondence, residual)).clamp(-1, 1)

    @torch.no_grad()
    @guarded
    def window_detail(
        self,
        x: torch.Tensor,
        window: tuple[int, int, int, int] | None = None,
        bf16: bool = False,
        correspondence: torch.Tensor | None = None,
        residual=None,
    ) -> torch.Tensor:
        """What the network adds inside ``window`` (`refine`'s arguments) to the enlargement of the crop:
        ``[B, 3, s h, s w]`` float32 (in [-1, 1] units, not clamped) for the window's ``h x w`` input pixels."""
        x0, y0, x1, y1 = window_bounds(x, window)
        part = x[:, :, y0:y1, x0:x1].contiguous(memory_format=torch.channels_last)
        if residual is not None and correspondence is None:
            return self.shuffle(residual(part)).float()
        if self.texture is not None:
            if correspondence is None:
                raise ValueError("this refiner holds a neural texture: give the correspondence image too.")
            feat = self.texture_features(correspondence[:, :, y0:y1, x0:x1])
            part = torch.cat([part, feat.to(part.dtype)], 1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and x.device.type == "cpu"):
            return self.shuffle(self.detail(part)).float()

    @torch.no_grad()
    def refine(
        self,
        x: torch.Tensor,
        window: tuple[int, int, int, int] | None = None,
        bf16: bool = False,
        correspondence: torch.Tensor | None = None,
        residual=None,
    ):
        """Inference: like ``forward`` (``correspondence`` as there), but the network runs only inside ``window``
        (``x0, y0, x1, y1`` in input pixels, multiples of 8; None: everywhere) and the rest is the bilinear
        enlargement, the two blended over `WINDOW_FEATHER` px at the window's edge (where the network lacks context,
        `window_weight`). ``bf16``: autocast on the CPU. ``residual``: a stand-in for the network's detail branch
        (`models.int8.quantize_refiner`; texture-less refiners only), added to the float enlargement. Output
        ``[B, 3, sR, sR]`` float32 in [-1, 1]."""
        refined = self.refined_window(x, window, bf16, correspondence, residual)
        if window is None:
            return refined
        s, (x0, y0, x1, y1) = self.config.scale, window
        base = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        region = base[:, :, s * y0 : s * y1, s * x0 : s * x1]
        base[:, :, s * y0 : s * y1, s * x0 : s * x1] = region + (refined - region) * window_weight(refined)
        return base


def window_weight(refined: torch.Tensor) -> torch.Tensor:
    """``[h, w]`` weight of a refined window ``[B, 3, h, w]`` against the enlargement under it: 0 at its edge, 1 from
    `WINDOW_FEATHER` px inside it."""
    h, w = refined.shape[-2:]

    def ramp(n: int) -> torch.Tensor:
        return torch.clamp(torch.minimum(torch.arange(n), torch.arange(n).flip(0)) / WINDOW_FEATHER, 0, 1)

    return (ramp(h)[:, None] * ramp(w)[None, :]).to(refined.device)


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
