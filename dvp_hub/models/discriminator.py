"""The conditional space-time PatchGAN discriminator and the GAN loss (pix2pix-style)."""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class SpaceTimePatchDiscriminator(ModelMixin, ConfigMixin):
    """Scores overlapping patches of ``cat(conditioning window, frame)`` as real or fake.

    It sees the whole space-time conditioning stack (9 x N_w channels) beside the real or generated
    frame, so it judges both realism and temporal/structural agreement with the conditioning.
    Layers: 4x4 conv stride 2 (no norm) + LeakyReLU(0.2), then ``num_layers - 1`` more stride-2
    convs and one stride-1 conv with BatchNorm + LeakyReLU, then a 4x4 conv to one logit per patch
    (no sigmoid: the loss takes logits). With 3 layers each logit sees a 70 x 70 patch.

    Args:
        conditioning_channels: channels of the conditioning window (9 x N_w = 99 by default).
        image_channels: channels of the frame (3).
        base_channels: channels of the first layer (64).
        num_layers: stride-2 layers (3).
    """

    @register_to_config
    def __init__(
        self, conditioning_channels: int = 99, image_channels: int = 3, base_channels: int = 64, num_layers: int = 3
    ):
        super().__init__()
        c = base_channels
        layers: list[nn.Module] = [
            nn.Conv2d(conditioning_channels + image_channels, c, 4, 2, 1),
            nn.LeakyReLU(0.2, True),
        ]
        for i in range(1, num_layers + 1):
            cin, c = c, base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(cin, c, 4, stride, 1, bias=False), nn.BatchNorm2d(c), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, conditioning: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``B x C x R x R`` conditioning and ``B x 3 x R x R`` frame -> ``B x 1 x P x P`` logits."""
        return self.net(torch.cat([conditioning, image], 1))

    def features(self, conditioning: torch.Tensor, image: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The activations after each LeakyReLU (for a feature-matching loss, pix2pixHD) and the logits."""
        x, feats = torch.cat([conditioning, image], 1), []
        for layer in self.net:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                feats.append(x)
        return feats, x


class GANLoss(nn.Module):
    """Binary cross-entropy on logits against real (1) / fake (0) labels held as buffers."""

    def __init__(self):
        super().__init__()
        self.register_buffer("real_label", torch.tensor(1.0))
        self.register_buffer("fake_label", torch.tensor(0.0))
        self.loss = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = (self.real_label if real else self.fake_label).expand_as(logits)
        return self.loss(logits, target)
